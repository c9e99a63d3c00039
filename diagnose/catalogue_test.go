package diagnose_test

import (
	"testing"

	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/scenarios"
)

// Every reproducer names a scenario of the catalogue. (Only this test
// imports scenarios: the diagnose package itself stays a pure analysis
// package.)
func TestReproducersInCatalogue(t *testing.T) {
	names := map[string]bool{}
	for _, s := range scenarios.Catalogue() {
		names[s.Name] = true
	}
	for c, pair := range diagnose.Scenarios {
		for _, n := range pair {
			if n != "" && !names[n] {
				t.Errorf("%s: scenario %q is not in the catalogue", c, n)
			}
		}
	}
}
