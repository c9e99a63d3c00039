package tfolab_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/scenarios"
	"github.com/tfolab/tfolab/topology"
)

// TestTFOLab is the integration suite. It needs root (CAP_NET_ADMIN and
// CAP_SYS_ADMIN): it builds network namespaces and runs real TFO traffic.
// Run it with `sudo make test`; `make test PROCS=4 LABELS=baseline` selects.
func TestTFOLab(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "tfolab")
}

// outDir is where failure artefacts (pcaps, counters) go.
func outDir() string {
	if d := os.Getenv("TFOLAB_OUT"); d != "" {
		return d
	}
	return "out"
}

// hostBefore is the root namespace's state before the suite, on process 1.
var hostBefore lab.HostState

var _ = SynchronizedBeforeSuite(func(ctx SpecContext) []byte {
	if err := lab.Preflight(); err != nil {
		AbortSuite(err.Error())
	}
	var err error
	hostBefore, err = lab.SnapshotHost(ctx)
	Expect(err).NotTo(HaveOccurred(), "snapshot the root namespace")
	return nil
}, func(ctx SpecContext, _ []byte) {
	if err := lab.Preflight(); err != nil {
		AbortSuite(err.Error())
	}
})

// After every process is done, the root namespace must be exactly what it
// was: the lab never touches the host's links, routes, rules, firewall or
// sysctls.
var _ = SynchronizedAfterSuite(func() {}, func(ctx SpecContext) {
	if hostBefore.Sections == nil {
		return // the suite was aborted before the first snapshot
	}
	after, err := lab.SnapshotHost(ctx)
	Expect(err).NotTo(HaveOccurred())
	Expect(hostBefore.Diff(after)).To(BeEmpty(), "the root namespace changed during the suite")
})

// newLab returns a Lab torn down after the spec; the teardown itself is
// checked: it must succeed and leave none of the Lab's namespaces behind.
func newLab() *lab.Lab {
	l := lab.New()
	DeferCleanup(func() {
		Expect(l.Close()).To(Succeed())
		names, err := lab.ListNamespaces()
		Expect(err).NotTo(HaveOccurred())
		for _, n := range names {
			Expect(n).NotTo(ContainSubstring(l.ID), "namespace left behind by teardown")
		}
	})
	return l
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// runScenario runs s in a fresh Lab and, if the spec fails, saves its pcaps
// and observation under the output folder and attaches their paths.
func runScenario(ctx context.Context, s scenarios.Scenario) *lab.Observation {
	l := newLab()
	obs, err := scenarios.Run(ctx, l, s)
	// Registered after the Lab's teardown, so it runs before it (LIFO), while
	// the captures still exist.
	DeferCleanup(func() {
		if obs == nil || !CurrentSpecReport().Failed() {
			return
		}
		dir := filepath.Join(outDir(), "artifacts", unsafeChars.ReplaceAllString(CurrentSpecReport().FullText(), "_"))
		paths, werr := obs.WriteArtifacts(dir)
		AddReportEntry("artefacts", strings.Join(paths, "\n"))
		if werr != nil {
			AddReportEntry("artefact error", werr.Error())
		}
	})
	Expect(err).NotTo(HaveOccurred(), "run scenario %s", s.Name)
	AddReportEntry("observation", obs.ConnSummary()+obs.CounterSummary(), ReportEntryVisibilityFailureOrVerbose)
	return obs
}

// specTimeout bounds a scenario spec: its connections' own bounds plus
// setup and teardown.
func specTimeout(s scenarios.Scenario) time.Duration {
	if s.Timeout > 0 {
		return s.Timeout + 15*time.Second
	}
	per := s.Workload.ConnTimeout
	if per <= 0 {
		per = scenarios.DefaultConnTimeout
	}
	return time.Duration(s.Workload.Connections)*per + 15*time.Second
}

var _ = Describe("catalogue", func() {
	for _, s := range scenarios.Catalogue() {
		It(s.Name+": "+s.Description, Label(s.Labels...), func(ctx SpecContext) {
			obs := runScenario(ctx, s)
			failed := assertions.Failed(assertions.Judge(obs, s.Expect))
			if len(failed) > 0 {
				var b strings.Builder
				for _, v := range failed {
					fmt.Fprintf(&b, "\n✗ %s\n", v.Message)
				}
				fmt.Fprintf(&b, "\n--- observation\n%s", obs)
				Fail(fmt.Sprintf("%d of %d expectations failed for %s:%s", len(failed), len(s.Expect), s.Name, b.String()))
			}
		}, SpecTimeout(specTimeout(s)))
	}
})

// The expectations must be able to fail: each mutant breaks the
// cookie-then-data scenario the way a deployment gets it wrong, and the
// unchanged expectations must reject it.
var _ = Describe("self-check: expectations reject broken setups", Label("baseline", "selfcheck"), func() {
	for _, m := range scenarios.Mutants() {
		It(m.Breakage, func(ctx SpecContext) {
			obs := runScenario(ctx, m.Scenario)
			failed := assertions.Failed(assertions.Judge(obs, m.Scenario.Expect))
			Expect(failed).NotTo(BeEmpty(), "every expectation passed although %s:\n%s", m.Breakage, obs)
			AddReportEntry("first rejection", failed[0].Message)
		}, SpecTimeout(specTimeout(m.Scenario)))
	}
})

// Custom firewalls: a user's iptables-save file, applied as written in the
// router. A file iptables refuses must fail loudly and leave nothing behind.
var _ = Describe("custom rules", Label("middlebox", "custom"), func() {
	It("rejects a file with a rule iptables refuses, names its line, and leaves no rule applied", func(ctx SpecContext) {
		rules, err := scenarios.LoadRules("testdata/bad-target.rules")
		Expect(err).NotTo(HaveOccurred(), "the file parses: the error must come from iptables")
		s := scenarios.CustomRules(topology.IPv4, tfo.ModeSendto)
		s.Middlebox.Box = middlebox.Custom(rules)
		l := newLab()
		_, err = scenarios.Run(ctx, l, s)
		Expect(err).To(MatchError(ContainSubstring("line 8")), "the error names the offending line")
		saved, err := l.Namespace(topology.Router).Run(ctx, "iptables-save")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(saved)).NotTo(ContainSubstring("TFO-GUARD"), "rolled back: no chain of the file is left")
		Expect(string(saved)).NotTo(ContainSubstring(middlebox.TagPrefix), "rolled back: no rule of the file is left")
	}, SpecTimeout(30*time.Second))

	if path := os.Getenv("TFOLAB_RULES"); path != "" {
		It("applies "+path+" in the router and reports what TFO does behind it", func(ctx SpecContext) {
			f, err := os.Open(path)
			Expect(err).NotTo(HaveOccurred())
			defer f.Close()
			rules, err := middlebox.ParseRulesFile(f)
			Expect(err).NotTo(HaveOccurred(), "parse %s", path)
			s := scenarios.CustomRules(topology.IPv4, tfo.ModeSendto)
			s.Name = "middlebox/custom/" + filepath.Base(path)
			s.Middlebox.Box = middlebox.Custom(rules)
			s.Workload.ConnTimeout = scenarios.StallBound
			obs := runScenario(ctx, s)
			AddReportEntry("behind "+path, obs.String())
			var hits uint64
			for _, r := range obs.Middlebox {
				hits += r.Packets
			}
			Expect(hits).NotTo(BeZero(), "no rule of %s matched the lab's traffic (server port %d): wrong port or chain?\n%s", path, scenarios.ServicePort, obs.MiddleboxSummary())
		}, SpecTimeout(3*scenarios.StallBound+15*time.Second))
	}
})

var _ = Describe("isolation", Label("baseline"), func() {
	It("keeps every link and route of a Routed lab inside the lab, and the root namespace unchanged while it lives", func(ctx SpecContext) {
		before, err := lab.SnapshotHost(ctx)
		Expect(err).NotTo(HaveOccurred())
		l := newLab()
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
