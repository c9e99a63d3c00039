package assertions

import (
	"fmt"
	"strings"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/observation"
)

// CounterDelta is one expected counter movement, e.g. TCPFastOpenPassive +1.
type CounterDelta struct {
	Name  string
	Delta int64
}

// HaveIncreasedBy expects counter name to have moved by exactly delta in a
// lab.Counters delta (0 asserts it did not move). An absent counter fails:
// an old kernel without it must not pass as "did not move".
func HaveIncreasedBy(name string, delta int64) types.GomegaMatcher {
	return countersMatcher{want: []CounterDelta{{name, delta}}}
}

// HaveCounterDeltas expects every listed counter to have moved by exactly its
// delta.
func HaveCounterDeltas(want ...CounterDelta) types.GomegaMatcher {
	return countersMatcher{want: want}
}

type countersMatcher struct{ want []CounterDelta }

func (m countersMatcher) String() string {
	var parts []string
	for _, w := range m.want {
		parts = append(parts, fmt.Sprintf("%s %+d", w.Name, w.Delta))
	}
	return strings.Join(parts, ", ")
}

func (m countersMatcher) Match(actual any) (bool, error) {
	c, ok := actual.(lab.Counters)
	if !ok {
		return false, fmt.Errorf("HaveIncreasedBy: want lab.Counters, got %T", actual)
	}
	for _, w := range m.want {
		if v, ok := c.Get(w.Name); !ok || v != w.Delta {
			return false, nil
		}
	}
	return true, nil
}

func (m countersMatcher) FailureMessage(actual any) string {
	c, _ := actual.(lab.Counters)
	var b strings.Builder
	fmt.Fprintf(&b, "Expected counter deltas %s\n", m)
	names := make([]string, 0, len(m.want))
	for _, w := range m.want {
		v, ok := c.Get(w.Name)
		switch {
		case !ok:
			fmt.Fprintf(&b, "  %s: absent from this kernel's counters\n", w.Name)
		case v != w.Delta:
			fmt.Fprintf(&b, "  %s: got %+d, want %+d\n", w.Name, v, w.Delta)
		}
		names = append(names, w.Name)
	}
	// The TFO counters only: the full table is in the artefacts.
	fmt.Fprintf(&b, "TFO counters (delta):\n%s", c.TableOf(append(names, lab.FastOpenCounters...)...))
	return b.String()
}

func (m countersMatcher) NegatedFailureMessage(actual any) string {
	return fmt.Sprintf("Expected counter deltas other than %s", m)
}

// CountersOf applies a counters matcher to node's counter deltas.
func CountersOf(node string, m types.GomegaMatcher) types.GomegaMatcher {
	return obsMatcher{
		name: node + " counters",
		desc: fmt.Sprintf("%s counters: %s", node, Describe(m)),
		check: func(o *observation.Observation) (bool, string) {
			c := o.Counters(node)
			if c == nil {
				return false, fmt.Sprintf("no counters were taken on node %q", node)
			}
			ok, err := m.Match(c)
			if err != nil {
				return false, err.Error()
			}
			if ok {
				return true, ""
			}
			return false, m.FailureMessage(c)
		},
	}.by("CountersOf", node, m)
}

// Counter is shorthand for CountersOf(role, HaveIncreasedBy(name, delta)).
func Counter(role, name string, delta int64) types.GomegaMatcher {
	return CountersOf(role, HaveIncreasedBy(name, delta))
}

// Delta is an expected counter movement, for HaveCounterDeltas.
func Delta(name string, delta int64) CounterDelta { return CounterDelta{Name: name, Delta: delta} }
