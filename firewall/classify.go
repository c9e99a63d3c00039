package firewall

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/topology"
)

// Kind is a verdict: what the ruleset does to TFO on one path.
type Kind string

const (
	// Safe: data in the SYN accepted, no extra round trip.
	Safe Kind = "tfo-safe"
	// Lost: TFO does not happen, but nothing is retransmitted: the data
	// goes after the handshake, as without TFO.
	Lost Kind = "tfo-lost"
	// RTO: every connection through the ruleset waits for a SYN
	// retransmission timeout.
	RTO Kind = "rto"
	// Refused: connections are refused (RST or ICMP).
	Refused Kind = "refused"
	// Stall: connections never complete.
	Stall Kind = "stall"
	// Paused: the client's blackhole detection fires and pauses active TFO
	// for every connection of the host.
	Paused Kind = "paused"
	// NoRules: no file covers the family; it is not tested.
	NoRules Kind = "no-rules"
	// RunFailed: the lab could not run the variant (not a verdict on the
	// ruleset).
	RunFailed Kind = "run-failed"
)

// Kinds are the verdicts a tested path can get, best first.
var Kinds = []Kind{Safe, Lost, RTO, Paused, Refused, Stall}

// Title is the verdict as the report states it.
func (k Kind) Title() string {
	switch k {
	case Safe:
		return "TFO-safe"
	case Lost:
		return "TFO lost at no cost"
	case RTO:
		return "TFO costs a retransmission timeout on every connection"
	case Refused:
		return "connections refused"
	case Stall:
		return "connections stall"
	case Paused:
		return "detection pauses TFO host-wide"
	case NoRules:
		return "no rules given"
	case RunFailed:
		return "run failed"
	}
	return string(k)
}

// severity orders connection outcomes: a path gets its worst one.
func (k Kind) severity() int {
	switch k {
	case Safe:
		return 0
	case Lost:
		return 1
	case RTO:
		return 2
	case Paused:
		return 3
	case Refused:
		return 4
	case Stall:
		return 5
	}
	return 6
}

// ConnFact is what one connection through the ruleset showed.
type ConnFact struct {
	Index   int    `json:"index"`
	Label   string `json:"label"`
	Outcome Kind   `json:"outcome"`
	// SynRetrans is how many SYN retransmissions the client's capture saw.
	SynRetrans int `json:"syn_retransmissions"`
	// RetransAfter is how long after the first SYN the client's capture
	// saw the first retransmission: the RTO paid on the wire.
	RetransAfter time.Duration `json:"syn_retransmitted_after_ns,omitempty"`
	FirstByte    time.Duration `json:"first_byte_ns"`
	// Lost is what of this connection the ruleset dropped or changed.
	Lost []Loss `json:"lost,omitempty"`
	Note string `json:"note,omitempty"`
}

// RuleHit is one of the user's rules and the packets it matched.
type RuleHit struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Rule    string `json:"rule"`
	Packets uint64 `json:"packets"`
	// Acts: the rule drops, rejects or rewrites (DROP, REJECT,
	// TCPOPTSTRIP, a DROP policy, nft drop/reject/reset), as opposed to
	// accepting, jumping or marking.
	Acts bool `json:"acts"`
}

// At is "file:line" ("file" for a rule without a line).
func (h RuleHit) At() string {
	if h.Line > 0 {
		return fmt.Sprintf("%s:%d", h.File, h.Line)
	}
	return h.File
}

// Finding is the verdict on one variant, with what it rests on.
type Finding struct {
	Variant Variant `json:"path"`
	Kind    Kind    `json:"verdict"`
	// Lost is what the ruleset dropped or changed, over the connections
	// through it.
	Lost []LostOn `json:"lost,omitempty"`
	// Rules are the user's rules that matched the lab's traffic, the ones
	// that act first; NoMatch is set when none matched at all.
	Rules   []RuleHit `json:"rules,omitempty"`
	NoMatch bool      `json:"no_rule_matched,omitempty"`
	// Cost is, for RTO, how much later the first byte came than on an open
	// path (the median over the connections that paid); Baseline is that
	// open path's first byte (0: none measured).
	Cost     time.Duration `json:"cost_ns,omitempty"`
	Baseline time.Duration `json:"open_path_first_byte_ns,omitempty"`
	// SynRetrans is the SYN retransmissions each paying connection made;
	// Schedule says whether its first byte fell in the SYN schedule's
	// window for that many.
	SynRetrans int    `json:"syn_retransmissions,omitempty"`
	Schedule   string `json:"schedule,omitempty"`
	// RetransAfter is the median time from first SYN to its first
	// retransmission over those connections, from the capture.
	RetransAfter time.Duration `json:"syn_retransmitted_after_ns,omitempty"`
	// Paused: the client counted a blackhole, or a later connection went
	// out without option 34 although a cookie is cached.
	Paused bool `json:"paused,omitempty"`
	// Notes qualify the verdict; Hint is advice when the rules saw none of
	// the traffic.
	Notes []string `json:"notes,omitempty"`
	Hint  string   `json:"hint,omitempty"`
	// Conns are the connections through the ruleset.
	Conns []ConnFact `json:"connections"`
	// Evidence is the packets on both sides, counters and cookie cache;
	// Brief the same for one connection that shows the verdict, and its
	// handshake only.
	Evidence string `json:"evidence"`
	Brief    string `json:"-"`
	// Dir is where the variant's observation, verdicts and pcaps are.
	Dir string `json:"artefacts,omitempty"`
	// Err is why the run failed (RunFailed only).
	Err string `json:"error,omitempty"`
	// firstBytes and retrans of the connections that paid an RTO.
	firstBytes, retrans []time.Duration
}

// through reports whether a connection label is one made through the
// ruleset.
func through(label string) bool {
	return label == LabelThrough || label == LabelDetect || label == LabelAfter
}

// Classify turns the observation of variant v into its verdict. It reads
// only the observation (connections, both captures, counters, cookie
// cache, rule hits), so a report can be judged again from its JSON.
func Classify(obs *observation.Observation, v Variant) Finding {
	f := Finding{Variant: v, Kind: Safe}
	cookieSeen := v.Phase == FirewallChange // the open path handed one out
	var baseline time.Duration
	worst := Safe
	for i, c := range obs.Conns {
		if c.Label == LabelOpen {
			if c.FirstByte > 0 && !c.Failed() {
				baseline = c.FirstByte
			}
			continue
		}
		if !through(c.Label) {
			continue
		}
		fact := connFact(obs, i, cookieSeen)
		if gotCookie(obs, i) {
			cookieSeen = true
		}
		f.Conns = append(f.Conns, fact)
		if fact.Outcome == RTO {
			f.firstBytes = append(f.firstBytes, fact.FirstByte)
			f.retrans = append(f.retrans, fact.RetransAfter)
			f.SynRetrans = max(f.SynRetrans, fact.SynRetrans)
		}
		if v.Detection && c.Label == LabelDetect {
			continue // judged below, with what detection made of it
		}
		if fact.Outcome.severity() > worst.severity() {
			worst = fact.Outcome
		}
	}
	f.Lost = summarizeLost(f.Conns)
	f.recovery(obs)
	f.Kind = worst
	if len(f.Conns) == 0 {
		f.Kind = RunFailed
		f.Err = "no connection went through the ruleset"
	}
	if v.Detection {
		f.judgeDetection(obs)
	}
	f.servedUnseen(obs)
	f.refusedHow(obs)
	f.Rules, f.NoMatch = ruleHits(obs)
	f.Baseline = baseline
	f.settle(obs)
	f.Evidence = evidence(obs, f, false)
	f.Brief = evidence(obs, f, true)
	return f
}

// servedUnseen notes stalled connections whose request the server took
// from the SYN and answered: the server acted on it, the client never
// heard.
func (f *Finding) servedUnseen(obs *observation.Observation) {
	var conns []string
	for _, fact := range f.Conns {
		c := obs.Conns[fact.Index]
		if fact.Outcome != Stall || len(obs.Services) == 0 {
			continue
		}
		for _, a := range obs.Services[0].Accepted {
			if a.Remote == c.Local && a.SynData && !a.Time.Before(c.Start) {
				conns = append(conns, fmt.Sprint(fact.Index))
				break
			}
		}
	}
	if len(conns) > 0 {
		word := "connection"
		if len(conns) > 1 {
			word = "connections"
		}
		f.Notes = append(f.Notes, fmt.Sprintf("the server accepted the request in the SYN of %s %s and answered it: it acted on a request whose client never heard back", word, strings.Join(conns, ", ")))
	}
}

// recovery notes when the last connections did TFO after all, and how
// (the experimental option 254 a ruleset may not know).
func (f *Finding) recovery(obs *observation.Observation) {
	n := len(f.Conns)
	if n < 2 || f.Conns[n-1].Outcome != Safe || f.Conns[0].Outcome == Safe {
		return
	}
	k := n - 1
	for k > 0 && f.Conns[k-1].Outcome == Safe {
		k--
	}
	how := ""
	for _, fact := range f.Conns[k:] {
		if p := firstSYN(obs, fact.Index); p != nil && p.FastOpen != nil && p.FastOpen.Experimental {
			how = ", with the experimental TFO option (kind 254, magic 0xF989), which the ruleset lets through"
		}
	}
	f.Notes = append(f.Notes, fmt.Sprintf("from connection %d on TFO works%s", f.Conns[k].Index, how))
}

// judgeDetection folds the detecting connection in: a pause is the verdict
// when the client counted a blackhole (or the next connection went out
// plain with a cookie cached) and that next connection then got through;
// otherwise the detecting connection counts like any other.
func (f *Finding) judgeDetection(obs *observation.Observation) {
	blackholes, _ := obs.Counters(clientNode(obs)).Get(lab.TCPFastOpenBlackhole)
	detect, after := -1, -1
	for k, c := range f.Conns {
		switch c.Label {
		case LabelDetect:
			detect = k
		case LabelAfter:
			after = k
		}
	}
	plainAfter := after >= 0 && cookieCached(obs) && firstSYN(obs, f.Conns[after].Index) != nil &&
		firstSYN(obs, f.Conns[after].Index).FastOpen == nil
	f.Paused = blackholes > 0 || plainAfter
	if !f.Paused {
		if detect >= 0 && f.Conns[detect].Outcome.severity() > f.Kind.severity() {
			f.Kind = f.Conns[detect].Outcome
		}
		return
	}
	var whys []string
	if blackholes > 0 {
		whys = append(whys, fmt.Sprintf("the client counted TCPFastOpenBlackhole +%d", blackholes))
	}
	if plainAfter {
		whys = append(whys, fmt.Sprintf("connection %d then went out as a plain SYN without option 34 although a cookie is cached", f.Conns[after].Index))
	}
	why := strings.Join(whys, "; ")
	if detect >= 0 {
		f.Conns[detect].Note = "tripped blackhole detection"
	}
	if after >= 0 && f.Conns[after].Outcome.severity() <= Lost.severity() {
		f.Kind = Paused
		f.Notes = append(f.Notes, why+": active TFO is off for every destination of the host for the blackhole timeout (doubling with each detection)")
		return
	}
	if detect >= 0 && f.Conns[detect].Outcome.severity() > f.Kind.severity() {
		f.Kind = f.Conns[detect].Outcome
	}
	f.Notes = append(f.Notes, why+", yet connections still fail: the pause does not help")
}

// settle derives the cost and the schedule check from what Classify found.
func (f *Finding) settle(obs *observation.Observation) {
	if len(f.firstBytes) == 0 {
		return
	}
	median := medianOf(f.firstBytes)
	f.Cost = median - f.Baseline
	f.RetransAfter = medianOf(f.retrans)
	n := f.SynRetrans
	lo, hi, err := obs.SynSchedule.Window(n)
	switch {
	case err != nil:
		f.Schedule = err.Error()
	case median >= lo && median < hi:
		f.Schedule = fmt.Sprintf("first byte after %d SYN retransmission%s (the first %v after the SYN), as the client's SYN schedule predicts (window %v–%v)", n, plural(n), f.RetransAfter.Round(time.Millisecond), lo.Round(time.Millisecond), hi.Round(time.Millisecond))
	default:
		f.Schedule = fmt.Sprintf("first byte at %v: outside the SYN schedule's window %v–%v for %d retransmission%s", median.Round(time.Millisecond), lo.Round(time.Millisecond), hi.Round(time.Millisecond), n, plural(n))
	}
}

func medianOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// SetBaseline sets the open-path first byte the cost is measured against
// (a first-contact run has no open path of its own) and recomputes Cost.
func (f *Finding) SetBaseline(b time.Duration) {
	if f.Baseline != 0 || len(f.firstBytes) == 0 {
		return
	}
	f.Cost -= b
	f.Baseline = b
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func clientNode(obs *observation.Observation) string {
	for _, c := range obs.Conns {
		if c.Node != "" {
			return c.Node
		}
	}
	return topology.Client
}

// cookieCached reports whether the client's cookie cache holds a cookie
// for the service's address.
func cookieCached(obs *observation.Observation) bool {
	var dst netip.Addr
	if len(obs.Services) > 0 {
		dst = obs.Services[0].Addr.Addr()
	}
	for _, e := range obs.Metrics(clientNode(obs)) {
		if len(e.FastOpenCookie) > 0 && (!dst.IsValid() || e.Dst == dst) {
			return true
		}
	}
	return false
}

func firstSYN(obs *observation.Observation, i int) *capture.Packet {
	if s := obs.ClientSYNs(i); len(s) > 0 {
		return &s[0]
	}
	return nil
}

// gotCookie reports whether a SYN-ACK with a cookie reached the client.
func gotCookie(obs *observation.Observation, i int) bool {
	for _, p := range obs.ConnPackets(i, observation.ClientSide) {
		if p.IsSYNACK() && p.FastOpen != nil && !p.FastOpen.IsRequest() {
			return true
		}
	}
	return false
}

func refusedErrno(e string) bool {
	switch e {
	case "ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EACCES", "EPERM", "EHOSTDOWN", "ENETDOWN":
		return true
	}
	return false
}

// connFact judges one connection through the ruleset. cookieSeen: a cookie
// reached the client before this connection, so a cookie request now means
// TFO was lost.
func connFact(obs *observation.Observation, i int, cookieSeen bool) ConnFact {
	c := obs.Conns[i]
	syns := obs.ClientSYNs(i)
	fact := ConnFact{Index: i, Label: c.Label, FirstByte: c.FirstByte}
	if len(syns) > 0 {
		fact.SynRetrans = len(syns) - 1
	}
	if len(syns) > 1 {
		fact.RetransAfter = syns[1].Time.Sub(syns[0].Time)
	}
	fact.Lost = whatWasLost(obs, i, cookieSeen)
	switch {
	case c.Failed() && refusedErrno(c.Errno):
		fact.Outcome = Refused
		fact.Note = c.Errno
	case c.Stalled || c.Failed():
		fact.Outcome = Stall
		if !c.Stalled {
			fact.Note = c.Error
		}
	case tooBig(syns):
		fact.Outcome = Lost
		fact.Note = tooBigNote(syns)
	case fact.SynRetrans > 0:
		fact.Outcome = RTO
	case len(syns) > 0 && syns[0].FastOpen != nil && syns[0].FastOpen.IsRequest() && syns[0].Length == 0:
		// A cookie request: fine on first contact if a cookie comes back.
		fact.Outcome = Lost
		if !cookieSeen && gotCookie(obs, i) {
			fact.Outcome = Safe
		}
	case c.SynData:
		fact.Outcome = Safe
	default:
		fact.Outcome = Lost
	}
	return fact
}

// synName names a client SYN by what it carried.
func synName(p capture.Packet) string {
	switch {
	case p.Length > 0:
		return "the SYN with data"
	case p.FastOpen != nil && p.FastOpen.IsRequest():
		return "the cookie-request SYN"
	case p.FastOpen != nil:
		return "the SYN with a cookie"
	}
	return "the SYN"
}

// answers reports whether SYN-ACK a answers SYN s (ISN+1, or ISN+1+len).
func answers(a, s capture.Packet) bool {
	return a.IsSYNACK() && (a.Ack == s.Seq+1 || a.Ack == s.Seq+1+uint32(s.Length))
}

// Loss is one thing the ruleset dropped or changed: What names it (the
// SYN with data, the cookie-request SYN, the SYN-ACK, option 34, data after
// the handshake), Detail says where it was seen to go missing.
type Loss struct {
	What   string `json:"what"`
	Detail string `json:"detail,omitempty"`
}

// LostOn is a Loss and the connections it happened on.
type LostOn struct {
	Loss
	Conns []int `json:"connections"`
}

func (l LostOn) String() string {
	s := l.What
	if l.Detail != "" {
		s += " (" + l.Detail + ")"
	}
	word := "connection"
	if len(l.Conns) > 1 {
		word = "connections"
	}
	nums := make([]string, len(l.Conns))
	for i, n := range l.Conns {
		nums[i] = fmt.Sprint(n)
	}
	return fmt.Sprintf("%s, %s %s", s, word, strings.Join(nums, ", "))
}

// whatWasLost reads both captures of connection i for what the ruleset
// dropped or changed: the first SYN (with data, or the cookie request),
// the SYN-ACK, option 34, the data after the handshake, or a RST in the
// server's stead. The client-side capture sees what the client sent after
// its own OUTPUT chain and what reached it before its INPUT chain; the
// server side likewise, so a drop on either host's own rules shows as a
// packet that reached the interface and got no answer. A retransmitted SYN
// has the first one's ISN, so "the first SYN" and "its SYN-ACK" are the
// packets seen before the client's first retransmission left.
func whatWasLost(obs *observation.Observation, i int, cookieSeen bool) []Loss {
	c := obs.Conns[i]
	cl := obs.ConnPackets(i, observation.ClientSide)
	sv := obs.ConnPackets(i, observation.ServerSide)
	fromClient := func(p capture.Packet) bool { return p.Src == c.Local }
	var out []Loss
	add := func(what, detail string) { out = append(out, Loss{what, detail}) }
	syns := obs.ClientSYNs(i)
	if len(syns) == 0 {
		if c.Failed() {
			add("the SYN", "it never left the client: "+c.Error)
		}
		return out
	}
	first := syns[0]
	beforeRetrans := func(p capture.Packet) bool { return len(syns) == 1 || p.Time.Before(syns[1].Time) }
	if first.FastOpen != nil && first.FastOpen.IsRequest() && first.Length == 0 && cookieSeen {
		add("the SYN with data", "it never reached the wire: the client's own rules dropped it, and the client, a cookie cached, sent a cookie request instead")
	}
	var atServer *capture.Packet
	synackAtServer := false
	for k := range sv {
		p := sv[k]
		if !beforeRetrans(p) {
			continue
		}
		if atServer == nil && p.IsSYN() && fromClient(p) && p.Seq == first.Seq {
			atServer = &sv[k]
		}
		if !fromClient(p) && answers(p, first) {
			synackAtServer = true
		}
	}
	// synack is the first SYN-ACK that reached the client; firstAnswer the
	// one that answered the first SYN, if any.
	var synack, firstAnswer *capture.Packet
	for k := range cl {
		p := cl[k]
		if fromClient(p) || !p.IsSYNACK() {
			continue
		}
		if synack == nil {
			synack = &cl[k]
		}
		if firstAnswer == nil && beforeRetrans(p) && answers(p, first) {
			firstAnswer = &cl[k]
		}
	}
	synackAtClient := firstAnswer != nil
	if len(syns) > 1 {
		switch {
		case synackAtClient:
			add("the SYN-ACK", "it reached the client's interface; the client's own rules kept it from the stack")
		case synackAtServer:
			add("the SYN-ACK", "the server answered; the answer never reached the client")
		case atServer != nil:
			add(synName(first), "it reached the server's interface; the server's own rules kept it from the stack")
		default:
			add(synName(first), "it never reached the server")
		}
		if c.Stalled && synack == nil {
			add("every SYN retransmission", "none answered: the connection never completed")
		}
	}
	if atServer != nil && first.FastOpen != nil && atServer.FastOpen == nil {
		what := "the cookie"
		if first.FastOpen.IsRequest() {
			what = "the cookie request"
		}
		add("option 34", fmt.Sprintf("%s stripped from %s on its way", what, synName(first)))
	}
	if atServer != nil && atServer.Length < first.Length {
		add("the SYN's payload", fmt.Sprintf("%d of %d bytes arrived", atServer.Length, first.Length))
	}
	if first.Length > 0 && firstAnswer != nil && firstAnswer.Ack == first.Seq+1 && !hasLoss(out, "option 34") {
		add("the data in the SYN", "not accepted: the server acked only the SYN")
	}
	// A RST the client got that the server never sent came from the ruleset.
	rstCl, rstSv := false, false
	for _, p := range cl {
		rstCl = rstCl || (!fromClient(p) && p.IsRST())
	}
	for _, p := range sv {
		rstSv = rstSv || (!fromClient(p) && p.IsRST())
	}
	if rstCl && !rstSv {
		add(synName(first), "answered with a RST the server never sent: the ruleset rejected the connection")
	}
	// Data after the handshake, each way.
	if synack != nil {
		data := func(pkts []capture.Packet, client bool) int {
			n := 0
			for _, p := range pkts {
				if fromClient(p) == client && p.Length > 0 && !p.Flags.Has(capture.FlagSYN) {
					n++
				}
			}
			return n
		}
		switch {
		case data(sv, false) > 0 && data(cl, false) == 0:
			add("data after the handshake", "the server's reply never reached the client")
		case data(cl, false) > 0 && len(c.Response) == 0 && c.Stalled:
			add("data after the handshake", "the server's reply reached the client's interface; the client's own rules kept it from the stack")
		}
		if data(cl, true) > 0 && data(sv, true) == 0 && !synDataDelivered(first, atServer) {
			add("data after the handshake", "the client's request never reached the server")
		}
	}
	return out
}

func hasLoss(lost []Loss, what string) bool {
	for _, l := range lost {
		if l.What == what {
			return true
		}
	}
	return false
}

// synDataDelivered: the request already arrived in the SYN.
func synDataDelivered(first capture.Packet, atServer *capture.Packet) bool {
	return first.Length > 0 && atServer != nil && atServer.Length == first.Length && bytes.Equal(atServer.Payload, first.Payload)
}

// summarizeLost folds the per-connection losses together, with the
// connections each happened on, in order of first appearance.
func summarizeLost(facts []ConnFact) []LostOn {
	var out []LostOn
	for _, f := range facts {
		for _, l := range f.Lost {
			found := false
			for k := range out {
				if out[k].Loss == l {
					out[k].Conns = append(out[k].Conns, f.Index)
					found = true
				}
			}
			if !found {
				out = append(out, LostOn{l, []int{f.Index}})
			}
		}
	}
	return out
}

// acts reports whether a rule, as the observation records it, drops,
// rejects or rewrites.
func acts(rule string) bool {
	w := strings.Fields(rule)
	for i, s := range w {
		switch s {
		case "-j", "--jump", "-g", "--goto":
			if i+1 < len(w) && (w[i+1] == "DROP" || w[i+1] == "REJECT" || w[i+1] == "TCPOPTSTRIP") {
				return true
			}
		case "-P":
			if i+2 < len(w) && w[i+2] == "DROP" {
				return true
			}
		case "drop", "drop;", "reject", "reset":
			if strings.HasPrefix(rule, "nft ") {
				return true
			}
		}
	}
	return false
}

// ruleHits lists the user's rules that matched, acting ones first, each
// group in file order; noMatch when none matched at all.
func ruleHits(obs *observation.Observation) (hits []RuleHit, noMatch bool) {
	total := 0
	for _, m := range obs.Middleboxes {
		for _, r := range m.Rules {
			total++
			if r.Packets == 0 {
				continue
			}
			hits = append(hits, RuleHit{File: m.Name, Line: r.Line, Rule: r.Rule, Packets: r.Packets, Acts: acts(r.Rule)})
		}
	}
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].Acts && !hits[j].Acts })
	return hits, total > 0 && len(hits) == 0
}

// evidence renders what the verdict rests on: every connection through the
// ruleset with its packets on both sides, the counters that moved, the
// cookie cache and the rules that matched. brief keeps one connection (the
// first whose outcome is the verdict) and its first five packets on each
// side: the handshake.
func evidence(obs *observation.Observation, f Finding, brief bool) string {
	var b strings.Builder
	facts := f.Conns
	if brief && len(facts) > 0 {
		pick := facts[0]
		for _, fact := range facts {
			if fact.Outcome == f.Kind || (f.Kind == Paused && fact.Label == LabelDetect) {
				pick = fact
				break
			}
		}
		facts = []ConnFact{pick}
	}
	for _, fact := range facts {
		c := obs.Conns[fact.Index]
		status := "ok"
		switch {
		case c.Stalled:
			status = "stalled (bound reached)"
		case c.Failed():
			status = "error: " + c.Error
		}
		label := c.Label
		if c.Round > 0 {
			label = fmt.Sprintf("%s %d", c.Label, c.Round)
		}
		first := "none"
		if c.FirstByte > 0 {
			first = observation.Ms(c.FirstByte)
		}
		fmt.Fprintf(&b, "connection %d [%s] %s %s -> %s: %s; %s, first byte %s, %d SYN retransmission%s, syn_data=%t client_fail=%s\n",
			fact.Index, label, c.Mode, c.Local, c.Remote, fact.Outcome.Title(), status, first, fact.SynRetrans, plural(fact.SynRetrans), c.SynData, c.ClientFail)
		for _, side := range []observation.Side{observation.ClientSide, observation.ServerSide} {
			fmt.Fprintf(&b, "  %s side (%s):\n", side, obs.LinkOf(fact.Index, side))
			pkts := obs.ConnPackets(fact.Index, side)
			if len(pkts) == 0 {
				b.WriteString("    (no packet)\n")
			}
			for k, p := range pkts {
				fmt.Fprintf(&b, "    %s\n", p)
				if brief && k >= 4 {
					if k+1 < len(pkts) {
						fmt.Fprintf(&b, "    ... %d more\n", len(pkts)-k-1)
					}
					break
				}
			}
		}
	}
	for _, n := range obs.NodeNames() {
		var moved []string
		c := obs.Counters(n)
		for _, name := range lab.FastOpenCounters {
			if v, ok := c.Get(name); ok && v != 0 && name != lab.TCPOrigDataSent {
				moved = append(moved, fmt.Sprintf("%s %+d", name, v))
			}
		}
		if len(moved) > 0 {
			fmt.Fprintf(&b, "%s counters: %s\n", n, strings.Join(moved, ", "))
		}
	}
	client := clientNode(obs)
	entries := obs.Metrics(client)
	if len(entries) == 0 {
		fmt.Fprintf(&b, "%s cookie cache: empty\n", client)
	}
	for _, e := range entries {
		fmt.Fprintf(&b, "%s cookie cache: %s\n", client, e)
	}
	if !brief {
		if len(f.Rules) == 0 {
			b.WriteString("rules: none of them matched a packet\n")
		}
		for _, h := range f.Rules {
			fmt.Fprintf(&b, "rule %s: %d packets: %s\n", h.At(), h.Packets, h.Rule)
		}
	}
	return b.String()
}
