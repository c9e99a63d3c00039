package diagnose

import (
	"fmt"
	"net/netip"
	"slices"
)

// What a server's refusals say, and what they cannot: a RST from a closed
// port, a SYN-ACK without option that a stripping middlebox and a listener
// without TFO both give, SYN data acked only in part.

// portRefuses reports that the RSTs answering this port's TFO SYNs are the
// port's own: it also reset SYNs without data, or answered no SYN at all
// with a SYN-ACK. A closed port answers every SYN with a RST, data or not;
// a firewall that resets SYNs with data (reset-syn-data) lets the others
// through to a listener that answers them.
func (g *serverAgg) portRefuses() bool {
	return g.counts[KindReset] > 0 && (g.counts[KindRefused] > 0 || g.unanswered == g.total)
}

// refusedReason says that the port refused connections with RSTs, and
// what that leaves open.
func (g *serverAgg) refusedReason() string {
	plain, tfo := g.counts[KindRefused], 0
	if g.portRefuses() {
		tfo = g.counts[KindReset]
	}
	switch {
	case tfo > 0 && plain == 0:
		return fmt.Sprintf("the port refused every connection with a RST (%s, none answered): a closed port does that, and it says nothing about TFO; "+
			"but only TFO SYNs were tried, and a firewall that resets SYNs with data (reset-syn-data) in front of this port would look the same: a plain connection to it tells",
			plural(tfo, "TFO SYN"))
	case tfo > 0:
		return fmt.Sprintf("the port refused %s with a RST, SYNs with TFO data or option (%d) and without (%d) alike: nothing listens there, and the RSTs say nothing about TFO",
			plural(plain+tfo, "connection"), tfo, plain)
	}
	return fmt.Sprintf("the port refused %s with a RST: nothing listens there", plural(plain, "connection"))
}

// refusedNoOptionReason is option-stripped's reason when the client's side
// shows cookie and data answered by a SYN-ACK that acks only the SYN and
// carries no option. A middlebox that stripped the option and a server
// that refused TFO itself answer alike: Linux answers data without a
// cookie exactly so, and a listener without TFO ignores the option. So
// both readings are named, with what the capture adds: whether this port
// ever showed TFO, or only another port of the same host did (the client's
// cookie cache is per host, tcp_metrics, so every port is offered it).
func (g *serverAgg) refusedNoOptionReason(n int) string {
	r := fmt.Sprintf("%s sent cookie and data, and the SYN-ACK acked only the SYN and carried no TFO option: "+
		"either a middlebox stripped the option on the way (the server then gets data without a cookie), "+
		"or the server refused TFO itself (a listener without TFO: no TCP_FASTOPEN on the socket, or net.ipv4.tcp_fastopen without 0x2; or its TFO queue full); "+
		"the client sees the same either way, a server-side capture tells them apart", plural(n, "connection"))
	switch other := g.tfoSibling(); {
	case g.showedTFO():
		r += "; this port handed out a cookie or accepted SYN data in this capture, so its listener had TFO then: stripping, or TFO turned off or its queue full since"
	case other.IsValid():
		r += fmt.Sprintf("; this port never showed TFO here, while %s on the same host handed out cookies: the client's cookie cache is per host, so it offers that cookie to every port, and a listener without TFO on this one fits as well as stripping", other)
	}
	return r
}

// showedTFO reports that this port handed out a cookie or accepted SYN
// data.
func (g *serverAgg) showedTFO() bool {
	return g.sum(KindGranted, KindCookieReasked, KindAccepted, KindPartial, KindRejected) > 0
}

// tfoSibling is the first other port of this server's host that showed
// TFO, if any.
func (g *serverAgg) tfoSibling() netip.AddrPort {
	var out []netip.AddrPort
	for s, o := range g.agg.servers {
		if s != g.server && s.Addr() == g.server.Addr() && o.showedTFO() {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return netip.AddrPort{}
	}
	return slices.MinFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
}

// partialReason says how many connections had their SYN data acked only
// in part. Linux's client then marks the rest lost and resends it at once
// after the handshake (tcp_rcv_fastopen_synack), counts a failed TFO
// connection (TCPFastOpenActiveFail, tcpi_fastopen_client_fail
// TFO_DATA_NOT_ACKED) and keeps the cookie, which worked.
func (g *serverAgg) partialReason() string {
	n := g.counts[KindPartial]
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("the server acked only part of the SYN data of %s (%d of %d bytes in the first): "+
		"the client's kernel resends the rest right after the handshake, a round trip late, counts a failed TFO connection (TCPFastOpenActiveFail) and keeps the cookie",
		plural(n, "connection"), g.partial[0], g.partial[1])
}

// worksFinding is tfo-works for the works connections that show it:
// SYN data acked, in full or in part, or cookies handed out.
func (g *serverAgg) worksFinding(works int) finding {
	r := ""
	switch acc := g.sum(KindAccepted, KindAcceptedNoCookie); {
	case acc > 0 && g.counts[KindAcceptedNoCookie] == acc:
		r = fmt.Sprintf("the server acked the SYN data of %s sent without a cookie (cookie-less TFO)", plural(acc, "connection"))
	case acc > 0:
		r = fmt.Sprintf("the server acked the SYN data of %s in its SYN-ACK", plural(acc, "connection"))
	case g.counts[KindPartial] == 0:
		r = fmt.Sprintf("the server handed out cookies (%s); no SYN data was seen yet", plural(g.sum(KindGranted, KindCookieReasked), "cookie request"))
	}
	f := finding{verdict: TFOWorks, reason: joinReason(r, g.partialReason()) + ".", n: works,
		kinds: []Kind{KindAccepted, KindAcceptedNoCookie, KindPartial, KindGranted, KindCookieNoData, KindCookieReasked}}
	if r == "" { // partial acks only: the catalogue has a scenario of them
		f.variant = "partial-ack"
	}
	return f
}

// joinReason joins two parts of a reason, either possibly empty.
func joinReason(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
