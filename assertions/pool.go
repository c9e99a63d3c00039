package assertions

// Matchers for server pools behind ECMP: which server each connection
// landed on (observation.Conn.Served), what the server it landed on did
// with it, how the pool shares the connections, and the counters. The
// expectations derive every connection's outcome from what that
// connection observed (its landing, its cookie, the keys the schedule
// says the landing server held: the pool model, poolmodel.go), never from
// fixed counts that a different 5-tuple hash would break. The matchers on
// the cookies themselves are in poolcookies.go, the probe's in probe.go.

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/lab/tfocookie"
	"github.com/tfolab/tfolab/observation"
)

// TCPIOptTFOChild is TCPI_OPT_TFO_CHILD (include/uapi/linux/tcp.h): a
// passive TFO child, i.e. the socket was created from a SYN the server
// fast-opened. Seen as 0x80 in tcpi_options on 6.18 (0xa7 with SYN_DATA).
const TCPIOptTFOChild = 0x80

// acceptedOn finds the record the server node kept of connection c: the
// first one from c's address accepted at or after c started.
func acceptedOn(o *observation.Observation, c observation.Conn) (observation.Accepted, bool) {
	var best observation.Accepted
	found := false
	for _, svc := range o.Services {
		if svc.Node != c.Served {
			continue
		}
		for _, a := range svc.Accepted {
			if a.Remote != c.Local || a.Time.Before(c.Start) {
				continue
			}
			if !found || a.Time.Before(best.Time) {
				best, found = a, true
			}
		}
	}
	return best, found
}

// landedRecord is acceptedOn's record, or why there is none: no server's
// capture saw the connection's SYN, or the server it landed on kept no
// record of it.
func landedRecord(o *observation.Observation, c observation.Conn) (observation.Accepted, string) {
	if c.Served == "" {
		return observation.Accepted{}, "no server's capture saw its SYN"
	}
	a, ok := acceptedOn(o, c)
	if !ok {
		return a, fmt.Sprintf("%s has no record of a connection from %s", c.Served, c.Local)
	}
	return a, ""
}

// PoolServerAccepted expects the record of the server the connection landed
// on (not the service it was addressed to: in a pool they share the
// address) to say its SYN data was accepted (want) or not, and to carry
// TCPI_OPT_TFO_CHILD exactly when it was.
func PoolServerAccepted(want bool) ConnCheck {
	return ConnCheck{
		desc: wantDesc(want, "the server it landed on accepted the SYN's data (SYN_DATA and TFO_CHILD in tcpi_options)", "the server it landed on did not accept data in the SYN (no SYN_DATA, no TFO_CHILD)"),
		check: onLanded(func(c observation.Conn, a observation.Accepted) (bool, string) {
			child := a.Options&TCPIOptTFOChild != 0
			if a.SynData != want || (tfo.HasTFOChild() && child != want) {
				return false, fmt.Sprintf("%s's accepted socket from %s: SYN_DATA=%t, tcpi_options=0x%02x (TFO_CHILD=%t)", c.Served, a.Remote, a.SynData, a.Options, child)
			}
			return true, ""
		}),
	}.by("PoolServerAccepted", want)
}

// ServerTFOChild expects the served connection's accepted socket to carry
// TCPI_OPT_TFO_CHILD (want) or not, whatever its SYN data: a 0x200 server
// makes a TFO child of a cookie request too.
func ServerTFOChild(want bool) ConnCheck {
	return ConnCheck{
		desc: wantDesc(want, "the accepted socket is a passive TFO child (TCPI_OPT_TFO_CHILD)", "the accepted socket is not a TFO child (no TCPI_OPT_TFO_CHILD)"),
		check: onLanded(func(c observation.Conn, a observation.Accepted) (bool, string) {
			if got := a.Options&TCPIOptTFOChild != 0; got != want {
				return false, fmt.Sprintf("%s: tcpi_options=0x%02x", c.Served, a.Options)
			}
			return true, ""
		}),
	}.by("ServerTFOChild", want)
}

// onLanded is a check of the record the server the connection landed on
// kept of it (landedRecord): a connection without one fails.
func onLanded(check func(c observation.Conn, a observation.Accepted) (bool, string)) func(o *observation.Observation, i int) (bool, string) {
	return func(o *observation.Observation, i int) (bool, string) {
		c := o.Conns[i]
		a, why := landedRecord(o, c)
		if why != "" {
			return false, why
		}
		return check(c, a)
	}
}

// ConnsFrom applies checks to every connection from index first on. With
// first 1 it is "every connection after the first" (the first asked for a
// cookie).
func ConnsFrom(first int, checks ...ConnCheck) obsMatcher {
	name := fmt.Sprintf("connections from %d", first)
	if first == 1 {
		name = "every connection after the first"
	}
	var descs []string
	for _, c := range checks {
		descs = append(descs, c.desc)
	}
	return obsMatcher{
		name: name,
		desc: fmt.Sprintf("%s: %s", name, strings.Join(descs, "; ")),
		check: func(o *observation.Observation) (bool, string) {
			if len(o.Conns) <= first {
				return false, fmt.Sprintf("the workload made %d connections", len(o.Conns))
			}
			for i := first; i < len(o.Conns); i++ {
				for _, c := range checks {
					if ok, detail := c.check(o, i); !ok {
						return false, fmt.Sprintf("connection %d (served by %s): %s: %s\n%s", i, o.Conns[i].Served, c.desc, detail, o.ConnSummary())
					}
				}
			}
			return true, ""
		},
	}.by("ConnsFrom", first, checks)
}

// LandedOn expects the connections to have landed on at least n distinct
// servers, and every one to have been seen by some server: without a
// spread a pool scenario proves nothing about the pool.
func LandedOn(n int) obsMatcher {
	return obsMatcher{
		name: "pool spread",
		desc: fmt.Sprintf("the connections landed on at least %d servers, each seen by one", n),
		check: func(o *observation.Observation) (bool, string) {
			sh := PoolShares(o, nil)
			for i, c := range o.Conns {
				if c.Served == "" {
					return false, fmt.Sprintf("connection %d (%s -> %s): no server's capture saw its SYN", i, c.Local, c.Remote)
				}
			}
			if len(sh.Servers) < n {
				return false, fmt.Sprintf("landed on %d: %s", len(sh.Servers), sh)
			}
			return true, ""
		},
	}.by("LandedOn", n)
}

// Share is how a pool served a run's connections: per server, how many
// landed there and how many of those had their SYN data accepted.
type Share struct {
	// Conns and Accepted count the connections considered (those whose
	// SYN carried a cookie, or all when no key is involved).
	Conns, Accepted int
	Servers         map[string]ServerShare
}

// ServerShare is one server's part of a Share.
type ServerShare struct{ Landed, Accepted int }

// String renders the share as "9/30 accepted (30%); server1 3/11, ...".
func (s Share) String() string {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(s.Servers)) {
		parts = append(parts, fmt.Sprintf("%s %d/%d", n, s.Servers[n].Accepted, s.Servers[n].Landed))
	}
	pct := 0.0
	if s.Conns > 0 {
		pct = 100 * float64(s.Accepted) / float64(s.Conns)
	}
	return fmt.Sprintf("%d/%d accepted (%.0f%%); %s", s.Accepted, s.Conns, pct, strings.Join(parts, ", "))
}

// PoolShares measures the acceptance share of the connections select
// admits (nil: every connection).
func PoolShares(o *observation.Observation, selectConn func(i int) bool) Share {
	s := Share{Servers: map[string]ServerShare{}}
	for i, c := range o.Conns {
		if selectConn != nil && !selectConn(i) {
			continue
		}
		s.Conns++
		if c.SynData {
			s.Accepted++
		}
		if c.Served == "" {
			continue
		}
		ss := s.Servers[c.Served]
		ss.Landed++
		if c.SynData {
			ss.Accepted++
		}
		s.Servers[c.Served] = ss
	}
	return s
}

// CarriedCookie selects, for PoolShares, the connections whose first SYN
// (on the client's side) carried a cookie.
func CarriedCookie(o *observation.Observation) func(i int) bool {
	return func(i int) bool {
		syns := o.ClientSYNs(i)
		return len(syns) > 0 && syns[0].FastOpen != nil && !syns[0].FastOpen.IsRequest()
	}
}

// PoolOutcomes expects every connection to fare as the pool model
// predicts from its landing, its cookie and the keys the schedule gives
// that server then: accepted in the SYN (SYN-ACK acks ISN+1+len, SYN_DATA
// on both ends, TFO_CHILD on the server) exactly when the cookie was made with
// the server's primary or backup key, the SYN-ACK carrying a cookie
// exactly when the model says the server issues one; a refused connection
// still gets its response, its data after the handshake (client_fail =
// data not acked).
func PoolOutcomes(keys *tfocookie.Schedule) obsMatcher {
	return obsMatcher{
		name: "pool outcomes",
		desc: "every connection fares as its landing server's keys predict: accepted iff its cookie was made with that server's primary or backup key, a new cookie iff refused or made with the backup key",
		check: withModel(keys, func(o *observation.Observation, model []PoolConn) (bool, string) {
			if len(model) == 0 {
				return false, "the workload made no connection"
			}
			for _, pc := range model {
				if why := outcomeMismatch(o, pc); why != "" {
					return false, fmt.Sprintf("connection %d: %s\n%s", pc.Index, why, poolTable(o, model, pc.Index))
				}
			}
			return true, ""
		}),
	}.by("PoolOutcomes", keys)
}

// withModel is a check of the pool model's predictions for the
// observation's connections (PoolModel, from keys).
func withModel(keys *tfocookie.Schedule, check func(o *observation.Observation, model []PoolConn) (bool, string)) func(o *observation.Observation) (bool, string) {
	return func(o *observation.Observation) (bool, string) {
		return check(o, PoolModel(o, keys))
	}
}

// outcomeMismatch says how connection pc contradicts its prediction ("" if
// it does not).
func outcomeMismatch(o *observation.Observation, pc PoolConn) string {
	if pc.Why != "" {
		return "cannot predict: " + pc.Why
	}
	c := o.Conns[pc.Index]
	if c.Failed() {
		return "failed: " + c.Error
	}
	if pc.SynAck == nil {
		return "no SYN-ACK captured on " + c.ServerLink
	}
	x := pc.Predicted
	synLen := uint32(pc.SYN.Length)
	acked := pc.SynAck.Ack == pc.SYN.Seq+1+synLen && synLen > 0
	wantAcked := x.accepts() && synLen > 0
	if acked != wantAcked {
		return fmt.Sprintf("%s predicted, but the SYN-ACK acks %d (ISN %d, %d bytes of SYN data)", x, pc.SynAck.Ack, pc.SYN.Seq, synLen)
	}
	if c.SynData != wantAcked {
		return fmt.Sprintf("%s predicted, but the client's tcpi SYN_DATA=%t", x, c.SynData)
	}
	fo := pc.SynAck.FastOpen
	hasCookie := fo != nil && !fo.IsRequest()
	if hasCookie != x.issues() {
		return fmt.Sprintf("%s predicted, but the SYN-ACK has %s", x, describeTFO(fo))
	}
	a, why := landedRecord(o, c)
	if why != "" {
		return why
	}
	if child := a.Options&TCPIOptTFOChild != 0; (tfo.HasTFOChild() && child != x.accepts()) || a.SynData != wantAcked {
		return fmt.Sprintf("%s predicted, but %s's accepted socket has tcpi_options 0x%02x (SYN_DATA=%t)", x, c.Served, a.Options, a.SynData)
	}
	if pc.syndata() && !wantAcked && c.ClientFail != tfo.ClientFailDataNotAcked {
		return fmt.Sprintf("%s predicted, but tcpi_fastopen_client_fail is %s, want %s", x, c.ClientFail, tfo.ClientFailDataNotAcked)
	}
	if ok, why := replied(c, c.Request); !ok {
		return why
	}
	return ""
}

// PoolCounters expects every pool server's TFO counters, and every client's,
// to have moved exactly as the model's per-connection outcomes add up:
// CookieReqd per request, Passive per child, PassiveFail per refusal,
// PassiveAltKey per backup-key acceptance; client Active per SYN whose data
// was accepted and ActiveFail per SYN whose data was not.
func PoolCounters(keys *tfocookie.Schedule) obsMatcher {
	return obsMatcher{
		name: "pool counters",
		desc: "each server's CookieReqd, Passive, PassiveFail, PassiveAltKey and each client's Active, ActiveFail add up the predicted outcomes of the connections it saw",
		check: withModel(keys, func(o *observation.Observation, model []PoolConn) (bool, string) {
			want := map[string]map[string]int64{}
			add := func(node, name string, d int64) {
				if want[node] == nil {
					want[node] = map[string]int64{lab.TCPFastOpenCookieReqd: 0, lab.TCPFastOpenPassive: 0, lab.TCPFastOpenPassiveFail: 0, lab.TCPFastOpenPassiveAltKey: 0}
				}
				want[node][name] += d
			}
			for _, svc := range o.Services {
				add(svc.Node, lab.TCPFastOpenPassive, 0)
			}
			clients := map[string]map[string]int64{}
			for _, pc := range model {
				if pc.Why != "" {
					return false, fmt.Sprintf("connection %d: cannot predict: %s\n%s", pc.Index, pc.Why, poolTable(o, model, pc.Index))
				}
				if clients[pc.Client] == nil {
					clients[pc.Client] = map[string]int64{lab.TCPFastOpenActive: 0, lab.TCPFastOpenActiveFail: 0}
				}
				switch pc.Predicted {
				case OutcomeCookieIssued, OutcomeRequestUnanswered:
					add(pc.Served, lab.TCPFastOpenCookieReqd, 1)
				case OutcomeAcceptedPrimary:
					add(pc.Served, lab.TCPFastOpenPassive, 1)
				case OutcomeAcceptedBackup:
					add(pc.Served, lab.TCPFastOpenPassive, 1)
					add(pc.Served, lab.TCPFastOpenPassiveAltKey, 1)
				case OutcomeRefused:
					add(pc.Served, lab.TCPFastOpenPassiveFail, 1)
				case OutcomeNoCookieMode:
					add(pc.Served, lab.TCPFastOpenPassive, 1)
					if pc.SYN.FastOpen != nil && pc.SYN.FastOpen.IsRequest() {
						add(pc.Served, lab.TCPFastOpenCookieReqd, 1)
					}
				}
				if pc.syndata() {
					if pc.Predicted.accepts() {
						clients[pc.Client][lab.TCPFastOpenActive]++
					} else {
						clients[pc.Client][lab.TCPFastOpenActiveFail]++
					}
				}
			}
			for n, w := range clients {
				want[n] = w
			}
			var bad []string
			for _, node := range slices.Sorted(maps.Keys(want)) {
				got := o.Counters(node)
				for _, name := range slices.Sorted(maps.Keys(want[node])) {
					v, ok := got.Get(name)
					if !ok || v != want[node][name] {
						bad = append(bad, fmt.Sprintf("  %s %s: got %+d, want %+d", node, name, v, want[node][name]))
					}
				}
			}
			if len(bad) == 0 {
				return true, ""
			}
			return false, fmt.Sprintf("counters off the model:\n%s\n%s%s", strings.Join(bad, "\n"), poolTable(o, model, -1), o.CounterSummary())
		}),
	}.by("PoolCounters", keys)
}

// PoolCounterTotal expects counter name to have moved by want in all over
// nodes (a pool's servers).
func PoolCounterTotal(nodes []string, name string, want int64) obsMatcher {
	return obsMatcher{
		name: "pool " + strings.TrimPrefix(name, "TCPFastOpen"),
		desc: fmt.Sprintf("%s %+d in all over %s", name, want, strings.Join(nodes, ", ")),
		check: func(o *observation.Observation) (bool, string) {
			var total int64
			var parts []string
			for _, n := range nodes {
				v, ok := o.Counters(n).Get(name)
				if !ok {
					return false, fmt.Sprintf("%s: %s not recorded", n, name)
				}
				total += v
				parts = append(parts, fmt.Sprintf("%s %+d", n, v))
			}
			if total != want {
				return false, fmt.Sprintf("got %+d (%s)\n%s", total, strings.Join(parts, ", "), o.CounterSummary())
			}
			return true, ""
		},
	}.by("PoolCounterTotal", nodes, name, want)
}

// ListenOverflow expects the connections labelled label (a burst whose
// handshakes could not complete) to have met a TFO queue of length queue
// on every server: per server, min(landed, queue) of them accepted in the
// SYN and max(0, landed − queue) counted as TCPFastOpenListenOverflow and
// fallen back to a regular handshake (the SYN-ACK acks only the SYN and
// carries no TFO option), each still served.
func ListenOverflow(label string, queue int) obsMatcher {
	return obsMatcher{
		name: "listen overflow",
		desc: fmt.Sprintf("of the %q burst, each server took min(landed, %d) in the SYN (up to NumCPU−1 more when SYNs race on several CPUs); ListenOverflow counts the rest, which fell back to a regular handshake and were served", label, queue),
		check: func(o *observation.Observation) (bool, string) {
			idx := o.ConnsLabelled(label, 0)
			if len(idx) == 0 {
				return false, fmt.Sprintf("no %q connection was made", label)
			}
			landed, accepted := map[string]int{}, map[string]int{}
			for _, i := range idx {
				c := o.Conns[i]
				if c.Served == "" {
					return false, fmt.Sprintf("connection %d: no server's capture saw its SYN", i)
				}
				landed[c.Served]++
				pkts := o.ConnPackets(i, AtServer)
				syn, synack := o.Handshake(i, pkts)
				if syn == nil || synack == nil {
					return false, fmt.Sprintf("connection %d: no SYN or SYN-ACK on %s\n%s", i, c.ServerLink, listPackets(pkts, -1, c.ServerLink))
				}
				if syn.FastOpen == nil || syn.FastOpen.IsRequest() || syn.Length == 0 {
					return false, fmt.Sprintf("connection %d: the burst SYN carries %s and %d bytes: not a TFO SYN", i, describeTFO(syn.FastOpen), syn.Length)
				}
				a, ok := acceptedOn(o, c)
				if !ok {
					return false, fmt.Sprintf("connection %d: %s has no record of it", i, c.Served)
				}
				switch {
				case c.SynData:
					accepted[c.Served]++
					if synack.Ack != syn.Seq+1+uint32(syn.Length) || (tfo.HasTFOChild() && a.Options&TCPIOptTFOChild == 0) {
						return false, fmt.Sprintf("connection %d: SYN data acked at the client, but the SYN-ACK acks %d (ISN %d) and tcpi_options 0x%02x", i, synack.Ack, syn.Seq, a.Options)
					}
				case synack.Ack != syn.Seq+1 || synack.FastOpen != nil || a.SynData || (tfo.HasTFOChild() && a.Options&TCPIOptTFOChild != 0):
					return false, fmt.Sprintf("connection %d: not accepted, but its SYN-ACK acks %d (ISN %d) with %s, server tcpi_options 0x%02x: not a plain fallback\n%s",
						i, synack.Ack, syn.Seq, describeTFO(synack.FastOpen), a.Options, listPackets(pkts, -1, c.ServerLink))
				}
				if ok, why := replied(c, c.Request); !ok {
					return false, fmt.Sprintf("connection %d: %s", i, why)
				}
			}
			// tcp_fastopen_queue_check reads the queue length without a
			// lock, and the child is counted only later, so SYNs handled at
			// the same moment on different CPUs may each find a free slot:
			// up to NumCPU−1 more than the queue may be taken (5 of 6 with a
			// queue of 4 was seen once in 20 full runs on 2 cores). Every
			// SYN is either taken or counted as an overflow, exactly.
			race := runtime.NumCPU() - 1
			var bad []string
			for _, n := range slices.Sorted(maps.Keys(landed)) {
				lo, hi := min(landed[n], queue), min(landed[n], queue+race)
				wantOver := int64(landed[n] - accepted[n])
				got, _ := o.Counters(n).Get(lab.TCPFastOpenListenOverflow)
				if accepted[n] < lo || accepted[n] > hi || got != wantOver {
					bad = append(bad, fmt.Sprintf("  %s: %d landed, %d accepted in the SYN (want %d to %d), ListenOverflow %+d (want the rest, %+d)", n, landed[n], accepted[n], lo, hi, got, wantOver))
				}
			}
			if len(bad) > 0 {
				return false, fmt.Sprintf("TFO queue %d:\n%s\n%s", queue, strings.Join(bad, "\n"), o.CounterSummary())
			}
			return true, ""
		},
	}.by("ListenOverflow", label, queue)
}
