package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/onsi/ginkgo/v2/types"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/profile"
	"github.com/tfolab/tfolab/report"
	"github.com/tfolab/tfolab/scenarios"
)

const reportUsage = "report [--profile F]... [--client-profile F]... [--server-profile F]... [--rtt 50ms] [--out DIR] [--baseline-profile F]... [--labels EXPR] [--parallel N]"

func init() { register("report", reportUsage, runReport) }

// files is a repeatable flag: profile files or sysctl.d directories.
type files []string

func (f *files) String() string     { return strings.Join(*f, " ") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

// runReport runs the catalogue under a profile (the embedded default when
// none is given) and writes report.md, report.json, junit.xml and every
// scenario's artefacts under --out. With --baseline-profile it runs the
// catalogue twice, baseline then candidate, and diffs the two: the exit
// code is then the gate's.
func runReport(args []string) error {
	handled, args, err := reportInVM(args)
	if handled || err != nil {
		return err
	}
	fs := newFlags("report")
	var all, client, server, baseline files
	fs.Var(&all, "profile", "sysctl.d file or directory for every node (repeatable; default: the embedded default.conf)")
	fs.Var(&client, "client-profile", "sysctl.d file or directory for the client nodes (repeatable)")
	fs.Var(&server, "server-profile", "sysctl.d file or directory for the service nodes (repeatable)")
	fs.Var(&baseline, "baseline-profile", "run this profile first as the baseline and diff (repeatable)")
	rtt := fs.Duration("rtt", 0, "round trip to emulate on every router (0: none; at least 10ms)")
	out := fs.String("out", filepath.Join("out", "report"), "folder for the report and the artefacts")
	labels := fs.String("labels", "", "only scenarios matching this Ginkgo label filter")
	parallel := fs.Int("parallel", report.DefaultParallel, "scenarios at a time")
	if err := fs.Parse(args); err != nil {
		return badInput("tfolab report: %v\nusage: tfolab %s", err, reportUsage)
	}
	if fs.NArg() > 0 {
		return badInput("tfolab report: unexpected argument %q\nusage: tfolab %s", fs.Arg(0), reportUsage)
	}
	if *rtt != 0 && *rtt < report.MinRTT {
		return badInput("tfolab report: --rtt %v: want 0 (none) or at least %v (the saving must be measurable)", *rtt, report.MinRTT)
	}
	if *parallel < 1 {
		return badInput("tfolab report: --parallel %d: want 1 or more", *parallel)
	}
	sel, err := labelSelector(*labels)
	if err != nil {
		return err
	}
	// Profiles first: a file that does not parse, or a key the lab must
	// not apply, is refused before anything is built.
	candAll, err := loadProfile("--profile", all, true)
	if err != nil {
		return err
	}
	candClient, err := loadProfile("--client-profile", client, false)
	if err != nil {
		return err
	}
	candServer, err := loadProfile("--server-profile", server, false)
	if err != nil {
		return err
	}
	var baseAll *profile.Profile
	if len(baseline) > 0 {
		if baseAll, err = loadProfile("--baseline-profile", baseline, false); err != nil {
			return err
		}
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
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 4*(*parallel)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := report.Options{RTT: *rtt, Parallel: *parallel, Select: sel, Progress: report.NewProgress(os.Stdout)}
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
		opts.All, opts.Out = candPlan, *out
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
	baseOpts.All, baseOpts.Client, baseOpts.Server, baseOpts.Out = basePlan, nil, nil, filepath.Join(*out, "baseline")
	fmt.Printf("tfolab report: baseline (%s)\n", baseAll.Names())
	base, err := runOneReport(ctx, baseOpts)
	if err != nil {
		return err
	}
	opts.All, opts.Out = candPlan, filepath.Join(*out, "candidate")
	fmt.Printf("tfolab report: candidate (%s)\n", candAll.Names())
	cand, err := runOneReport(ctx, opts)
	if err != nil {
		return err
	}
	return writeDiff(base, cand, filepath.Join(*out, "diff.md"))
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
		return exitError{1, fmt.Errorf("tfolab report: %d scenarios did not run cleanly: %s", len(broken), strings.Join(broken, ", "))}
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
