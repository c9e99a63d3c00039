// Package assertions holds Gomega matchers over an observation.Observation
// that read like the tcpdump dialogue of a TFO handshake:
//
//	Conn(1, Dialogue(AtClient,
//	    ClientSYN().WithCookie().WithPayload(21),
//	    ServerSYNACK().AckingSYNData()))
//	CountersOf("server", HaveIncreasedBy(lab.TCPFastOpenPassive, 1))
//
// Every failure message prints the evidence a human needs to judge it: the
// connection's packets, the counter table, the connection results.
package assertions

import (
	"fmt"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/observation"
)

// obsMatcher is a matcher over *observation.Observation. check returns whether the
// observation satisfies it and, either way, a detail explaining why.
// It keeps no state between Match and FailureMessage: the catalogue builds
// matchers once and reuses them, so FailureMessage recomputes the detail.
type obsMatcher struct {
	name  string // short and unique within a scenario, e.g. "connection 1"
	desc  string
	check func(o *observation.Observation) (bool, string)
	call  *Call // how it was built (call.go)
}

// Name is the expectation's short name, for verdict tables.
func (m obsMatcher) Name() string { return m.name }

func (m obsMatcher) Match(actual any) (bool, error) {
	o, err := asObservation(actual)
	if err != nil {
		return false, err
	}
	ok, _ := m.check(o)
	return ok, nil
}

func (m obsMatcher) FailureMessage(actual any) string {
	o, err := asObservation(actual)
	if err != nil {
		return err.Error()
	}
	_, detail := m.check(o)
	return detail
}

func (m obsMatcher) NegatedFailureMessage(actual any) string {
	return "Expected NOT: " + m.desc
}

// verdict judges once: whether it holds, and the detail that explains it
// either way (the evidence of a failure, the figures of a pass).
func (m obsMatcher) verdict(actual any) (bool, string, error) {
	o, err := asObservation(actual)
	if err != nil {
		return false, "", err
	}
	ok, detail := m.check(o)
	return ok, detail, nil
}

// String lets a report print the expectation itself.
func (m obsMatcher) String() string { return m.desc }

func asObservation(actual any) (*observation.Observation, error) {
	o, ok := actual.(*observation.Observation)
	if !ok || o == nil {
		return nil, fmt.Errorf("assertions: want a *observation.Observation, got %T", actual)
	}
	return o, nil
}

// Describe returns a matcher's one-line description, for reports.
func Describe(m types.GomegaMatcher) string {
	if s, ok := m.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", m)
}

// Named gives an expectation another short name.
func Named(name string, m types.GomegaMatcher) types.GomegaMatcher {
	if om, ok := m.(obsMatcher); ok {
		om.name, om.call = name, called("Named", name, m)
		return om
	}
	return namedMatcher{m, name}
}

type namedMatcher struct {
	types.GomegaMatcher
	name string
}

func (n namedMatcher) Name() string   { return n.name }
func (n namedMatcher) String() string { return Describe(n.GomegaMatcher) }

// NameOf returns an expectation's short name ("" if it has none).
func NameOf(m types.GomegaMatcher) string {
	if n, ok := m.(interface{ Name() string }); ok {
		return n.Name()
	}
	return ""
}
