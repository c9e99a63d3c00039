package assertions

import (
	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/lab"
)

// Verdict is one expectation judged against one observation.
type Verdict struct {
	Expectation string
	Pass        bool
	Message     string // the failure message; empty when Pass
}

// Judge evaluates every matcher against obs and returns one verdict each,
// so a failing scenario reports all of its broken expectations at once, and
// the suite and a report reach the same verdicts from the same code.
func Judge(obs *lab.Observation, matchers []types.GomegaMatcher) []Verdict {
	out := make([]Verdict, 0, len(matchers))
	for _, m := range matchers {
		v := Verdict{Expectation: Describe(m)}
		ok, err := m.Match(obs)
		switch {
		case err != nil:
			v.Message = err.Error()
		case !ok:
			v.Message = m.FailureMessage(obs)
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
