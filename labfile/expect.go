package labfile

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/scenarios"
)

// claim is a vocabulary expectation that no assertions constructor
// states: a share of connections, a bound on every first byte, counter
// bounds.
type claim struct {
	name, desc string
	check      func(o *observation.Observation) (bool, string)
}

func (c claim) Name() string   { return c.name }
func (c claim) String() string { return c.desc }

func (c claim) Match(actual any) (bool, error) {
	o, ok := actual.(*observation.Observation)
	if !ok || o == nil {
		return false, fmt.Errorf("labfile: want a *observation.Observation, got %T", actual)
	}
	ok, _ = c.check(o)
	return ok, nil
}

func (c claim) FailureMessage(actual any) string {
	o, ok := actual.(*observation.Observation)
	if !ok || o == nil {
		return fmt.Sprintf("labfile: want a *observation.Observation, got %T", actual)
	}
	_, detail := c.check(o)
	return detail
}

func (c claim) NegatedFailureMessage(any) string { return "Expected NOT: " + c.desc }

// accepted is the wire's word that connection i's SYN data was accepted:
// the client's first SYN carried a cookie and data, and the server's
// SYN-ACK acknowledged the data (at the client's capture, so it holds for
// every client kind, programs included).
func accepted(i int) types.GomegaMatcher {
	return assertions.Conn(i, assertions.Dialogue(assertions.AtClient,
		assertions.ClientSYN().WithCookie(), assertions.ServerSYNACK().AckingSYNData()))
}

// notAccepted: the server's SYN-ACK acknowledged the SYN only.
func notAccepted(i int) types.GomegaMatcher {
	return assertions.Conn(i, assertions.Dialogue(assertions.AtClient,
		assertions.ClientSYN(), assertions.ServerSYNACK().AckingSYNOnly()))
}

var rePercent = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*%$`)

var reBound = regexp.MustCompile(`^(>=|<=|>|<|=|==)?\s*(-?\d+)$`)

// counterBound is a counter claim: op and value.
type counterBound struct {
	name string
	op   string
	v    int64
}

func (c counterBound) holds(got int64) bool {
	switch c.op {
	case ">=":
		return got >= c.v
	case "<=":
		return got <= c.v
	case ">":
		return got > c.v
	case "<":
		return got < c.v
	}
	return got == c.v
}

func (c counterBound) String() string {
	if c.op == "" || c.op == "=" || c.op == "==" {
		return fmt.Sprintf("%s %+d", c.name, c.v)
	}
	return fmt.Sprintf("%s delta %s %d", c.name, c.op, c.v)
}

func (b *builder) expectations(fe []Expectation, s scenarios.Scenario) ([]types.GomegaMatcher, error) {
	if len(fe) == 0 {
		// The lab's own verdict: the diagnosis of the client's capture.
		return []types.GomegaMatcher{diagnosis(s, string(diagnose.TFOWorks))}, nil
	}
	var out []types.GomegaMatcher
	for i, e := range fe {
		p := func(k ...pathElem) []pathElem { return append(at("expect", i), k...) }
		n := 0
		for _, set := range []bool{e.Call != nil, e.TFOAccepted != nil, e.TFONotAccepted != nil, e.TFOAtLeast != "", e.FallbackCostBelow != 0,
			e.Counters != nil, e.CookieCached != "", e.NoCookieCached != "", e.NoStall, e.Completed, e.Pause != nil,
			e.Diagnosis != "", e.MiddleboxMatched != nil, e.MiddleboxMatchedAtLeast != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return nil, b.errAt(p(), "an expectation is exactly one claim of the vocabulary (docs/labfile.md), got %d", n)
		}
		switch {
		case e.Call != nil:
			m, err := callMatcher(e.Call)
			if err != nil {
				return nil, b.errAt(p("call"), "call: %v", err)
			}
			out = append(out, m)
		case e.TFOAccepted != nil:
			for _, c := range e.TFOAccepted {
				out = append(out, accepted(c))
			}
		case e.TFONotAccepted != nil:
			for _, c := range e.TFONotAccepted {
				out = append(out, notAccepted(c))
			}
		case e.TFOAtLeast != "":
			m := rePercent.FindStringSubmatch(strings.TrimSpace(e.TFOAtLeast))
			if m == nil {
				return nil, b.errAt(p("tfo-at-least"), "tfo-at-least %q: want a share such as 90%%", e.TFOAtLeast)
			}
			pct, _ := strconv.ParseFloat(m[1], 64)
			if pct > 100 {
				return nil, b.errAt(p("tfo-at-least"), "tfo-at-least %s: more than 100%%", e.TFOAtLeast)
			}
			out = append(out, atLeast(pct))
		case e.FallbackCostBelow != 0:
			out = append(out, costBelow(e.FallbackCostBelow))
		case e.Counters != nil:
			c := e.Counters
			nodes := c.Nodes
			if (c.Node == "") == (len(nodes) == 0) {
				return nil, b.errAt(p("counters"), "counters: want node (one) or nodes (summed), not both")
			}
			if c.Node != "" {
				nodes = []string{c.Node}
			}
			for k, n := range nodes {
				np := p("counters", "node")
				if c.Node == "" {
					np = p("counters", "nodes", k)
				}
				if err := b.node(np, "counters", n); err != nil {
					return nil, err
				}
			}
			if len(c.Deltas) == 0 {
				return nil, b.errAt(p("counters"), "counters: no deltas")
			}
			var bounds []counterBound
			for _, name := range slices.Sorted(mapKeysS(c.Deltas)) {
				m := reBound.FindStringSubmatch(strings.TrimSpace(c.Deltas[name]))
				if m == nil {
					return nil, b.errAt(p("counters", "deltas", name), "%s: %q: want N, >=N, <=N, >N or <N", name, c.Deltas[name])
				}
				v, _ := strconv.ParseInt(m[2], 10, 64)
				bounds = append(bounds, counterBound{name: name, op: m[1], v: v})
			}
			out = append(out, counters(nodes, bounds))
		case e.CookieCached != "":
			if err := b.node(p("cookie-cached"), "cookie-cached", e.CookieCached); err != nil {
				return nil, err
			}
			out = append(out, assertions.CookieCached(e.CookieCached, true))
		case e.NoCookieCached != "":
			if err := b.node(p("no-cookie-cached"), "no-cookie-cached", e.NoCookieCached); err != nil {
				return nil, err
			}
			out = append(out, assertions.CookieCached(e.NoCookieCached, false))
		case e.NoStall:
			out = append(out, noStall())
		case e.Completed:
			out = append(out, assertions.EveryConn(assertions.Completed()))
		case e.Pause != nil:
			pc := e.Pause
			if pc.Detection < 1 || pc.Lasted <= 0 {
				return nil, b.errAt(p("pause"), "pause: want detection (1 or more) and lasted (a duration)")
			}
			out = append(out, assertions.PauseLasted(pc.Detection, pc.Lasted, cmp.Or(pc.Resolution, 300*time.Millisecond)))
		case e.Diagnosis != "":
			if !slices.Contains(verdicts, diagnose.Verdict(e.Diagnosis)) {
				return nil, b.errAt(p("diagnosis"), "diagnosis %q: want one of %s", e.Diagnosis, verdictList())
			}
			out = append(out, diagnosis(s, e.Diagnosis))
		case e.MiddleboxMatched != nil:
			out = append(out, assertions.MiddleboxMatched(*e.MiddleboxMatched))
		case e.MiddleboxMatchedAtLeast != nil:
			out = append(out, assertions.MiddleboxMatchedAtLeast(*e.MiddleboxMatchedAtLeast))
		}
	}
	return out, nil
}

// verdicts are what `tfolab diagnose` can say.
var verdicts = []diagnose.Verdict{diagnose.TFOWorks, diagnose.ClientNoTFO, diagnose.ServerNoTFO, diagnose.SynDataDropped,
	diagnose.OptionStripped, diagnose.SynackLost, diagnose.BlackholePaused, diagnose.DataBlackholed, diagnose.CookieRejected, diagnose.Inconclusive}

func verdictList() string {
	var out []string
	for _, v := range verdicts {
		out = append(out, string(v))
	}
	return strings.Join(out, ", ")
}

// diagnosis is the diagnosis of the first client's capture (alone: a
// file's servers may sit on several nodes).
func diagnosis(s scenarios.Scenario, verdict string) types.GomegaMatcher {
	client, server := s.Clients[0].NodeName(), s.Services[0].NodeName()
	return assertions.DiagnosedAs(verdict, "",
		observation.LinkKey(client, s.Topology.Interfaces(client)[0]),
		observation.LinkKey(server, s.Topology.Interfaces(server)[0]))
}

// atLeast: at least pct percent of all connections had their SYN's data
// accepted.
func atLeast(pct float64) types.GomegaMatcher {
	desc := fmt.Sprintf("TFO data accepted in the SYN on at least %g%% of the connections", pct)
	return claim{name: "tfo share", desc: desc, check: func(o *observation.Observation) (bool, string) {
		if len(o.Conns) == 0 {
			return false, "the timeline made no connection"
		}
		var yes, no []string
		for i := range o.Conns {
			if ok, _ := accepted(i).Match(o); ok {
				yes = append(yes, strconv.Itoa(i))
			} else {
				no = append(no, strconv.Itoa(i))
			}
		}
		got := 100 * float64(len(yes)) / float64(len(o.Conns))
		detail := fmt.Sprintf("TFO accepted on %d of %d connections (%.1f%%); not on: %s", len(yes), len(o.Conns), got, cmp.Or(strings.Join(no, " "), "none"))
		if got+1e-9 < pct {
			return false, detail + "\n" + o.ConnSummary()
		}
		return true, detail
	}}
}

// costBelow: every connection's first response byte within d of its
// start.
func costBelow(d time.Duration) types.GomegaMatcher {
	desc := fmt.Sprintf("every connection's first response byte within %v (the fallback's cost below it)", d)
	return claim{name: "fallback cost", desc: desc, check: func(o *observation.Observation) (bool, string) {
		if len(o.Conns) == 0 {
			return false, "the timeline made no connection"
		}
		var worst time.Duration
		for i, c := range o.Conns {
			if c.Failed() {
				return false, fmt.Sprintf("connection %d got no response: %s\n%s", i, c.Error, o.ConnSummary())
			}
			worst = max(worst, c.FirstByte)
			if c.FirstByte >= d {
				return false, fmt.Sprintf("connection %d's first byte came at %v, not within %v\n%s", i, c.FirstByte.Round(time.Millisecond), d, o.ConnSummary())
			}
		}
		return true, fmt.Sprintf("slowest first byte %v", worst.Round(time.Millisecond))
	}}
}

// noStall: no connection hit its bound without an answer.
func noStall() types.GomegaMatcher {
	return claim{name: "no stall", desc: "no connection stalled (reached its bound without a response byte)", check: func(o *observation.Observation) (bool, string) {
		for i, c := range o.Conns {
			if c.Stalled {
				return false, fmt.Sprintf("connection %d stalled: %s\n%s", i, c.Error, o.ConnSummary())
			}
		}
		return true, ""
	}}
}

// counters: the counter deltas of nodes (summed over them) within their
// bounds.
func counters(nodes []string, bounds []counterBound) types.GomegaMatcher {
	var parts []string
	for _, c := range bounds {
		parts = append(parts, c.String())
	}
	who := strings.Join(nodes, "+")
	desc := fmt.Sprintf("%s counters: %s", who, strings.Join(parts, ", "))
	return claim{name: who + " counters", desc: desc, check: func(o *observation.Observation) (bool, string) {
		var tables []string
		sum := map[string]int64{}
		var names []string
		for _, c := range bounds {
			names = append(names, c.name)
		}
		for _, n := range nodes {
			cs := o.Counters(n)
			if cs == nil {
				return false, fmt.Sprintf("no counters were taken on node %q", n)
			}
			for _, c := range bounds {
				v, _ := cs.Get(c.name)
				sum[c.name] += v
			}
			tables = append(tables, n+":\n"+cs.Table(append(slices.Clone(names), lab.FastOpenCounters...)...))
		}
		var bad []string
		for _, c := range bounds {
			if !c.holds(sum[c.name]) {
				bad = append(bad, fmt.Sprintf("%s moved %+d, want %s", c.name, sum[c.name], c.String()))
			}
		}
		if len(bad) > 0 {
			return false, strings.Join(bad, "; ") + "\n" + strings.Join(tables, "\n")
		}
		return true, ""
	}}
}
