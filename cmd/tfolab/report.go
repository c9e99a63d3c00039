package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/onsi/ginkgo/v2/types"
	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/profile"
	"github.com/tfolab/tfolab/report"
	"github.com/tfolab/tfolab/scenarios"
)

func newReportCmd() *cobra.Command {
	var o reportFlags
	c := command("report", groupScenarios, noArgs, nil, func(c *cobra.Command, _ []string) error { return runReport(c, o) })
	f := c.Flags()
	f.StringArrayVar(&o.all, "profile", nil, "sysctl.d file or directory for every node (repeatable; default: the embedded default.conf)")
	f.StringArrayVar(&o.client, "client-profile", nil, "sysctl.d file or directory for the client nodes (repeatable)")
	f.StringArrayVar(&o.server, "server-profile", nil, "sysctl.d file or directory for the service nodes (repeatable)")
	f.StringArrayVar(&o.baseline, "baseline-profile", nil, "run this profile first as the baseline and diff (repeatable)")
	f.DurationVar(&o.rtt, "rtt", 0, "round trip to emulate on every router (0: none; at least 10ms)")
	f.StringVar(&o.out, "out", filepath.Join("out", "report"), "folder for the report and the artefacts")
	f.StringVar(&o.labels, "labels", "", "only scenarios matching this Ginkgo label filter")
	f.IntVar(&o.parallel, "parallel", report.DefaultParallel, "scenarios at a time")
	for _, name := range []string{"profile", "client-profile", "server-profile", "baseline-profile"} {
		flagCompletion(c, name, completeFiles())
	}
	flagCompletion(c, "out", completeDirs)
	flagCompletion(c, "labels", completeLabelFlag)
	flagCompletion(c, "rtt", completeWords("0", "10ms", "50ms", "100ms"))
	flagCompletion(c, "parallel", completeWords())
	addVMFlags(c, &o.vm)
	return c
}

// reportFlags are the flags of `tfolab report`.
type reportFlags struct {
	all, client, server, baseline []string
	rtt                           time.Duration
	out, labels                   string
	parallel                      int
	vm                            vmFlags // --kernel K: the report inside K, in a VM
}

// runReport runs the catalogue under a profile (the embedded default when
// none is given) and writes report.md, report.json, junit.xml and every
// scenario's artefacts under --out. With --baseline-profile it runs the
// catalogue twice, baseline then candidate, and diffs the two: the exit
// code is then the gate's.
func runReport(c *cobra.Command, o reportFlags) error {
	if o.rtt != 0 && o.rtt < report.MinRTT {
		return badUsage(c, "--rtt %v: want 0 (none) or at least %v (the saving must be measurable)", o.rtt, report.MinRTT)
	}
	if o.parallel < 1 {
		return badUsage(c, "--parallel %d: want 1 or more", o.parallel)
	}
	sel, err := labelSelector(o.labels)
	if err != nil {
		return err
	}
	// Profiles first: a file that does not parse, or a key the lab must
	// not apply, is refused before anything is built.
	candAll, err := loadProfile("--profile", o.all, true)
	if err != nil {
		return err
	}
	candClient, err := loadProfile("--client-profile", o.client, false)
	if err != nil {
		return err
	}
	candServer, err := loadProfile("--server-profile", o.server, false)
	if err != nil {
		return err
	}
	var baseAll *profile.Profile
	if len(o.baseline) > 0 {
		if baseAll, err = loadProfile("--baseline-profile", o.baseline, false); err != nil {
			return err
		}
	}
	// Every flag and profile is checked above, before a VM boots.
	if vm, err := o.vm.inVM(c); err != nil || vm {
		if err != nil {
			return err
		}
		return reportInVM(c, o)
	}
	if err := lab.Preflight(); err != nil {
		return fmt.Errorf("tfolab report: %w", err)
	}
	// Many labs share this process, each mostly waiting on the kernel,
	// and a delay queue's verdict must go out the moment it falls due: with
	// a P per OS thread that may want one, a goroutine woken from its
	// sleep never waits for a busy P (up to the runtime's 10 ms preemption
	// tick), and the kernel's scheduler alone decides, as it would for a
	// process per lab. Measured: the control's 50 ms RTT read 107 ms with
	// 2 Ps beside 12 other scenarios, 53 ms with 16.
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 4*o.parallel))
	ctx, stop := interruptible()
	defer stop()
	opts := report.Options{RTT: o.rtt, Parallel: o.parallel, Select: sel, Progress: report.NewProgress(os.Stdout)}
	resolve := func(p *profile.Profile) (*profile.Plan, error) {
		if p == nil {
			return nil, nil
		}
		plan, err := profile.Resolve(p)
		var re *profile.RefusedError
		if errors.As(err, &re) {
			return nil, badInput("tfolab report: %v", err)
		}
		return plan, err
	}
	if opts.Client, err = resolve(candClient); err != nil {
		return err
	}
	if opts.Server, err = resolve(candServer); err != nil {
		return err
	}
	candPlan, err := resolve(candAll)
	if err != nil {
		return err
	}
	if baseAll == nil {
		opts.All, opts.Out = candPlan, o.out
		rep, err := runOneReport(ctx, opts)
		if err != nil {
			return err
		}
		return runFailures(rep)
	}
	basePlan, err := resolve(baseAll)
	if err != nil {
		return err
	}
	baseOpts := opts
	baseOpts.All, baseOpts.Client, baseOpts.Server, baseOpts.Out = basePlan, nil, nil, filepath.Join(o.out, "baseline")
	fmt.Printf("tfolab report: baseline (%s)\n", baseAll.Names())
	base, err := runOneReport(ctx, baseOpts)
	if err != nil {
		return err
	}
	opts.All, opts.Out = candPlan, filepath.Join(o.out, "candidate")
	fmt.Printf("tfolab report: candidate (%s)\n", candAll.Names())
	cand, err := runOneReport(ctx, opts)
	if err != nil {
		return err
	}
	return writeDiff(base, cand, filepath.Join(o.out, "diff.md"))
}

// loadProfile parses a scope's files (the embedded default for --profile
// when none are given, or for the word "default") and refuses non-network
// keys at once.
func loadProfile(flagName string, paths []string, orDefault bool) (*profile.Profile, error) {
	var p *profile.Profile
	switch {
	case len(paths) == 1 && paths[0] == "default" && !exists(paths[0]):
		p = profile.FromSources(profile.Default())
	case len(paths) > 0:
		var err error
		if p, err = profile.Parse(paths...); err != nil {
			return nil, badInput("tfolab report: %s: %v", flagName, err)
		}
	case orDefault:
		p = profile.FromSources(profile.Default())
	default:
		return nil, nil
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(os.Stderr, "tfolab report: warning: %s\n", w)
	}
	// Without root the non-network keys can be refused already; as root
	// Resolve lists them with every other refusal, in one message.
	if err := p.CheckStatic(); err != nil && os.Geteuid() != 0 {
		return nil, badInput("tfolab report: %s: %v", flagName, err)
	}
	return p, nil
}

func runOneReport(ctx context.Context, opts report.Options) (*report.Report, error) {
	start := time.Now()
	rep, err := report.Run(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("tfolab report: %w", err)
	}
	fmt.Println(report.Summary(rep))
	if rep.Saving != nil {
		fmt.Printf("  TFO saves %.2f RTT (%s) against a plain handshake (control over %s)\n", rep.Saving.SavedRTTs, rep.Saving.Saved.Round(100*time.Microsecond), rep.Saving.RTT.Round(100*time.Microsecond))
	}
	fmt.Printf("  %s, %s, %s (artefacts under %s) in %v\n",
		filepath.Join(opts.Out, report.MarkdownFile), filepath.Join(opts.Out, report.JSONFile), filepath.Join(opts.Out, report.JUnitFile),
		filepath.Join(opts.Out, report.ScenarioDir), time.Since(start).Round(100*time.Millisecond))
	return rep, nil
}

// runFailures fails the command only for scenarios the lab could not run
// or tear down; failed expectations are the report's findings.
func runFailures(rep *report.Report) error {
	var broken []string
	for _, s := range rep.Scenarios {
		if s.Error != "" || s.Teardown != "" {
			broken = append(broken, s.Name)
		}
	}
	if len(broken) > 0 {
		return failed("tfolab report: %d scenarios did not run cleanly: %s", len(broken), strings.Join(broken, ", "))
	}
	if n := rep.Failed(); n > 0 {
		fmt.Printf("  %d scenarios have failing expectations: see the report (a profile may change what they assert)\n", n)
	}
	return nil
}

// labelSelector turns a Ginkgo label filter into a scenario selector.
func labelSelector(expr string) (func(scenarios.Scenario) bool, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, nil
	}
	f, err := types.ParseLabelFilter(expr)
	if err != nil {
		return nil, badInput("tfolab report: --labels %q is not a label filter: %v", expr, err)
	}
	return func(s scenarios.Scenario) bool { return f(s.Labels) }, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
