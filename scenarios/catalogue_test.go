package scenarios

import "testing"

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
