package scenarios

import (
	"reflect"
	"slices"
	"testing"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/diagnose"
)

// The catalogue is data; a mistake in it (a duplicate name, a sysctl for a
// role the topology lacks, a scenario that asserts nothing) must fail here,
// without root, before any namespace exists.
func TestCatalogueIsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	all := Catalogue()
	for _, m := range Mutants() {
		all = append(all, m.Scenario)
	}
	for _, s := range Catalogue() {
		if seen[s.Name] {
			t.Errorf("duplicate scenario name %q", s.Name)
		}
		seen[s.Name] = true
		if len(s.Labels) == 0 {
			t.Errorf("%s: no labels", s.Name)
		}
	}
	for _, s := range all {
		if err := s.Validate(); err != nil {
			t.Error(err)
		}
		if len(s.Expect) == 0 {
			t.Errorf("%s: no expectations: a scenario that asserts nothing cannot fail", s.Name)
		}
	}
}

// Every catalogue scenario says what `tfolab diagnose` must make of its
// captures, in the diagnoser's vocabulary, so a new scenario cannot leave
// the diagnoser untested on its behaviour.
func TestCatalogueStatesItsDiagnosis(t *testing.T) {
	known := map[diagnose.Verdict]bool{}
	for _, v := range diagnose.Precedence {
		known[v] = true
	}
	for _, s := range Catalogue() {
		d := s.Diagnosis
		if d.ClientSide == "" {
			t.Errorf("%s: no Diagnosis: say which verdict tfolab diagnose must give its client-side capture", s.Name)
			continue
		}
		for _, v := range []diagnose.Verdict{d.ClientSide, d.BothSides} {
			if v != "" && !known[v] {
				t.Errorf("%s: diagnosis %q is not a verdict of package diagnose", s.Name, v)
			}
		}
		if !slices.Contains(s.Labels, "diagnose") || assertions.NameOf(s.Expect[len(s.Expect)-1]) != "diagnosis" {
			t.Errorf("%s: the catalogue did not make its diagnosis an expectation", s.Name)
		}
	}
}

// Every scripted timeline of the catalogue and its self-checks records
// the call that built it, by a constructor of Timelines under its own
// name: a scenario file writes that call.
func TestTimelinesAreRegistered(t *testing.T) {
	all := Catalogue()
	for _, m := range Mutants() {
		all = append(all, m.Scenario)
	}
	for _, s := range all {
		if s.Timeline == nil {
			continue
		}
		if s.TimelineCall == nil {
			t.Errorf("%s: a scripted timeline that records no call: build it with a constructor of Timelines (Scenario.Script)", s.Name)
			continue
		}
		fn, ok := Timelines[s.TimelineCall.Fn]
		if !ok {
			t.Errorf("%s: timeline %s is not in scenarios.Timelines", s.Name, s.TimelineCall.Fn)
			continue
		}
		if n := reflect.TypeOf(fn).NumIn(); n != len(s.TimelineCall.Args) {
			t.Errorf("%s: timeline %s takes %d arguments, recorded %d", s.Name, s.TimelineCall.Fn, n, len(s.TimelineCall.Args))
		}
	}
}
