package diagnose

import "fmt"

// What a server's refusals say, and what they cannot.

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
