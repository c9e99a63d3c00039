package report

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/observation"
)

// Behaviour is what TFO did in one scenario, read off its observation.
type Behaviour struct {
	// Connections excludes the probes of a blackhole pause (Probes).
	Connections int `json:"connections"`
	Probes      int `json:"probes,omitempty"`
	// TFOData counts connections whose SYN's data the server acknowledged
	// (tcpi_options & TCPI_OPT_SYN_DATA).
	TFOData int `json:"tfo_data"`
	// Stalled and Refused count every connection that stalled or was
	// refused; Failed the data connections that failed otherwise.
	Stalled int `json:"stalled,omitempty"`
	Refused int `json:"refused,omitempty"`
	Failed  int `json:"failed,omitempty"`
	// FirstByte spreads the first response byte of the data connections
	// that got one (see Conns).
	FirstByte *Spread `json:"first_byte,omitempty"`
	// Cost is the worst fallback cost of a data connection.
	Cost Cost `json:"fallback_cost"`
	// Counters are the TFO counters that moved, per node.
	Counters map[string]map[string]int64 `json:"counters_moved,omitempty"`
	// ECMP are the groups of nodes a router spreads flows over (a pool's
	// servers, in the topology's order). Which member a connection lands
	// on follows the hash of its ports, which differ run to run, so
	// tfolab diff compares a group's counters summed.
	ECMP      [][]string `json:"ecmp_groups,omitempty"`
	Blackhole Blackhole  `json:"blackhole"`
	Conns     []Conn     `json:"connections_detail"`
	// CookielessData counts connections whose first SYN carried data
	// without a TFO option and had it acknowledged; DatalessChildren the
	// accepted sockets that are TFO children without SYN data (nocookie.go).
	CookielessData   int `json:"cookieless_data,omitempty"`
	DatalessChildren int `json:"dataless_tfo_children,omitempty"`
}

// Spread is a min/median/max.
type Spread struct {
	Min    time.Duration `json:"min_ns"`
	Median time.Duration `json:"median_ns"`
	Max    time.Duration `json:"max_ns"`
}

// Conn is one connection, as the report sees it.
type Conn struct {
	Index   int    `json:"index"`
	Client  string `json:"client"`
	Label   string `json:"label,omitempty"`
	Round   int    `json:"round,omitempty"`
	Mode    string `json:"mode"`
	SynData bool   `json:"syn_data"`
	// Data is whether it counts as a data connection: not a probe, not
	// a client's first (cookie-learning) connection of several.
	Data       bool          `json:"data"`
	FirstByte  time.Duration `json:"first_byte_ns,omitempty"`
	SynRetrans int           `json:"syn_retransmissions"`
	Stalled    bool          `json:"stalled,omitempty"`
	Error      string        `json:"error,omitempty"`
	// Extra is its first byte beyond the ideal (one RTT: TFO's request
	// and reply in one round trip); Cost puts it in words.
	Extra time.Duration `json:"extra_ns"`
	Cost  string        `json:"cost"`
	// waited is the time its SYN retransmissions took on the wire.
	waited time.Duration
}

// Cost is a fallback's cost in RTOs and RTTs.
type Cost struct {
	// Words: "none", "1 RTO + 1 RTT", "+1 RTT", "stalls", "refused".
	Words string        `json:"words"`
	Extra time.Duration `json:"extra_ns"`
	// RTOs are the SYN retransmissions paid, RTTs the extra round trips
	// beyond them (only with an emulated RTT).
	RTOs    int     `json:"rtos,omitempty"`
	RTTs    float64 `json:"rtts,omitempty"`
	Stalled bool    `json:"stalled,omitempty"`
	Refused bool    `json:"refused,omitempty"`
}

// Blackhole is blackhole detection's state in the first client's node.
type Blackhole struct {
	// Timeout is tcp_fastopen_blackhole_timeout_sec ("0": off).
	Timeout    string  `json:"timeout"`
	Detections int64   `json:"detections"`
	Pauses     []Pause `json:"pauses,omitempty"`
	// NotProbed are pauses the run did not wait out (the timeline's note).
	NotProbed []string `json:"not_probed,omitempty"`
}

// Pause is pause k's end, bracketed by probes: after Lo, by Hi.
type Pause struct {
	Round int           `json:"round"`
	Lo    time.Duration `json:"lo_ns"`
	Hi    time.Duration `json:"hi_ns"`
}

// On reports whether detection is on.
func (b Blackhole) On() bool { return b.Timeout != "" && b.Timeout != "0" }

// counterNames are the counters a report shows when they moved.
var counterNames = []string{
	lab.TCPFastOpenActive, lab.TCPFastOpenActiveFail, lab.TCPFastOpenPassive, lab.TCPFastOpenPassiveFail,
	lab.TCPFastOpenPassiveAltKey, lab.TCPFastOpenCookieReqd, lab.TCPFastOpenListenOverflow,
	lab.TCPFastOpenBlackhole, lab.TCPSynRetrans,
}

// behaviourOf reads a behaviour off an observation made over rtt (0:
// none emulated) with clientNode the first client's node.
func behaviourOf(o *observation.Observation, rtt time.Duration, clientNode string) Behaviour {
	var b Behaviour
	if o == nil {
		return b
	}
	perClient := map[string]int{}
	for _, c := range o.Conns {
		if c.Label != observation.RoleProbe {
			perClient[c.Client]++
		}
	}
	seen := map[string]int{}
	var firsts []time.Duration
	worst := -1
	for i, c := range o.Conns {
		if c.Label == observation.RoleProbe {
			b.Probes++
			continue
		}
		b.Connections++
		seen[c.Client]++
		rc := Conn{Index: i, Client: c.Client, Label: c.Label, Round: c.Round, Mode: c.Mode, SynData: c.SynData, Stalled: c.Stalled}
		rc.Data = isData(c, seen[c.Client], perClient[c.Client])
		syns := o.ClientSYNs(i)
		rc.SynRetrans = max(len(syns)-1, 0)
		if len(syns) > 1 {
			rc.waited = syns[len(syns)-1].Time.Sub(syns[0].Time) // the RTOs, as the wire saw them
		}
		if c.SynData {
			b.TFOData++
		}
		switch {
		case c.Stalled:
			b.Stalled++
			rc.Cost, rc.Error = "stalls", "stalled"
		case c.Errno == "ECONNREFUSED":
			b.Refused++
			rc.Cost, rc.Error = "refused", c.Errno
		case c.Failed():
			rc.Cost, rc.Error = "fails", c.Error
			if rc.Data {
				b.Failed++ // a detecting connection is dropped on purpose
			}
		case len(c.Response) == 0 && c.FirstByte == 0:
			rc.Cost, rc.Data = "no reply", false // a silent server, as meant
		default:
			rc.FirstByte = c.FirstByte
			rc.Extra = c.FirstByte - rtt
			rc.Cost = costWords(rc, rtt)
		}
		b.Conns = append(b.Conns, rc)
		if !rc.Data {
			continue
		}
		if rc.Error == "" {
			firsts = append(firsts, rc.FirstByte)
		}
		if worst < 0 || worse(rc, b.Conns[worst]) {
			worst = len(b.Conns) - 1
		}
	}
	if len(firsts) > 0 {
		slices.Sort(firsts)
		b.FirstByte = &Spread{firsts[0], firsts[len(firsts)/2], firsts[len(firsts)-1]}
	}
	b.Cost = Cost{Words: "none"}
	if worst >= 0 {
		w := b.Conns[worst]
		b.Cost = Cost{Words: w.Cost, Extra: w.Extra, RTOs: w.SynRetrans, Stalled: w.Stalled, Refused: w.Error == "ECONNREFUSED"}
		if rtt > 0 && w.Error == "" {
			b.Cost.RTTs = math.Round(float64(w.Extra-w.waited)/float64(rtt)*10) / 10
		}
	}
	b.Counters = map[string]map[string]int64{}
	for _, n := range o.NodeNames() {
		for _, name := range counterNames {
			if v, ok := o.Counters(n).Get(name); ok && v != 0 {
				if b.Counters[n] == nil {
					b.Counters[n] = map[string]int64{}
				}
				b.Counters[n][name] = v
			}
		}
	}
	b.Blackhole = blackholeOf(o, clientNode)
	noCookieOf(&b, o)
	return b
}

// isData tells the connections a fallback cost is about: not a probe, not
// the one that learns a cookie (a client's first of several, or a
// timeline's "learn"), not one made to trip blackhole detection (it is
// dropped the moment detection fires).
func isData(c observation.Conn, nth, of int) bool {
	switch c.Label {
	case observation.RoleProbe, observation.RoleDetect, "learn":
		return false
	case "":
		return nth > 1 || of == 1
	}
	return true
}

// worse orders data connections by what they cost: a stall, a refusal, a
// failure, then the longest wait.
func worse(a, b Conn) bool {
	rank := func(c Conn) int {
		switch c.Cost {
		case "stalls":
			return 3
		case "refused":
			return 2
		case "fails":
			return 1
		}
		return 0
	}
	if rank(a) != rank(b) {
		return rank(a) > rank(b)
	}
	return a.Extra > b.Extra
}

// noCost is the extra wait that is no cost. With an emulated RTT: a
// quarter of it, at least 20 ms (scheduling). Without one, the kernel's
// shortest retransmission timeout (TCP_RTO_MIN, 200 ms): a veth round trip
// is 0.1 ms, so the protocol can only cost a timeout, and anything shorter
// is a loaded machine's scheduling (a report on this 2-core VM once showed
// a 153 ms first byte with no retransmission at all).
func noCost(rtt time.Duration) time.Duration {
	if rtt == 0 {
		return tcpRTOMin
	}
	return max(rtt/4, 20*time.Millisecond)
}

// tcpRTOMin is TCP_RTO_MIN (include/net/tcp.h: HZ/5).
const tcpRTOMin = 200 * time.Millisecond

// costWords puts a connection's extra wait in RTOs and RTTs: "none" below
// noCost, else the SYN timeouts
// paid (as long as they took on the wire) and the round trips beyond them;
// without an emulated RTT, what is left beyond the RTOs is shown only when
// it is more than a timer's lateness could be.
func costWords(c Conn, rtt time.Duration) string {
	if c.Extra < noCost(rtt) {
		return "none"
	}
	if rtt == 0 && c.SynRetrans == 0 {
		return "+" + readable(c.Extra)
	}
	var parts []string
	rest := c.Extra
	if c.SynRetrans > 0 {
		parts = append(parts, plural(c.SynRetrans, "RTO"))
		rest -= c.waited
	}
	switch {
	case rtt > 0:
		if n := int(math.Round(float64(rest) / float64(rtt))); n > 0 {
			parts = append(parts, plural(n, "RTT"))
		}
	case rest >= 100*time.Millisecond:
		parts = append(parts, readable(rest))
	}
	if len(parts) == 0 {
		return "+" + readable(c.Extra)
	}
	return strings.Join(parts, " + ")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// blackholeOf reads detection's state: the client node's timeout and
// counter, and each probed pause's bracket (the last probe that went out
// plain, by its start; the first that carried a cookie again, on the
// wire; both from the detection's mark).
func blackholeOf(o *observation.Observation, node string) Blackhole {
	var b Blackhole
	if n, ok := o.Nodes[node]; ok {
		b.Timeout = n.Sysctls[assertions.BlackholeTimeoutKey]
	}
	b.Detections, _ = o.Counters(node).Get(lab.TCPFastOpenBlackhole)
	for _, m := range o.Marks {
		if m.Name != observation.MarkDetection {
			if strings.Contains(m.Name, "not probed") {
				b.NotProbed = append(b.NotProbed, m.Name)
			}
			continue
		}
		var lastPlain, firstTFO time.Time
		for _, i := range o.ConnsLabelled(observation.RoleProbe, m.Round) {
			syns := o.ClientSYNs(i)
			if len(syns) == 0 {
				continue
			}
			syn := syns[0]
			switch fastOpen := syn.FastOpen != nil; {
			case !fastOpen && o.Conns[i].Start.After(lastPlain):
				lastPlain = o.Conns[i].Start
			case fastOpen && (firstTFO.IsZero() || syn.Time.Before(firstTFO)):
				firstTFO = syn.Time
			}
		}
		if lastPlain.IsZero() || firstTFO.IsZero() {
			continue
		}
		b.Pauses = append(b.Pauses, Pause{Round: m.Round, Lo: lastPlain.Sub(m.At), Hi: firstTFO.Sub(m.At)})
	}
	return b
}

// Words is the blackhole state in a phrase: "off", "on (1 s): 3
// detections, pauses 1.0 s, 2.0 s, 4.0 s".
func (b Blackhole) Words() string {
	if b.Timeout == "" {
		return "—"
	}
	if !b.On() {
		if b.Detections != 0 {
			return fmt.Sprintf("off, yet %d detection(s)", b.Detections)
		}
		return "off"
	}
	s := fmt.Sprintf("on (%s s)", b.Timeout)
	if b.Detections == 0 {
		return s + ": nothing detected"
	}
	s += fmt.Sprintf(": %s", plural(int(b.Detections), "detection"))
	if len(b.Pauses) > 0 {
		s += ", TFO pauses " + b.PauseWords()
	}
	return s
}

// PauseWords lists the pauses: "1.0 s, 2.0 s, 4.0 s".
func (b Blackhole) PauseWords() string {
	var ps []string
	for _, p := range b.Pauses {
		ps = append(ps, seconds(p.Hi))
	}
	return strings.Join(ps, ", ")
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// readable is d as a person reads it in a report: seconds from 1 s,
// whole milliseconds from 10 ms, tenths below ("1.23 s", "52 ms", "0.4 ms").
// It is not observation.Ms (tenths of a millisecond throughout), which the
// connection summaries and the firewall check print.
func readable(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.1f ms", float64(d)/1e6)
}

// FirstByteWords is the spread in a phrase: "50 ms" or "1.10–1.12 s".
func (s *Spread) Words() string {
	if s == nil {
		return "—"
	}
	if readable(s.Min) == readable(s.Max) {
		return readable(s.Median)
	}
	return readable(s.Min) + "–" + readable(s.Max)
}

// CounterWords lists moved counters: "client ActiveFail +2, SynRetrans +2; server CookieReqd +1".
func (b Behaviour) CounterWords() string {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(b.Counters)) {
		var cs []string
		for _, name := range counterNames {
			if v, ok := b.Counters[n][name]; ok {
				cs = append(cs, fmt.Sprintf("%s %+d", strings.TrimPrefix(name, "TCPFastOpen"), v))
			}
		}
		parts = append(parts, n+" "+strings.Join(cs, ", "))
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, "; ")
}

// String is the fallback cost with its figure: "1 RTO + 1 RTT (+1.05 s)".
func (c Cost) String() string {
	switch {
	case c.Words == "":
		return "none"
	case strings.Contains(c.Words, "RTO") || strings.Contains(c.Words, "RTT"):
		return fmt.Sprintf("%s (+%s)", c.Words, readable(c.Extra))
	}
	return c.Words
}
