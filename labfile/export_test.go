package labfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/scenarios"
)

// Every scenario of the catalogue, and every self-check, can be written as
// a scenario file: Export → Load → Export is a fixpoint, and the loaded
// scenario states the same expectations (names and statements) over the
// same lab. A failure names the scenario and the part (kind, middlebox,
// expectation) that has no form in the file.
func TestCatalogueRoundTrips(t *testing.T) {
	type entry struct {
		ref string
		s   scenarios.Scenario
	}
	var all []entry
	for _, s := range scenarios.Catalogue() {
		all = append(all, entry{s.Name, s})
	}
	for _, m := range scenarios.Mutants() {
		all = append(all, entry{SelfCheckPrefix + m.Breakage, m.Scenario})
	}
	dir := t.TempDir()
	n := 0
	for i, e := range all {
		first, err := ExportAs(e.s, e.ref)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		path := filepath.Join(dir, "x.yaml")
		if err := os.WriteFile(path, first, 0o644); err != nil {
			t.Fatal(err)
		}
		loaded, err := Load(path)
		if err != nil {
			t.Errorf("%s: the exported file does not load: %v\n%s", e.ref, err, first)
			continue
		}
		second, err := ExportAs(loaded, e.ref)
		if err != nil {
			t.Errorf("%s: the loaded scenario does not export: %v", e.ref, err)
			continue
		}
		if !bytes.Equal(first, second) {
			t.Errorf("%s: export → load → export is no fixpoint:\n--- first\n%s\n--- second\n%s", e.ref, first, second)
			continue
		}
		if got, want := len(loaded.Expect), len(e.s.Expect); got != want {
			t.Errorf("%s: %d expectations, want %d", e.ref, got, want)
			continue
		}
		for k := range e.s.Expect {
			if assertions.NameOf(loaded.Expect[k]) != assertions.NameOf(e.s.Expect[k]) || assertions.Describe(loaded.Expect[k]) != assertions.Describe(e.s.Expect[k]) {
				t.Errorf("%s: expectation %d is %q (%s), want %q (%s)", e.ref, k,
					assertions.NameOf(loaded.Expect[k]), assertions.Describe(loaded.Expect[k]), assertions.NameOf(e.s.Expect[k]), assertions.Describe(e.s.Expect[k]))
			}
		}
		if err := sameLab(e.s, loaded); err != "" {
			t.Errorf("%s: %s", e.ref, err)
			continue
		}
		n++
		_ = i
	}
	t.Logf("%d of %d scenarios and self-checks round-trip", n, len(all))
}
