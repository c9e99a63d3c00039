package assertions

// How each expectation was built, so that a scenario file can write it
// as data: every constructor records its name and arguments (`.by(...)`
// on its result, one per constructor), and a Step records the methods
// called on it. package labfile turns a Call into YAML and back through
// its registry of these constructors.

import "github.com/onsi/gomega/types"

// Call is a constructor's name and arguments as it was called (a
// variadic parameter's arguments as one slice), then the methods called
// on its result, in order.
type Call struct {
	Fn   string
	Args []any
	Then []Call
}

func called(fn string, args ...any) *Call { return &Call{Fn: fn, Args: args} }

func (m obsMatcher) by(fn string, args ...any) obsMatcher { m.call = called(fn, args...); return m }

func (c ConnCheck) by(fn string, args ...any) ConnCheck { c.call = called(fn, args...); return c }

func (s Step) by(fn string, args ...any) Step { s.call = called(fn, args...); return s }

// then records a method called on the step, after how it was built.
func (s Step) then(method string, args ...any) Step {
	if s.call == nil {
		return s
	}
	c := *s.call
	c.Then = append(append([]Call(nil), c.Then...), Call{Fn: method, Args: args})
	s.call = &c
	return s
}

// Recorder is an expectation built outside this package (a wrapper of
// package scenarios) that says how it was built.
type Recorder interface {
	RecordedCall() (Call, bool)
}

// CallOf says how v (an expectation, a ConnCheck, a Step or a
// CounterDelta) was built, if it was built by a constructor of this
// package that records it.
func CallOf(v any) (Call, bool) {
	var c *Call
	switch x := v.(type) {
	case obsMatcher:
		c = x.call
	case ConnCheck:
		c = x.call
	case Step:
		c = x.call
	case namedMatcher:
		return Call{Fn: "Named", Args: []any{x.name, x.GomegaMatcher}}, true
	case countersMatcher:
		return Call{Fn: "HaveCounterDeltas", Args: []any{x.want}}, true
	case CounterDelta:
		return Call{Fn: "Delta", Args: []any{x.Name, x.Delta}}, true
	case Recorder:
		return x.RecordedCall()
	}
	if c == nil {
		return Call{}, false
	}
	return *c, true
}

var _ types.GomegaMatcher = obsMatcher{}
