package diagnose

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Kind is what one connection amounts to, from one capture or, for the
// Kinds marked "pair", from both copies of it.
type Kind int

// The connection kinds.
const (
	KindPlain             Kind = iota // no TFO option, no SYN data
	KindPaused                        // plain SYN during the client's blackhole pause
	KindCookieUnused                  // plain SYN from a client that had used TFO with the server
	KindGranted                       // cookie request answered with a cookie
	KindAccepted                      // SYN data with a cookie acked in the SYN-ACK
	KindAcceptedNoCookie              // SYN data without option acked (cookie-less TFO, 0x200 servers)
	KindCookieNoData                  // a cookie but no data in the SYN
	KindNoCookie                      // cookie request answered without a cookie
	KindFallback                      // data SYN unanswered, a plain retransmission answered
	KindOptionDropped                 // option SYN without data unanswered, a plain retransmission answered
	KindDropped                       // pair: the data SYN never reached the server
	KindReset                         // the TFO SYN was answered with RST
	KindStripped                      // pair: the option was removed on the way
	KindRefusedNoOption               // client side: cookie+data, only the SYN acked, no option back
	KindStrippedSuspect               // server side: data SYN without option, refused
	KindRefusedByServer               // the server got cookie+data and refused them without a new cookie
	KindRejected                      // cookie refused, a fresh cookie handed out
	KindRefusedSameCookie             // data refused though the server echoed the same cookie
	KindNoCookieRefused               // client side: data without a cookie refused
	KindStalledTFO                    // TFO SYNs never answered
	KindSynackUnacked                 // server side: SYN-ACK sent, the client kept sending SYNs
	KindSynackLost                    // pair: SYN-ACKs sent, none received
	KindStalledPlain                  // plain SYNs never answered
	KindRefused                       // plain SYN answered with RST: port closed
	KindOneDirection                  // handshake completed, SYN-ACK not in the capture
	KindCookieNotOffered              // server side: plain SYN from a client this server gave a cookie
	KindUnfinished                    // unanswered SYN less than an RTO before the capture ended
	KindCookieReasked                 // cookie request, granted, from a client the server had already given one (same SYN)
	KindGivenUp                       // data SYN never answered nor retransmitted though the capture went on past its RTO: dropped at once (an ICMP error)
	KindPartial                       // SYN data acked only in part in the SYN-ACK (the client resends the rest)

	// After the handshake (post.go): what became of a TFO connection's
	// data. These refine a connection already counted by its handshake
	// Kind: they add to no total.
	KindServerDataLost // the server's data or FIN was never acked by the client (a lone FIN got through)
	KindClientDataLost // the client's data was retransmitted, never acked
	KindNoAnswer       // SYN data acked, then nothing from the server while the client waited
	numKinds
)

var kindNames = [numKinds]string{
	"plain", "paused", "cookie-unused", "granted", "accepted", "accepted-no-cookie", "cookie-no-data",
	"no-cookie", "fallback", "option-dropped", "dropped", "reset", "stripped", "refused-no-option",
	"stripped-suspect", "refused-by-server", "rejected", "refused-same-cookie", "no-cookie-refused",
	"stalled-tfo", "synack-unacked", "synack-lost", "stalled-plain", "refused", "one-direction",
	"cookie-not-offered", "unfinished", "cookie-reasked", "given-up", "partial-ack", "server-data-lost", "client-data-lost", "no-answer",
}

func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// tfoKind reports whether a connection of kind k tried TFO.
func (k Kind) tfo() bool {
	switch k {
	case KindPlain, KindPaused, KindCookieUnused, KindStalledPlain, KindRefused, KindOneDirection, KindUnfinished:
		return false
	}
	return !k.post()
}

// post reports a Kind of what happened after the handshake.
func (k Kind) post() bool { return k >= KindServerDataLost && k <= KindNoAnswer }

// Verdict is a server's TFO diagnosis.
type Verdict string

// The verdicts.
const (
	TFOWorks        Verdict = "tfo-works"
	ClientNoTFO     Verdict = "client-no-tfo"
	ServerNoTFO     Verdict = "server-no-tfo"
	SynDataDropped  Verdict = "syn-data-dropped"
	OptionStripped  Verdict = "option-stripped"
	SynackLost      Verdict = "synack-lost"
	BlackholePaused Verdict = "blackhole-paused"
	DataBlackholed  Verdict = "data-blackholed"
	CookieRejected  Verdict = "cookie-rejected"
	Inconclusive    Verdict = "inconclusive"
)

// Precedence is the order in which verdicts win when several apply to one
// server: the worst problem first (see the package doc).
var Precedence = []Verdict{BlackholePaused, SynackLost, DataBlackholed, SynDataDropped, OptionStripped,
	CookieRejected, ServerNoTFO, TFOWorks, ClientNoTFO, Inconclusive}

// Problem reports whether v is a finding that needs attention.
func (v Verdict) Problem() bool {
	switch v {
	case TFOWorks, ClientNoTFO, Inconclusive, "":
		return false
	}
	return true
}

// evText is an evidence line as a server keeps it: rendered once, with
// the packet's time (to order groups) and capture.
type evText struct {
	file int
	t    time.Time
	line string
}

// evGroup is the evidence of one connection.
type evGroup []evText

func render(ev []evLine) evGroup {
	g := make(evGroup, len(ev))
	for i, e := range ev {
		g[i] = evText{e.file, e.p.Time, TcpdumpLine(*e.p)}
	}
	return g
}

// Evidence caps: groups kept per kind and server, lines per verdict.
const (
	groupsPerKind = 3
	evidenceLines = 6
	rttSamples    = 256
)

// serverAgg is everything known about one server, folded connection by
// connection.
type serverAgg struct {
	agg      *aggregator
	server   netip.AddrPort
	seenAs   map[netip.AddrPort]bool
	total    int
	counts   [numKinds]int
	cost     [numKinds]time.Duration
	costN    [numKinds]int
	costRTTs [numKinds]int      // connections whose cost is one round trip, not measured
	groups   map[Kind][]evGroup // lazily: most servers need few kinds
	rtts     []time.Duration
	exp      int
	pairs    int
	sides    [3]int
	orphans  int // SYN-ACKs whose SYN the capture lacks
	// detections: connections where the client's kernel detected a
	// blackhole, by how; detNoPause, detections its next TFO SYN ignored.
	detections  [numDetect]int
	detNoPause  int
	delivered   int             // TFO connections whose server data reached the client
	loneFIN     int             // server-data-lost where the client got the FIN alone
	optIntact   int             // pairs: the client's TFO option reached the server
	pauses      map[int][]Pause // per capture
	poolClients map[int]int     // per capture: clients with a cookie both accepted and refused
	giveUp      time.Duration   // the longest stall
	partial     [2]int          // the first partial ack: bytes acked, bytes sent
	unanswered  int             // connections with no SYN-ACK at all
}

// aggregator holds the servers.
type aggregator struct {
	servers map[netip.AddrPort]*serverAgg
	files   []string
	// cut: some TCP headers were cut by the snap length, and skipped.
	cut bool
}

func newAggregator(files []string) *aggregator {
	return &aggregator{servers: map[netip.AddrPort]*serverAgg{}, files: files}
}

func (a *aggregator) server(s netip.AddrPort) *serverAgg {
	g := a.servers[s]
	if g == nil {
		g = &serverAgg{agg: a, server: s, pauses: map[int][]Pause{}, poolClients: map[int]int{}}
		a.servers[s] = g
	}
	return g
}

const maxPauses = 32

func (a *aggregator) addPause(file int, s netip.AddrPort, p Pause) {
	g := a.server(s)
	if len(g.pauses[file]) < maxPauses {
		g.pauses[file] = append(g.pauses[file], p)
	}
}

// fold adds one classified connection to its server.
// seenAs is the server's address as this copy saw it, when a NAT made
// it differ.
func (a *aggregator) fold(server netip.AddrPort, c *conn, o outcome, paired bool, seenAs netip.AddrPort) {
	g := a.server(server)
	if seenAs != server {
		if g.seenAs == nil {
			g.seenAs = map[netip.AddrPort]bool{}
		}
		if len(g.seenAs) < 4 {
			g.seenAs[seenAs] = true
		}
	}
	g.total++
	g.counts[o.kind]++
	g.sides[c.role]++
	if paired {
		g.pairs++
	}
	if o.exp {
		g.exp++
	}
	if o.hasCost {
		g.cost[o.kind] += o.cost
		g.costN[o.kind]++
	} else if o.costRTT {
		g.costRTTs[o.kind]++
	}
	if o.hasRTT && len(g.rtts) < rttSamples {
		g.rtts = append(g.rtts, o.rtt)
	}
	if len(g.groups[o.kind]) < groupsPerKind && len(o.ev) > 0 {
		if g.groups == nil {
			g.groups = map[Kind][]evGroup{}
		}
		g.groups[o.kind] = append(g.groups[o.kind], render(o.ev))
	}
	if c.nSynack == 0 && !c.acked {
		g.unanswered++
	}
	if o.kind == KindPartial && g.partial[1] == 0 {
		g.partial = [2]int{o.partAcked, o.partSent}
	}
	if (o.kind == KindStalledTFO || o.kind == KindSynackLost || o.kind == KindSynackUnacked) && o.cost > g.giveUp {
		g.giveUp = o.cost
	}
}

// foldPost adds what became of a connection after its handshake: it
// refines a connection already counted, so adds to no total.
func (a *aggregator) foldPost(server netip.AddrPort, o outcome) {
	g := a.server(server)
	g.counts[o.kind]++
	if o.hasCost {
		g.cost[o.kind] += o.cost
		g.costN[o.kind]++
	}
	if len(g.groups[o.kind]) < groupsPerKind && len(o.ev) > 0 {
		if g.groups == nil {
			g.groups = map[Kind][]evGroup{}
		}
		g.groups[o.kind] = append(g.groups[o.kind], render(o.ev))
	}
}

// foldAfter adds a TFO connection followed past its handshake: delivered
// if the server's data reached the client, else what went wrong, if
// anything.
func (a *aggregator) foldAfter(server netip.AddrPort, r *postRec, delivered bool) {
	if delivered {
		a.server(server).delivered++
		return
	}
	if o, ok := r.outcome(); ok {
		a.foldPost(server, o)
		if o.kind == KindServerDataLost && r.role == sideClient && r.sFIN && !r.sPayload {
			a.server(server).loneFIN++
		}
	}
}

func (g *serverAgg) detected() int {
	n := 0
	for _, d := range g.detections {
		n += d
	}
	return n
}

// medianRTT is the server's typical handshake round trip.
func (g *serverAgg) medianRTT() (time.Duration, bool) {
	if len(g.rtts) == 0 {
		return 0, false
	}
	s := slices.Clone(g.rtts)
	slices.Sort(s)
	return s[len(s)/2], true
}

func (g *serverAgg) sum(ks ...Kind) int {
	n := 0
	for _, k := range ks {
		n += g.counts[k]
	}
	return n
}

// attempts counts the connections that tried TFO.
func (g *serverAgg) attempts() int {
	n := 0
	for k := range numKinds {
		if k.tfo() {
			n += g.counts[k]
		}
	}
	return n
}

// meanCost is the mean cost over the connections of the given kinds, in
// ms; connections whose cost is one round trip take the median RTT.
func (g *serverAgg) meanCost(ks ...Kind) (float64, bool) {
	var total time.Duration
	n := 0
	rtt, hasRTT := g.medianRTT()
	for _, k := range ks {
		total += g.cost[k]
		n += g.costN[k]
		if hasRTT {
			total += time.Duration(g.costRTTs[k]) * rtt
			n += g.costRTTs[k]
		}
	}
	if n == 0 {
		return 0, false
	}
	return ms(total / time.Duration(n)), true
}

func ms(d time.Duration) float64 {
	return float64(d.Round(10*time.Microsecond)) / float64(time.Millisecond)
}

// pauseList is the pauses of the capture that saw the most.
func (g *serverAgg) pauseList() []Pause {
	var best []Pause
	for _, f := range slices.Sorted(maps.Keys(g.pauses)) {
		if len(g.pauses[f]) > len(best) {
			best = g.pauses[f]
		}
	}
	best = slices.Clone(best)
	slices.SortFunc(best, func(a, b Pause) int { return a.Start.Compare(b.Start) })
	return best
}

func (g *serverAgg) pool() int {
	n := 0
	for _, v := range g.poolClients {
		n = max(n, v)
	}
	return n
}

// finding is one verdict that applies to a server, before precedence.
type finding struct {
	verdict Verdict
	reason  string
	kinds   []Kind // whose connections it rests on and whose evidence it shows
	n       int
	cost    float64
	hasCost bool
	// variant picks the reproducer (Scenarios) when a verdict has several.
	variant string
}

// significant: a problem counts when it hits at least one TFO attempt in
// twenty (any, when there are at most twenty).
func significant(n, attempts int) bool { return n > 0 && n*20 >= max(attempts, 1) }

// plural is the count with its noun: "1 SYN", "2 SYNs".
func plural(n int, noun string) string { return pluralOf(n, noun, noun+"s") }

// pluralOf is plural for a phrase whose plural is not the singular and an
// s ("1 TFO SYN was", "2 TFO SYNs were").
func pluralOf(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// findings lists what applies to g, worst first, and notes below the
// significance threshold.
func (g *serverAgg) findings() (fs []finding, notes []string) {
	att := g.attempts()
	answered := g.total - g.unanswered
	add := func(f finding) {
		if !strings.HasSuffix(f.reason, ".") {
			f.reason += "."
		}
		if f.n > 0 {
			f.cost, f.hasCost = g.meanCost(f.kinds...)
		}
		fs = append(fs, f)
	}
	problem := func(f finding) {
		switch {
		case significant(f.n, att):
			add(f)
		case f.n > 0:
			notes = append(notes, fmt.Sprintf("%s in %s of %d TFO attempts: too rare to blame the path (random loss?)",
				f.verdict, plural(f.n, "connection"), att))
		}
	}

	// blackhole-paused
	if ps := g.pauseList(); len(ps) > 0 {
		var lens []string
		for _, p := range ps {
			s := fmt.Sprintf("%.2f s", p.Length().Seconds())
			if p.Open() {
				s = fmt.Sprintf("the rest of the capture (%s, the last %.2f s after the detection)", plural(p.Plain, "plain SYN"), p.Length().Seconds())
			}
			lens = append(lens, s)
		}
		reason := g.detectionReason() + fmt.Sprintf(", so the client's kernel detected a blackhole and stopped offering its cookie (plain SYNs) for %s", strings.Join(lens, ", "))
		if doubling(ps) {
			reason += ": each pause twice the last, the kernel's exponential backoff"
		}
		variant := ""
		if answered == 0 {
			reason += "; this port never answered, a server that is down is enough to trigger it"
			variant = "dead-server"
		}
		add(finding{verdict: BlackholePaused, reason: reason + ".",
			kinds: []Kind{KindStalledTFO, KindSynackUnacked, KindSynackLost, KindServerDataLost, KindClientDataLost, KindPaused, KindAccepted},
			n:     g.detected() + g.counts[KindPaused], variant: variant})
	}

	// synack-lost
	lost := g.counts[KindSynackLost] + g.counts[KindSynackUnacked]
	stalled := g.counts[KindStalledTFO]
	if answered > 0 || lost > 0 {
		lost += stalled
	}
	if lost > 0 {
		var r string
		switch {
		case g.counts[KindSynackLost] > 0:
			r = fmt.Sprintf("the server sent SYN-ACKs to %s that never reached the client (seen in both captures)", plural(g.counts[KindSynackLost], "TFO connection"))
		case g.counts[KindSynackUnacked] > 0:
			r = fmt.Sprintf("the server answered %s, but the client kept retransmitting its SYN: the SYN-ACKs did not reach it", plural(g.counts[KindSynackUnacked], "TFO SYN"))
		default:
			r = fmt.Sprintf("%s got no SYN-ACK at all while this server answered other SYNs: something drops the answers to TFO flows (a stateful firewall; a server-side capture would show the SYN-ACKs)", plural(stalled, "TFO connection"))
		}
		if g.giveUp > 0 {
			r += fmt.Sprintf("; connections stalled up to %.1f s", g.giveUp.Seconds())
		}
		problem(finding{verdict: SynackLost, reason: r + ".", kinds: []Kind{KindSynackLost, KindSynackUnacked, KindStalledTFO}, n: lost})
	}

	// data-blackholed
	saidOff := g.dataBlackholed(problem, &notes)

	// syn-data-dropped
	resets := g.counts[KindReset]
	if g.portRefuses() {
		resets = 0 // the port's own refusals (refusals.go), not TFO's
	}
	if n := g.sum(KindFallback, KindOptionDropped, KindDropped, KindCookieNotOffered, KindGivenUp) + resets; n > 0 {
		kinds := []Kind{KindDropped, KindFallback, KindGivenUp, KindOptionDropped, KindCookieNotOffered}
		if resets > 0 {
			kinds = append(kinds, KindReset) // not the refusals' RSTs as evidence or cost
		}
		f := finding{verdict: SynDataDropped, kinds: kinds, n: n}
		lost := g.sum(KindFallback, KindOptionDropped, KindDropped) + resets
		switch {
		case g.counts[KindGivenUp] > 0 && g.counts[KindGivenUp] >= lost:
			f.reason = givenUpReason(g.counts[KindGivenUp])
			f.variant = "icmp"
		case lost == 0:
			f.reason = fmt.Sprintf("clients this server had given a cookie came back with %s carrying neither the cookie nor data: seen from the server, that is a Linux client's plain retransmission after its data SYN was lost upstream (or a TFO pause on the client, or an application there that does not use TFO; a client-side capture tells)", plural(n, "SYN"))
		case g.counts[KindDropped] > 0:
			f.reason = fmt.Sprintf("%s sent data in the SYN that the server never received; the client fell back to a plain SYN after a timeout", plural(g.counts[KindDropped], "TFO connection"))
		case resets > 0 && resets >= g.counts[KindFallback]+g.counts[KindOptionDropped]:
			f.reason = fmt.Sprintf("%s answered with a RST: something in the path rejects SYNs with data", pluralOf(resets, "TFO SYN was", "TFO SYNs were"))
			f.variant = "reset"
		case g.counts[KindFallback] > 0:
			f.reason = fmt.Sprintf("%s; the plain retransmission was answered, after one SYN timeout (the data SYN was dropped on the way, or its SYN-ACK was)", pluralOf(g.counts[KindFallback], "TFO connection got no answer to its data SYN", "TFO connections got no answer to their data SYN"))
		default:
			f.reason = fmt.Sprintf("SYNs carrying the TFO option got no answer in %s, plain retransmissions did: something drops SYNs with option 34/254", plural(g.counts[KindOptionDropped], "connection"))
			f.variant = "option"
		}
		if g.counts[KindCookieUnused] > 0 {
			f.reason += fmt.Sprintf("; later, %s went out plain although the client held a cookie (the kernel's per-destination backoff after SYN losses)", plural(g.counts[KindCookieUnused], "SYN"))
		}
		problem(f)
	}

	// option-stripped. When matched pairs showed the option reaching the
	// server intact and none showed it stripped, a data SYN refused
	// without an option back is the server's doing (server-no-tfo below).
	refusedNoOpt := g.counts[KindRefusedNoOption]
	serverRefusals := g.sum(KindRefusedByServer, KindRefusedSameCookie)
	if g.optIntact > 0 && g.counts[KindStripped] == 0 {
		serverRefusals += refusedNoOpt
		refusedNoOpt = 0
	}
	if n := g.counts[KindStripped] + refusedNoOpt + g.counts[KindStrippedSuspect]; n > 0 {
		f := finding{verdict: OptionStripped, kinds: []Kind{KindStripped, KindRefusedNoOption, KindStrippedSuspect}, n: n}
		switch {
		case g.counts[KindStripped] > 0:
			f.reason = fmt.Sprintf("the TFO option the client sent was missing when %s reached the server: a middlebox strips option 34/254", plural(g.counts[KindStripped], "SYN"))
		case refusedNoOpt > 0:
			f.reason = g.refusedNoOptionReason(refusedNoOpt)
		default:
			f.reason = fmt.Sprintf("%s arrived with data but without the TFO option and only the SYN was acked: a middlebox stripped the option (or the client runs cookie-less TFO, tcp_fastopen 0x4, against a server that wants a cookie)", plural(g.counts[KindStrippedSuspect], "SYN"))
		}
		problem(f)
	}

	// cookie-rejected: the server refused the cookie and handed out a
	// fresh one, or wanted one and got none.
	if n := g.sum(KindRejected, KindNoCookieRefused); n > 0 {
		f := finding{verdict: CookieRejected, kinds: []Kind{KindRejected, KindNoCookieRefused}, n: n}
		switch pool := g.pool(); {
		case pool > 0:
			f.reason = fmt.Sprintf("the same client's cookie was accepted by some connections and refused (a fresh cookie handed out) by others, for %s: the servers behind this address do not share a TFO key", plural(pool, "client"))
		case g.counts[KindRejected] > 0 && g.sum(KindAccepted) == 0:
			f.reason = fmt.Sprintf("the server refused the cookie of %s and handed out a fresh one: its key changed, or the servers behind the address do not share one", plural(g.counts[KindRejected], "connection"))
			f.variant = "rotation"
		case g.counts[KindRejected] > 0:
			f.reason = fmt.Sprintf("%s had its cookie refused and replaced while others were accepted: a pool without a shared key, or a key rotation", plural(g.counts[KindRejected], "connection"))
		default:
			f.reason = fmt.Sprintf("the client sent data without a cookie in %s (cookie-less TFO, tcp_fastopen 0x4) and the server, wanting a cookie, acked only the SYN", plural(g.counts[KindNoCookieRefused], "SYN"))
			f.variant = "cookie-less-client"
		}
		if g.counts[KindRejected] > 0 {
			// A cookie refused and replaced is the server's key speaking,
			// never a lost packet: it counts from the first.
			add(f)
		} else {
			problem(f)
		}
	}

	// server-no-tfo: no cookie for a cookie request; or cookie and data
	// arrived and the server answered without TFO and without a fresh
	// cookie (so it did not find the cookie wrong): Linux does that when
	// its TFO queue is full (tcp_fastopen_queue_check) or TFO is off.
	works := g.sum(KindGranted, KindAccepted, KindAcceptedNoCookie, KindPartial, KindCookieNoData, KindCookieReasked)
	if n := g.counts[KindNoCookie] + serverRefusals; n > 0 {
		kinds := []Kind{KindNoCookie, KindRefusedByServer, KindRefusedSameCookie}
		if serverRefusals > g.sum(KindRefusedByServer, KindRefusedSameCookie) {
			kinds = append(kinds, KindRefusedNoOption)
		}
		f := finding{verdict: ServerNoTFO, kinds: kinds, n: n}
		forms := "only the option 34 form was tried"
		if g.exp > 0 {
			forms = "both option forms (34 and 254/0xF989) were tried"
		}
		var parts []string
		switch nc := g.counts[KindNoCookie]; {
		case nc > 0 && works == 0:
			parts = append(parts, fmt.Sprintf("%s answered without a cookie (%s): TFO is off on the server (or a middlebox strips the option on the way in, or the server accepts data without a cookie, tcp_fastopen 0x200, and since Linux 5.15 hands none out)", pluralOf(nc, "cookie request was", "cookie requests were"), forms))
		case nc > 0:
			parts = append(parts, fmt.Sprintf("%s answered without a cookie while %d TFO exchanges worked: part of the servers behind this address have TFO off", pluralOf(nc, "cookie request was", "cookie requests were"), works))
			f.variant = "part-of-pool"
		}
		if serverRefusals > 0 {
			r := fmt.Sprintf("the server received cookie and data in %s and answered without TFO: it acked only the SYN and handed out no fresh cookie (so it did not find the cookie wrong)", plural(serverRefusals, "SYN"))
			if acc := g.sum(KindAccepted); acc > 0 {
				r += fmt.Sprintf(", while it accepted the data of %s: its TFO queue was full then (the listen backlog, or max_qlen of net.ipv4.tcp_fastopen; TCPFastOpenListenOverflow counts it)", plural(acc, "other"))
				if f.variant == "" {
					f.variant = "overflow"
				}
			} else {
				r += ": TFO is off on it now, or its TFO queue is always full"
			}
			if g.optIntact > 0 {
				r += fmt.Sprintf("; the option reached it intact in %s", plural(g.optIntact, "matched connection"))
			}
			parts = append(parts, r)
		}
		f.reason = strings.Join(parts, "; ")
		problem(f)
	}

	// client-no-tfo although the server works: the same client asked
	// again and again for a cookie it had been given, and never sent data.
	reasked := g.counts[KindCookieReasked]
	dataSYNs := g.sum(KindAccepted, KindAcceptedNoCookie, KindPartial, KindFallback, KindDropped, KindReset, KindGivenUp, KindStripped, KindRefusedNoOption,
		KindStrippedSuspect, KindRefusedByServer, KindRejected, KindRefusedSameCookie, KindNoCookieRefused)
	neverData := reasked >= 2 && dataSYNs == 0
	if neverData {
		add(finding{verdict: ClientNoTFO, kinds: []Kind{KindCookieReasked, KindGranted}, n: reasked + g.counts[KindGranted],
			reason: fmt.Sprintf("the server hands out cookies, but the client never sent data in its SYN although it was granted a cookie: it asked again for one %s, with the same SYN, and got it again. A Linux client does that when its data SYN cannot leave the host (a local firewall that drops SYNs with data makes the kernel fall back to a cookie request at once), or when its cookie cache (tcp_metrics) is not kept",
				plural(reasked, "time"))})
	} else if reasked >= 2 {
		notes = append(notes, fmt.Sprintf("%s came from clients asking again for a cookie they had been given, with the same SYN", plural(reasked, "cookie request")))
	}

	// non-problems
	if works > 0 && !neverData {
		add(g.worksFinding(works))
	}
	if plain := g.sum(KindPlain); plain > 0 && att == 0 && g.sum(KindPaused, KindCookieUnused) == 0 {
		add(finding{verdict: ClientNoTFO, reason: fmt.Sprintf("all %s were plain handshakes: the clients never asked for a cookie nor sent data in a SYN.", plural(plain, "connection")),
			kinds: []Kind{KindPlain}, n: plain})
	}
	if len(fs) == 0 {
		add(finding{verdict: Inconclusive, reason: g.inconclusiveReason(), kinds: []Kind{KindOneDirection, KindStalledPlain, KindStalledTFO, KindRefused, KindReset, KindCookieUnused, KindPaused, KindUnfinished}, n: g.total})
	} else if g.portRefuses() {
		notes = append(notes, g.refusedReason())
	}
	if d := g.detected(); d > 0 && len(g.pauseList()) == 0 && !saidOff {
		if g.detNoPause > 0 {
			notes = append(notes, fmt.Sprintf("the client's kernel would have detected a blackhole (%s), but its next TFO SYN still carried the cookie: its blackhole detection is off (net.ipv4.tcp_fastopen_blackhole_timeout_sec = 0, the default since Linux 5.14)", g.detectionSummary()))
		} else {
			notes = append(notes, fmt.Sprintf("the client's kernel must have detected a blackhole (%s), but no later connection shows the pause", g.detectionSummary()))
		}
	}
	if g.exp > 0 {
		notes = append(notes, fmt.Sprintf("%s used the experimental option form (kind 254, magic 0xF989)", plural(g.exp, "connection")))
	}
	if g.orphans > 0 && g.orphans*10 > g.total {
		notes = append(notes, fmt.Sprintf("%s without their SYN in the capture", plural(g.orphans, "SYN-ACK")))
	}
	return fs, notes
}

// detectionPhrases say what made the client's kernel detect a blackhole,
// per detectHow.
var detectionPhrases = [numDetect]string{
	detSYN3:    "TFO SYNs to this server timed out three times",
	detGiveUp:  "a TFO connection to this server gave up on its unanswered SYNs before their third timeout (tcp_syn_retries or TCP_USER_TIMEOUT: the kernel counts a TFO socket that expires as a blackhole at once)",
	detDataRTO: "after a TFO handshake with this server, the client's data went unacked until its third retransmission timeout",
	detOFOFIN:  "after a TFO handshake with this server, the server's data never reached the client but its FIN did (a FIN alone in the out-of-order queue, no data received: tcp_fastopen_active_disable_ofo_check, when the socket was closed)",
}

// detectionReason says how the pauses this server caused began.
func (g *serverAgg) detectionReason() string {
	var parts []string
	for how, n := range g.detections {
		if n > 0 {
			parts = append(parts, detectionPhrases[how])
		}
	}
	if len(parts) == 0 {
		return "TFO connections to this server failed"
	}
	return strings.Join(parts, "; and ")
}

// detectionSummary counts the detections by how, for a note.
func (g *serverAgg) detectionSummary() string {
	short := [numDetect]string{"three SYN timeouts", "an unanswered SYN given up", "three data timeouts after the handshake", "a lone out-of-order FIN"}
	var parts []string
	for how, n := range g.detections {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s with %s", plural(n, "TFO connection"), short[how]))
		}
	}
	return strings.Join(parts, ", ")
}

// dataBlackholed is the finding of TFO connections whose handshake passed
// and whose data after it did not. saidOff: its reason says the client's
// blackhole detection is off.
func (g *serverAgg) dataBlackholed(problem func(finding), notes *[]string) (saidOff bool) {
	noAns := g.counts[KindNoAnswer]
	if noAns > 0 && g.delivered == 0 {
		// Nothing to compare with: the application may just not answer.
		*notes = append(*notes, fmt.Sprintf("%s whose SYN data the server acked got nothing back before the client gave up, but no TFO connection to this server got an answer either: an application that does not answer, or a path that drops all its data", plural(noAns, "connection")))
		noAns = 0
	}
	n := g.sum(KindServerDataLost, KindClientDataLost) + noAns
	if n == 0 {
		return false
	}
	kinds := []Kind{KindServerDataLost, KindClientDataLost}
	var parts []string
	if c := g.counts[KindServerDataLost]; c > 0 {
		how := "the server retransmitted it in vain"
		switch {
		case g.loneFIN == c:
			how = "only the server's FIN got through, out of order, after bytes that never came"
		case g.loneFIN > 0:
			how = fmt.Sprintf("in %d of them only the server's FIN got through, out of order", g.loneFIN)
		}
		parts = append(parts, fmt.Sprintf("in %s, what the server sent after the handshake never reached the client, which acked none of it (%s)", plural(c, "TFO connection"), how))
	}
	if c := g.counts[KindClientDataLost]; c > 0 {
		parts = append(parts, fmt.Sprintf("in %s, the client's data after the handshake was retransmitted and never acked", plural(c, "TFO connection")))
	}
	if noAns > 0 {
		kinds = append(kinds, KindNoAnswer)
		parts = append(parts, fmt.Sprintf("in %s, the server acked the data in the SYN but its answer never came: the client waited and gave up, while %s to this server did get data back", plural(noAns, "TFO connection"), plural(g.delivered, "TFO connection")))
	}
	r := "the TFO handshake passed but the data after it did not: " + strings.Join(parts, "; ") +
		": something in the path lets a TFO flow's handshake through and drops its data"
	if g.detNoPause > 0 {
		r += fmt.Sprintf("; the client's kernel did not pause TFO (%s, and its next TFO SYN still carried the cookie): its blackhole detection is off (net.ipv4.tcp_fastopen_blackhole_timeout_sec = 0, the default since Linux 5.14), so each TFO connection stalls again", g.detectionSummary())
		saidOff = significant(n, g.attempts())
	}
	problem(finding{verdict: DataBlackholed, reason: r + ".", kinds: kinds, n: n})
	return saidOff
}

// inconclusiveReason says why nothing could be concluded.
func (g *serverAgg) inconclusiveReason() string {
	switch {
	case g.total == 0 && g.orphans > 0:
		return fmt.Sprintf("only the server's side of the handshake was captured (%s, no SYN): a capture filtered to one direction?", plural(g.orphans, "SYN-ACK"))
	case g.total == 0:
		return "no SYN to this server in the capture(s)"
	case g.counts[KindOneDirection] > 0 && g.counts[KindOneDirection] >= g.total/2 && g.agg.cut:
		return fmt.Sprintf("%s completed without a readable SYN-ACK: the snap length cut their TCP headers (capture with tcpdump -s 0)", plural(g.counts[KindOneDirection], "handshake"))
	case g.counts[KindOneDirection] > 0 && g.counts[KindOneDirection] >= g.total/2:
		return fmt.Sprintf("only one direction was captured: %s completed without a SYN-ACK in the capture", plural(g.counts[KindOneDirection], "handshake"))
	case g.counts[KindUnfinished] == g.total:
		return "the capture ended less than a SYN timeout after the SYNs to this server: too early to tell"
	case g.portRefuses() || (g.counts[KindRefused] > 0 && g.counts[KindRefused] == g.unanswered):
		return g.refusedReason()
	case g.unanswered == g.total:
		return fmt.Sprintf("none of the %s got a SYN-ACK: the server is down or unreachable, which says nothing about TFO", plural(g.total, "connection"))
	case g.counts[KindRefused] > 0:
		return "the port refused the connections (RST): nothing listens there"
	case g.counts[KindPaused] > 0:
		return fmt.Sprintf("%s went out plain during a blackhole pause the client's kernel started after TFO failures elsewhere (see the blackhole-paused server)", plural(g.counts[KindPaused], "SYN"))
	case g.counts[KindCookieUnused] > 0:
		return "clients that had used TFO with this server came back without it: a client-side capture would tell why"
	}
	return "no connection showed enough of its handshake to judge"
}

// doubling reports pauses growing ×2 each time (within 25%, the kernel's
// timers and the probes' spacing blur them).
func doubling(ps []Pause) bool {
	var closed []time.Duration
	for _, p := range ps {
		if !p.Open() {
			closed = append(closed, p.Length())
		}
	}
	if len(closed) < 2 {
		return false
	}
	for i := 1; i < len(closed); i++ {
		r := float64(closed[i]) / float64(closed[i-1])
		if r < 1.5 || r > 2.5 {
			return false
		}
	}
	return true
}

// evidence picks up to evidenceLines lines from the kinds' groups,
// connection by connection, round robin over the kinds.
func (g *serverAgg) evidence(kinds []Kind) []evText {
	var picked []evGroup
	n := 0
	for round := range groupsPerKind {
		for _, k := range kinds {
			if round < len(g.groups[k]) {
				grp := g.groups[k][round]
				if n+len(grp) > evidenceLines && n > 0 {
					continue
				}
				picked = append(picked, grp)
				n += len(grp)
			}
		}
	}
	sortGroups(picked)
	var out []evText
	for _, grp := range picked {
		out = append(out, grp...)
	}
	if len(out) > evidenceLines {
		out = out[:evidenceLines]
	}
	return out
}

// sortGroups orders evidence groups by their first packet's time.
func sortGroups(gs []evGroup) {
	slices.SortStableFunc(gs, func(a, b evGroup) int { return a[0].t.Compare(b[0].t) })
}
