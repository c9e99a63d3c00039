package labfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/scenarios"
)

// Every scenario of the catalogue, and every self-check, can be written as
// a scenario file, all of it data: no part refers back to the Go
// catalogue (a timeline, an expectation, a middlebox or a service kind
// with no file form fails the export, naming the scenario and the part,
// and no exported file holds a reference key). Export → Load → Export is
// a fixpoint, and the loaded scenario states the same expectations (names
// and statements) over the same lab and the same timeline call.
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
	n, timelines, expectations := 0, 0, 0
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
		if key := referenceKey(t, first); key != "" {
			t.Errorf("%s: the export refers to the catalogue (%s): every part must be data", e.ref, key)
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
		if (e.s.TimelineCall == nil) != (loaded.TimelineCall == nil) || (e.s.TimelineCall != nil && e.s.TimelineCall.Fn != loaded.TimelineCall.Fn) {
			t.Errorf("%s: timeline call %v, want %v", e.ref, loaded.TimelineCall, e.s.TimelineCall)
			continue
		}
		if e.s.TimelineCall != nil {
			timelines++
		}
		expectations += len(e.s.Expect)
		n++
		_ = i
	}
	t.Logf("%d of %d scenarios and self-checks round-trip, all data: %d timelines and %d expectations as calls", n, len(all), timelines, expectations)
}

// referenceKey is the first key of the file that refers to a part of
// the catalogue written in Go ("from", "timeline-from"), or "".
func referenceKey(t *testing.T, data []byte) string {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("the export is no YAML: %v", err)
	}
	var walk func(v any, path string) string
	walk = func(v any, path string) string {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if k == "from" || k == "timeline-from" {
					return path + "." + k
				}
				if p := walk(e, path+"."+k); p != "" {
					return p
				}
			}
		case []any:
			for i, e := range x {
				if p := walk(e, fmt.Sprintf("%s[%d]", path, i)); p != "" {
					return p
				}
			}
		}
		return ""
	}
	return walk(v, "")
}
