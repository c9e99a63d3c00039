package tfolab_test

import (
	"errors"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tfolab/tfolab/harness"
	"github.com/tfolab/tfolab/labfile"
	"github.com/tfolab/tfolab/scenarios"
)

// viaFile is s written as a scenario file (labfile.ExportAs, ref naming
// its catalogue entry in the header) and loaded back: the suite runs every catalogue
// scenario and self-check from its file, so the whole suite proves that
// the file form runs to the same verdicts.
func viaFile(s scenarios.Scenario, ref string) scenarios.Scenario {
	data, err := labfile.ExportAs(s, ref)
	Expect(err).NotTo(HaveOccurred(), "export %s", ref)
	// All of it is data: nothing refers back to the catalogue.
	loaded, err := labfile.Decode(ref+".yaml", data)
	Expect(err).NotTo(HaveOccurred(), "load the export of %s:\n%s", ref, data)
	return loaded
}

// Scenario files: every lab under examples/labs/ is a failure users report
// (or a setup the catalogue lacks), written as a file; each must load and
// hold all of its own expectations.
var _ = Describe("scenario files", Label("labfile"), func() {
	files, err := filepath.Glob("examples/labs/*/lab.yaml")
	if err == nil && len(files) == 0 {
		err = errors.New("examples/labs/*/lab.yaml: no scenario files (run the suite from the repository's root)")
	}
	if err != nil {
		// A spec that fails, not a panic: a panic here would take every
		// other spec of the tree down with it.
		It("finds its scenario files", func() { Fail(err.Error()) })
		return
	}
	for _, f := range files {
		s, err := labfile.Load(f)
		if err != nil {
			It(f, func() { Fail(err.Error()) })
			continue
		}
		budget := harness.Budget(s)
		It(f+": "+s.Description, Label(s.Labels...), func(ctx SpecContext) {
			if res := runJudged(ctx, s); !res.Passed() {
				Fail(res.FailureReport())
			}
		}, SpecTimeout(budget), SpecPriority(int(budget.Milliseconds())))
	}
})
