package tfolab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/harness"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/cost"
	"github.com/tfolab/tfolab/lab/rules"
	"github.com/tfolab/tfolab/labfile"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/scenarios"
	"github.com/tfolab/tfolab/topology"
)

// TestTFOLab is the integration suite. It needs root (CAP_NET_ADMIN and
// CAP_SYS_ADMIN): it builds network namespaces and runs real TFO traffic.
// Run it with `sudo make test`; `make test PROCS=4 LABELS=baseline` selects.
// Everything it runs goes through package harness; this file is only the
// Ginkgo wiring.
func TestTFOLab(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "tfolab")
}

// outDir is where failure artefacts (pcaps, observation, verdicts) go.
func outDir() string {
	if d := os.Getenv("TFOLAB_OUT"); d != "" {
		return d
	}
	return "out"
}

func artefacts() harness.Options {
	return harness.Options{Out: filepath.Join(outDir(), "artifacts"), Artefacts: harness.OnFailure}
}

// Every spec's CPU becomes its "cpu" JUnit property (`tfolab cost` sums
// them by program and label): a worker runs one spec at a time, so the
// process's own CPU and its reaped programs' over the spec, its teardown
// included (this cleanup is registered first, so it runs last), are the
// spec's.
var _ = BeforeEach(func() {
	before, start := cost.Take(), time.Now()
	DeferCleanup(func() {
		spend := cost.Since(before, cost.Take(), time.Since(start))
		AddReportEntry(harness.CPUEntry, spend, ReportEntryVisibilityNever)
		// A failure on a busy machine says how busy: the worker's threads'
		// waits for a CPU over the spec, next to the expectations.
		if CurrentSpecReport().Failed() && spend.Waited > 0 {
			AddReportEntry("cpu waits", fmt.Sprintf("this worker's threads waited %v for a CPU over the spec's %v (%.0f%%): timing evidence above may carry that much scheduling delay",
				spend.Waited.Round(time.Millisecond), spend.Wall.Round(time.Millisecond), 100*spend.Waited.Seconds()/spend.Wall.Seconds()))
		}
	})
})

// hostBefore is the root namespace's state before the suite, on process 1,
// and machineBefore the machine's busy CPU then.
var (
	hostBefore    lab.HostState
	machineBefore time.Duration
)

var _ = SynchronizedBeforeSuite(func(ctx SpecContext) []byte {
	if err := lab.Preflight(); err != nil {
		AbortSuite(err.Error())
	}
	// What a killed earlier run left goes first, and so do the failure
	// artefacts of an earlier run, so none is mistaken for this run's.
	res, err := lab.Sweep(false)
	Expect(err).NotTo(HaveOccurred(), "sweep what earlier runs left")
	if len(res.Removed) > 0 {
		GinkgoWriter.Printf("swept %d namespaces left by killed runs\n", len(res.Removed))
	}
	Expect(os.RemoveAll(filepath.Join(outDir(), "artifacts"))).To(Succeed())
	Expect(os.RemoveAll(dissectDir())).To(Succeed())
	hostBefore, err = lab.SnapshotHost(ctx)
	Expect(err).NotTo(HaveOccurred(), "snapshot the root namespace")
	machineBefore, _ = cost.MachineCPU()
	return nil
}, func(ctx SpecContext, _ []byte) {
	if err := lab.Preflight(); err != nil {
		AbortSuite(err.Error())
	}
	// tshark runs once for the whole run, after every spec (below).
	assertions.DeferDissection(&assertions.DissectBatch{Dir: dissectDir()})
})

// dissectDir is where every process spools its tshark checks.
func dissectDir() string { return filepath.Join(outDir(), "dissect") }

// After every process is done, the root namespace must be exactly what it
// was: the lab never touches the host's links, routes, rules, firewall or
// sysctls.
var _ = SynchronizedAfterSuite(func() {}, func(ctx SpecContext) {
	if hostBefore.Sections == nil {
		return // the suite was aborted before the first snapshot
	}
	// The specs' "tshark agrees" checks, in one tshark run: a disagreement
	// fails the run (below), naming its scenario and frames.
	batch := &assertions.DissectBatch{Dir: dissectDir()}
	before, start := cost.Take(), time.Now()
	verdicts, batchErr := batch.Run(ctx, scenarios.TsharkFrames)
	// What the whole machine spent, and the batch, for `tfolab cost`
	// beside junit.xml.
	if after, err := cost.MachineCPU(); err == nil && machineBefore > 0 {
		b, _ := json.Marshal(harness.RunCost{Machine: after - machineBefore, AfterSpecs: cost.Since(before, cost.Take(), time.Since(start))})
		_ = os.WriteFile(filepath.Join(outDir(), harness.RunCostFile), b, 0o644)
	}
	after, err := lab.SnapshotHost(ctx)
	Expect(err).NotTo(HaveOccurred())
	Expect(hostBefore.Diff(after)).To(BeEmpty(), "the root namespace changed during the suite")
	Expect(batchErr).NotTo(HaveOccurred(), "the run's tshark batch")
	var disagree []string
	for _, v := range verdicts {
		if !v.Pass {
			disagree = append(disagree, fmt.Sprintf("%s: %s:\n%s", v.Scenario, v.Check, v.Evidence))
		}
	}
	Expect(disagree).To(BeEmpty(), "tshark disagrees with the lab's decoder (%d checks in one tshark run)", len(verdicts))
	if len(verdicts) > 0 {
		GinkgoWriter.Printf("tshark agreed on %d scenarios' captures in one run\n", len(verdicts))
		_ = os.RemoveAll(dissectDir())
	}
})

// runJudged runs s through the harness and fails the spec with the
// harness's report when the run itself failed.
func runJudged(ctx context.Context, s scenarios.Scenario) harness.Result {
	return runJudgedWith(ctx, s, artefacts())
}

// runJudgedWith is runJudged with the harness options given.
func runJudgedWith(ctx context.Context, s scenarios.Scenario, opts harness.Options) harness.Result {
	// A missing peer (nginx, curl, tshark, ...) skips the spec on a
	// developer's machine and fails it under CI=true, naming the `make
	// deps` line that installs it.
	if skip, err := scenarios.CheckPrograms(s); err != nil {
		Fail(err.Error())
	} else if skip != "" {
		Skip(skip)
	}
	res := harness.Run(ctx, s, opts)
	if res.Obs != nil && len(res.Obs.Host.Tools) > 0 {
		// The programs' versions become the spec's JUnit properties.
		AddReportEntry("tools", res.Obs.Host.Tools, ReportEntryVisibilityNever)
	}
	if res.Err != nil || res.Teardown != nil {
		if res.Dir == "" {
			res.WriteArtefacts(opts.Out)
		}
		Fail(res.FailureReport())
	}
	return res
}

// selfCheck runs a scenario broken on purpose and requires each
// expectation named in rejectedBy to reject it. Its expectations are meant
// to fail, so its artefacts are written only when one that must reject the
// breakage passed (or the run itself failed).
func selfCheck(ctx context.Context, s scenarios.Scenario, breakage string, rejectedBy []string) {
	opts := artefacts()
	opts.Artefacts = harness.Never
	res := runJudgedWith(ctx, s, opts)
	for _, name := range rejectedBy {
		v, ok := assertions.Find(res.Verdicts, name)
		Expect(ok).To(BeTrue(), "the scenario has no expectation %q", name)
		if v.Pass && res.Dir == "" {
			res.WriteArtefacts(opts.Out)
		}
		Expect(v.Pass).To(BeFalse(), "expectation %q passed although %s:\n%s\nartefacts: %s", name, breakage, res.Obs.Short(), res.Dir)
		AddReportEntry("rejection: "+name, v.Evidence, ReportEntryVisibilityFailureOrVerbose)
	}
}

// spec is one It of the suite. The suite's wall time is bounded below by
// its longest spec, and its specs mostly wait on kernel timers, so each
// gets its time budget as its priority: with --randomize-all (every It a
// group of its own, scripts/suite.sh) Ginkgo hands a free process the
// longest spec left, and no long spec starts last.
type spec struct {
	text   string
	labels []string
	budget time.Duration
	body   func(ctx SpecContext)
}

func catalogueSpecs() []spec {
	var out []spec
	for _, s := range scenarios.Catalogue() {
		out = append(out, spec{"catalogue " + s.Name + ": " + s.Description, s.Labels, harness.Budget(s), func(ctx SpecContext) {
			if res := runJudged(ctx, viaFile(s, s.Name)); !res.Passed() { // run from its scenario file: labfile_test.go
				Fail(res.FailureReport())
			}
		}})
	}
	// The expectations must be able to fail: each mutant breaks a scenario
	// the way a deployment gets it wrong, and the expectations it names
	// must reject it.
	for _, m := range scenarios.Mutants() {
		out = append(out, spec{"self-check: " + m.Breakage, m.Scenario.Labels, harness.Budget(m.Scenario), func(ctx SpecContext) {
			selfCheck(ctx, viaFile(m.Scenario, labfile.SelfCheckPrefix+m.Breakage), m.Breakage, m.RejectedBy)
		}})
	}
	return append(out, keepSpec())
}

var _ = Describe("tfolab", func() {
	for _, sp := range catalogueSpecs() {
		It(sp.text, Label(sp.labels...), sp.body, SpecTimeout(sp.budget), SpecPriority(int(sp.budget/time.Millisecond)))
	}
})

// The diagnoser on captures tcpdump took (kept under out/tcpdump/): curl
// → nginx through each middlebox, both ends.
var _ = Describe("tcpdump captures", func() {
	for _, s := range scenarios.Tcpdumped(filepath.Join(outDir(), "tcpdump")) {
		budget := harness.Budget(s)
		It(s.Name+": "+s.Description, Label(s.Labels...), func(ctx SpecContext) {
			if res := runJudged(ctx, s); !res.Passed() {
				Fail(res.FailureReport())
			}
		}, SpecTimeout(budget), SpecPriority(int(budget/time.Millisecond)))
	}
	// The diagnosis of tcpdump's files must be able to fail: with the
	// firewall pointed at another port the path is open, and a diagnosis
	// of syn-data-dropped must not come out of it.
	for _, s := range scenarios.Tcpdumped(filepath.Join(outDir(), "tcpdump", "selfcheck")) {
		if m := s.Middlebox(); m != nil && m.Box.Name == "drop-syn-data" {
			m.Port = scenarios.ServicePort + 1
			budget := harness.Budget(s)
			It("self-check: "+s.Name+" with its firewall on the wrong port", Label(append(s.Labels, "selfcheck")...), func(ctx SpecContext) {
				selfCheck(ctx, s, "drop-syn-data pointed at the wrong port", []string{"diagnosis"})
			}, SpecTimeout(budget), SpecPriority(int(budget/time.Millisecond)))
		}
	}
})

// Custom firewalls: a user's iptables-save file, applied as written in the
// router. A file iptables refuses must fail loudly and leave nothing behind.
var _ = Describe("custom rules", Label("middlebox", "custom"), func() {
	It("rejects a file with a rule iptables refuses, names its line, and leaves no rule applied", func(ctx SpecContext) {
		rs, err := scenarios.LoadRules("testdata/bad-target.rules")
		Expect(err).NotTo(HaveOccurred(), "the file parses: the error must come from iptables")
		s := scenarios.CustomRules(topology.IPv4, 0)
		s.Middlebox().Box = middlebox.Custom(rs)
		l := lab.New()
		DeferCleanup(l.Close)
		_, err = scenarios.Run(ctx, l, s)
		Expect(err).To(MatchError(ContainSubstring("line 8")), "the error names the offending line")
		saved, err := l.Namespace(topology.Router).Run(ctx, "iptables-save")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(saved)).NotTo(ContainSubstring("TFO-GUARD"), "rolled back: no chain of the file is left")
		Expect(string(saved)).NotTo(ContainSubstring(rules.TagPrefix), "rolled back: no rule of the file is left")
	}, SpecTimeout(30*time.Second))

	if path := os.Getenv("TFOLAB_RULES"); path != "" {
		It("applies "+path+" in the router and reports what TFO does behind it", func(ctx SpecContext) {
			f, err := os.Open(path)
			Expect(err).NotTo(HaveOccurred())
			defer f.Close()
			rs, err := rules.ParseRulesFile(f)
			Expect(err).NotTo(HaveOccurred(), "parse %s", path)
			s := scenarios.CustomRules(topology.IPv4, 0)
			s.Name = "middlebox/custom/" + filepath.Base(path)
			s.Middlebox().Box = middlebox.Custom(rs)
			s.Client().ConnTimeout = scenarios.StallBound
			s.Expect = nil
			res := runJudged(ctx, s)
			AddReportEntry("behind "+path, res.Obs.Short())
			Expect(res.Obs.MiddleboxHits()).NotTo(BeZero(), "no rule of %s matched the lab's traffic (server port %d): wrong port or chain?\n%s", path, scenarios.ServicePort, res.Obs.MiddleboxSummary())
		}, SpecTimeout(3*scenarios.StallBound+harness.SetupMargin))
	}
})

var _ = Describe("isolation", Label("baseline"), func() {
	It("keeps every link and route of a Routed lab inside the lab, and the root namespace unchanged while it lives", func(ctx SpecContext) {
		before, err := lab.SnapshotHost(ctx)
		Expect(err).NotTo(HaveOccurred())
		l := lab.New()
		DeferCleanup(l.Close)
		topo, err := topology.Build(ctx, l, topology.Routed())
		Expect(err).NotTo(HaveOccurred())
		Expect(topo.CheckIsolated()).To(Succeed())
		during, err := lab.SnapshotHost(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(before.Diff(during)).To(BeEmpty(), "the root namespace changed while a lab was alive")
		for _, ns := range l.Namespaces() {
			Expect(ns.Name).To(HavePrefix(lab.NamePrefix + l.ID + "-"))
		}
	}, SpecTimeout(30*time.Second))
})
