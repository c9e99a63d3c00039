package assertions

import (
	"fmt"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/observation"
)

// Verdict is one expectation judged against one observation: data that the
// suite, `tfolab run` and a report print, and a JSON file keeps.
type Verdict struct {
	// Name is short and unique within the scenario ("connection 1",
	// "server counters", "pause 2").
	Name string `json:"name"`
	// Statement is the expectation in one line.
	Statement string `json:"statement"`
	Pass      bool   `json:"pass"`
	// Evidence says why it failed: the packets, counters or connections
	// that contradict the statement. Empty when it passed.
	Evidence string `json:"evidence,omitempty"`
	// Measured are the figures a passing expectation measured (pause
	// lengths against the expected ones, first-byte times and what they
	// cost): the numbers that explain the verdict.
	Measured string `json:"measured,omitempty"`
}

// Judge evaluates every matcher against obs and returns one verdict each,
// so a failing scenario reports all of its broken expectations at once, and
// the suite and a report reach the same verdicts from the same code.
func Judge(obs *observation.Observation, matchers []types.GomegaMatcher) []Verdict {
	out := make([]Verdict, 0, len(matchers))
	seen := map[string]int{}
	for i, m := range matchers {
		name := NameOf(m)
		if name == "" {
			name = fmt.Sprintf("expectation %d", i+1)
		}
		if seen[name]++; seen[name] > 1 {
			name = fmt.Sprintf("%s #%d", name, seen[name])
		}
		v := Verdict{Name: name, Statement: Describe(m)}
		// An obsMatcher (also behind Named) is judged once: its check may
		// run programs (tshark) or walk every packet.
		inner := m
		if n, ok := m.(namedMatcher); ok {
			inner = n.GomegaMatcher
		}
		if om, ok := inner.(obsMatcher); ok {
			pass, detail, err := om.verdict(obs)
			switch {
			case err != nil:
				v.Evidence = err.Error()
			case pass:
				v.Pass, v.Measured = true, detail
			default:
				v.Evidence = detail
			}
			out = append(out, v)
			continue
		}
		ok, err := m.Match(obs)
		switch {
		case err != nil:
			v.Evidence = err.Error()
		case !ok:
			v.Evidence = m.FailureMessage(obs)
		default:
			v.Pass = true
		}
		out = append(out, v)
	}
	return out
}

// Failed returns the verdicts that did not pass.
func Failed(vs []Verdict) []Verdict {
	var out []Verdict
	for _, v := range vs {
		if !v.Pass {
			out = append(out, v)
		}
	}
	return out
}

// Find returns the verdict called name.
func Find(vs []Verdict, name string) (Verdict, bool) {
	for _, v := range vs {
		if v.Name == name {
			return v, true
		}
	}
	return Verdict{}, false
}
