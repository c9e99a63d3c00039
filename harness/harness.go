// Package harness is the one way a scenario is run: it builds a fresh lab,
// runs the scenario within its time budget, judges its observation, writes
// the artefacts and tears the lab down, checking that nothing of it is
// left. The Ginkgo suite (suite_test.go), `tfolab run` and the report all
// call it, so they judge the same way and their verdicts are the same data.
package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/cost"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/scenarios"
)

// SetupMargin is what a scenario's time budget allows beyond its timeline:
// topology setup (milliseconds), teardown, and a loaded machine's delays.
const SetupMargin = 15 * time.Second

// Budget bounds one run of s: its timeline's bound plus SetupMargin. Run
// and Start apply it themselves; a caller reads it to order or bound
// whole batches of runs (a Ginkgo spec's timeout and priority).
func Budget(s scenarios.Scenario) time.Duration { return s.ConnBudget() + SetupMargin }

// CPUEntry names a spec's cost in the suite's JUnit report (a property
// whose value is a cost.Spend as JSON).
const CPUEntry = "cpu"

// RunCostFile, beside the suite's junit.xml, holds a RunCost.
const RunCostFile = "machine-cpu.json"

// RunCost is what a whole suite run cost beyond its specs: the machine's
// busy CPU over the run (kernel work for no process included), and the
// work after the last spec (the run's tshark batch).
type RunCost struct {
	Machine    time.Duration `json:"cpu_ns"`
	AfterSpecs cost.Spend    `json:"after_specs"`
}

// Artefacts says when Run writes the observation, verdicts and pcaps.
type Artefacts int

const (
	// Never writes nothing.
	Never Artefacts = iota
	// OnFailure writes them when an expectation failed or the run erred.
	OnFailure
	// Always writes them.
	Always
)

// Options configure a run.
type Options struct {
	// Out is the folder artefacts go under (Out/<scenario>/).
	Out       string
	Artefacts Artefacts
	// OnStage, if set, is called on the run's goroutine as the run reaches
	// each Stage, with the run's lab: a progress display may look into the
	// lab's namespaces from LabMade until its TearingDown call returns.
	OnStage func(Stage, *lab.Lab)
}

// Stage is a point a run reaches, for Options.OnStage.
type Stage int

const (
	// LabMade: the run's lab exists, still empty. The scenario now builds
	// its namespaces (Lab.Namespace(node) is nil until then), starts its
	// services and runs its timeline.
	LabMade Stage = iota
	// TearingDown: the run is judged and its artefacts are written; the
	// lab is torn down once OnStage returns.
	TearingDown
)

// Result is one scenario run, judged.
type Result struct {
	Scenario scenarios.Scenario
	Obs      *observation.Observation
	Verdicts []assertions.Verdict
	// Err is a failure to run (build, start, timeline), not a failed
	// expectation; Teardown a failure to tear down.
	Err, Teardown error
	// Dir and Files are the artefacts written.
	Dir   string
	Files []string
	// Wall is the run's wall time, setup and teardown included.
	Wall time.Duration
	// Cost is the CPU of the programs the run started, by program (the Go
	// process may run other things meanwhile: its own CPU is not in it).
	Cost cost.Spend
}

// Passed reports whether the run worked and every expectation held.
func (r Result) Passed() bool {
	return r.Err == nil && r.Teardown == nil && len(assertions.Failed(r.Verdicts)) == 0
}

// Failed returns the failed verdicts.
func (r Result) Failed() []assertions.Verdict { return assertions.Failed(r.Verdicts) }

// Run runs s in a fresh lab within its Budget, judges it and tears the
// lab down.
func Run(ctx context.Context, s scenarios.Scenario, opts Options) Result {
	live := Start(ctx, s, opts)
	live.Result.Teardown = live.Close()
	return live.Result
}

// Live is a judged run whose lab is still up: its services keep answering
// until Close. `tfolab run --keep` hands it to a person.
type Live struct {
	Result  Result
	Lab     *lab.Lab
	Running *scenarios.Running
	start   time.Time
	meter   *cost.Meter
	onStage func(Stage, *lab.Lab)
	// cancel ends the run's budget, at Close.
	cancel context.CancelFunc
}

// Start runs and judges s within its Budget, writes its artefacts, and
// leaves the lab up. The budget's context lasts until Close.
func Start(ctx context.Context, s scenarios.Scenario, opts Options) *Live {
	live := &Live{start: time.Now(), meter: &cost.Meter{}, onStage: opts.OnStage}
	ctx, live.cancel = context.WithTimeout(ctx, Budget(s))
	ctx = cost.WithMeter(ctx, live.meter)
	l := lab.New()
	live.stage(LabMade, l)
	if err := Unsupported(s); err != nil {
		live.Lab, live.Result = l, Result{Scenario: s, Err: err}
		return live
	}
	obs, running, err := scenarios.RunKeep(ctx, l, s)
	live.Lab, live.Running, live.Result = l, running, Result{Scenario: s, Obs: obs, Err: err}
	if obs != nil {
		live.Result.Verdicts = assertions.Judge(obs, s.Expect)
	}
	r := &live.Result
	if opts.Artefacts == Always || (opts.Artefacts == OnFailure && !r.Passed()) {
		r.WriteArtefacts(opts.Out)
	}
	return live
}

// WriteArtefacts writes the observation, verdicts and pcaps under out
// (Dir and Files say where); a failure to write joins Err. A caller that
// ran with Never writes them this way once it knows it wants them (a
// self-check whose breakage was not rejected).
func (r *Result) WriteArtefacts(out string) {
	var err error
	r.Dir = ArtefactDir(out, r.Scenario.Name)
	if r.Files, err = r.write(); err != nil {
		r.Err = errors.Join(r.Err, fmt.Errorf("write artefacts: %w", err))
	}
}

func (l *Live) stage(st Stage, lb *lab.Lab) {
	if l.onStage != nil {
		l.onStage(st, lb)
	}
}

// Close tears the lab down and checks that none of its namespaces is left.
func (l *Live) Close() error {
	defer l.cancel()
	l.stage(TearingDown, l.Lab)
	err := l.Lab.Close()
	names, lerr := lab.ListNamespaces()
	// The ID and its dash: lab …-2 must not claim lab …-20's namespaces.
	prefix := lab.NamePrefix + l.Lab.ID + "-"
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			err = errors.Join(err, fmt.Errorf("namespace %s left behind by teardown", n))
		}
	}
	l.Result.Wall = time.Since(l.start)
	l.Result.Cost = cost.Spend{Programs: l.meter.Programs(), Wall: l.Result.Wall, Shared: true}
	return errors.Join(err, lerr)
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// ArtefactDir is where a scenario's artefacts go under out.
func ArtefactDir(out, scenario string) string {
	return filepath.Join(out, unsafeChars.ReplaceAllString(scenario, "_"))
}

// VerdictsFile holds the verdicts beside the observation.
const VerdictsFile = "verdicts.json"

// write writes the observation (JSON, pcaps, a text dump) and the verdicts.
func (r *Result) write() ([]string, error) {
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	if r.Obs != nil {
		paths, err := r.Obs.Write(r.Dir)
		files = append(files, paths...)
		if err != nil {
			return files, err
		}
		p := filepath.Join(r.Dir, "observation.txt")
		if err := os.WriteFile(p, []byte(r.Obs.String()), 0o644); err != nil {
			return files, err
		}
		files = append(files, p)
	}
	b, err := json.MarshalIndent(r.Verdicts, "", " ")
	if err != nil {
		return files, err
	}
	p := filepath.Join(r.Dir, VerdictsFile)
	if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		return files, err
	}
	return append(files, p), nil
}

// FailureReport is what a person reads when the run failed: each broken
// expectation once with its evidence, the connections once, then where the
// full dump and the pcaps are.
func (r Result) FailureReport() string {
	var b strings.Builder
	failed := r.Failed()
	if r.Err != nil {
		fmt.Fprintf(&b, "run failed: %v\n", r.Err)
	}
	if r.Teardown != nil {
		fmt.Fprintf(&b, "teardown failed: %v\n", r.Teardown)
	}
	if len(failed) > 0 {
		fmt.Fprintf(&b, "%d of %d expectations failed for %s:\n", len(failed), len(r.Verdicts), r.Scenario.Name)
	}
	for _, v := range failed {
		// The evidence opens with what was expected: the statement is not
		// repeated.
		fmt.Fprintf(&b, "\n✗ %s\n%s\n", v.Name, indent(strings.TrimRight(v.Evidence, "\n")))
	}
	if figures := Figures(r.Verdicts); figures != "" {
		fmt.Fprintf(&b, "\n--- figures of the expectations that held\n%s", figures)
	}
	if r.Obs != nil {
		fmt.Fprintf(&b, "\n--- connections\n%s", r.Obs.ConnSummary())
		if d := r.Obs.Drops(); len(d) > 0 {
			fmt.Fprintf(&b, "capture lost frames (evidence may be missing): %v\n", d)
		}
	}
	if len(r.Files) > 0 {
		fmt.Fprintf(&b, "\n--- artefacts (full observation, pcaps)\n  %s\n", strings.Join(r.Files, "\n  "))
	}
	return b.String()
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// Figures lists what the passing expectations measured, one per line.
func Figures(vs []assertions.Verdict) string {
	var b strings.Builder
	for _, v := range vs {
		if v.Pass && v.Measured != "" {
			fmt.Fprintf(&b, "%s:\n%s\n", v.Name, indent(v.Measured))
		}
	}
	return b.String()
}

// VerdictTable renders verdicts one per line: ✓/✗, name, statement.
func VerdictTable(vs []assertions.Verdict) string {
	var b strings.Builder
	for _, v := range vs {
		mark := "✓"
		if !v.Pass {
			mark = "✗"
		}
		fmt.Fprintf(&b, "%s %-22s %s\n", mark, v.Name, v.Statement)
	}
	return b.String()
}
