// Package assertions holds Gomega matchers over a lab.Observation that read
// like the tcpdump dialogue of a TFO handshake:
//
//	Conn(1, Dialogue("client",
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
	"github.com/tfolab/tfolab/lab"
)

// obsMatcher is a matcher over *lab.Observation. check returns whether the
// observation satisfies it and, either way, a detail explaining why.
// It keeps no state between Match and FailureMessage: the catalogue builds
// matchers once and reuses them, so FailureMessage recomputes the detail.
type obsMatcher struct {
	desc  string
	check func(o *lab.Observation) (bool, string)
}

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
	return fmt.Sprintf("Expected: %s\n%s\n--- connections\n%s", m.desc, detail, o.ConnSummary())
}

func (m obsMatcher) NegatedFailureMessage(actual any) string {
	return "Expected NOT: " + m.desc
}

// String lets a report print the expectation itself.
func (m obsMatcher) String() string { return m.desc }

func asObservation(actual any) (*lab.Observation, error) {
	o, ok := actual.(*lab.Observation)
	if !ok || o == nil {
		return nil, fmt.Errorf("assertions: want a *lab.Observation, got %T", actual)
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
