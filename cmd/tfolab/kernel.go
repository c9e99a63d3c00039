package main

// The report under another kernel: `tfolab report --kernel K` boots K in
// QEMU (package kernelvm) and runs the report inside; `tfolab vm-guest`
// is the guest's PID 1; `tfolab matrix` puts several kernels' reports
// side by side.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tfolab/tfolab/kernelvm"
	"github.com/tfolab/tfolab/report"
)

const matrixUsage = "matrix [--out DIR] REPORT.json... (one per kernel: matrix.md, matrix.json)"

func init() {
	register("vm-guest", "vm-guest JOB (inside a VM only: its PID 1)", func(args []string) error {
		if len(args) != 1 || os.Getpid() != 1 {
			return badInput("tfolab vm-guest: runs only as a VM's PID 1 (tfolab report --kernel K starts it)")
		}
		kernelvm.Guest(args[0])
		return nil
	})
	register("matrix", matrixUsage, runMatrix)
}

// kernelFlags are report's flags that concern the VM; the rest go to
// the report inside it.
type kernelFlags struct {
	kernel, cache, engine string
	vcpus, memory         int
	out                   string
}

// splitKernelArgs takes --kernel, --kernel-cache, --engine, --vcpus,
// --memory and --out out of report's arguments (both -flag=v and -flag v
// forms); ok is false when there is no --kernel, or it says "host".
func splitKernelArgs(args []string) (kf kernelFlags, rest []string, ok bool, err error) {
	kf.out = filepath.Join("out", "report")
	kf.cache = kernelvm.DefaultCache
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		var dst *string
		var num *int
		switch name {
		case "kernel":
			dst = &kf.kernel
		case "kernel-cache":
			dst = &kf.cache
		case "engine":
			dst = &kf.engine
		case "out":
			dst = &kf.out
		case "vcpus":
			num = &kf.vcpus
		case "memory":
			num = &kf.memory
		default:
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return kf, nil, false, badInput("tfolab report: flag needs an argument: %s", a)
			}
			i++
			val = args[i]
		}
		if dst != nil {
			*dst = val
		} else if _, err := fmt.Sscanf(val, "%d", num); err != nil || *num < 1 {
			return kf, nil, false, badInput("tfolab report: %s %q: want a whole number, 1 or more", a, val)
		}
	}
	if kf.kernel == "" || kf.kernel == "host" {
		// Give --out back to the report itself.
		return kf, append(rest, "--out", kf.out), false, nil
	}
	switch strings.ToUpper(kf.engine) {
	case "", "AUTO":
		kf.engine = ""
	case "KVM", "TCG":
		kf.engine = strings.ToUpper(kf.engine)
	default:
		return kf, nil, false, badInput("tfolab report: --engine %q: want kvm, tcg or auto", kf.engine)
	}
	return kf, rest, true, nil
}

// reportInVM is runReport's hook: with --kernel K (not "host") the
// report runs inside K in a VM; handled is false otherwise, and report
// goes on with args (without --kernel).
func reportInVM(args []string) (handled bool, rest []string, err error) {
	kf, rest, ok, err := splitKernelArgs(args)
	if err != nil || !ok {
		return err != nil, rest, err
	}
	if err := kernelvm.ParseSpec(kf.kernel); err != nil {
		return true, nil, badInput("tfolab report: --kernel: %v", err)
	}
	// Bad report arguments are refused here, before a VM boots: the
	// same parse the guest's report does, without running anything.
	if err := checkReportArgs(rest); err != nil {
		return true, nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, a ...any) {
		fmt.Printf("tfolab report: "+format+"\n", a...)
	}
	k, err := kernelvm.Resolve(ctx, kf.kernel, kf.cache, logf)
	if err != nil {
		if errors.Is(err, kernelvm.ErrBadKernel) {
			return true, nil, badInput("tfolab report: --kernel %s: %v", kf.kernel, err)
		}
		return true, nil, fmt.Errorf("tfolab report: --kernel %s: %w", kf.kernel, err)
	}
	self, err := os.Executable()
	if err != nil {
		return true, nil, fmt.Errorf("tfolab report: %w", err)
	}
	cwd, _ := os.Getwd()
	prefix := "[" + kernelvm.Slug(kf.kernel) + "] "
	start := time.Now()
	res, err := kernelvm.Run(ctx, kernelvm.Config{
		Kernel: k, Engine: kf.engine, VCPUs: kf.vcpus, MemoryMB: kf.memory,
		Binary: self, Args: rest, Dir: cwd, Out: kf.out, DefaultParallel: report.DefaultParallel,
		Console: prefixWriter{prefix}, Logf: logf,
	})
	if err != nil {
		switch {
		case errors.Is(err, kernelvm.ErrNoQEMU), errors.Is(err, kernelvm.ErrBoot),
			errors.Is(err, kernelvm.ErrKernel), errors.Is(err, kernelvm.ErrBadKernel):
			return true, nil, exitError{2, fmt.Errorf("tfolab report: --kernel %s: %w", kf.kernel, err)}
		}
		return true, nil, fmt.Errorf("tfolab report: --kernel %s: %w", kf.kernel, err)
	}
	fmt.Printf("tfolab report: %s (%s) under %s, %d vCPUs: booted in %v, report %v inside, %v in all; report in %s\n",
		kf.kernel, k.Release, res.Engine, res.VCPUs, res.Boot.Round(100*time.Millisecond),
		res.Guest.Report.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond), kf.out)
	if res.ExitCode != 0 {
		return true, nil, exitError{res.ExitCode, fmt.Errorf("tfolab report: --kernel %s: the report inside exited %d", kf.kernel, res.ExitCode)}
	}
	return true, nil, nil
}

// checkReportArgs parses report's own flags the way runReport does, to
// refuse bad input before a VM boots (profiles are read by the guest).
func checkReportArgs(args []string) error {
	fs := newFlags("report")
	var f files
	fs.Var(&f, "profile", "")
	fs.Var(&f, "client-profile", "")
	fs.Var(&f, "server-profile", "")
	fs.Var(&f, "baseline-profile", "")
	fs.Duration("rtt", 0, "")
	labels := fs.String("labels", "", "")
	parallel := fs.Int("parallel", 1, "")
	if err := fs.Parse(args); err != nil {
		return badInput("tfolab report: %v\nusage: tfolab %s", err, reportUsage)
	}
	if fs.NArg() > 0 {
		return badInput("tfolab report: unexpected argument %q", fs.Arg(0))
	}
	if *parallel < 1 {
		return badInput("tfolab report: --parallel %d: want 1 or more", *parallel)
	}
	for _, p := range f {
		if p != "default" && !exists(p) {
			return badInput("tfolab report: profile %s: no such file or directory", p)
		}
	}
	_, err := labelSelector(*labels)
	return err
}

// prefixWriter prints each guest line with the kernel's name before it.
type prefixWriter struct{ prefix string }

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Print(p.prefix + line)
		}
	}
	return len(b), nil
}

// runMatrix reads one report per kernel and writes the matrix.
func runMatrix(args []string) error {
	fs := newFlags("matrix")
	out := fs.String("out", filepath.Join("out", "report"), "folder for matrix.md and matrix.json")
	if err := fs.Parse(args); err != nil {
		return badInput("tfolab matrix: %v\nusage: tfolab %s", err, matrixUsage)
	}
	if fs.NArg() < 1 {
		return badInput("usage: tfolab %s", matrixUsage)
	}
	var cols []report.MatrixColumn
	for _, p := range fs.Args() {
		r, err := report.Read(p)
		if err != nil {
			return badInput("tfolab matrix: %v", err)
		}
		cols = append(cols, report.MatrixColumn{Name: kernelName(r), Report: r})
	}
	m := report.BuildMatrix(cols)
	md, js, err := report.WriteMatrix(m, *out)
	if err != nil {
		return fmt.Errorf("tfolab matrix: %w", err)
	}
	fmt.Printf("tfolab matrix: %d kernels, %d scenarios, %d differ: %s, %s\n", len(cols), len(m.Rows), len(m.Differ), md, js)
	return nil
}

// kernelName names a column: the VM's kernel spec ("debian:6.12") or
// "host"; the matrix shows each column's release beside it.
func kernelName(r *report.Report) string {
	if r.VM != "" {
		if spec, _, ok := strings.Cut(r.VM, " "); ok {
			return spec
		}
	}
	return "host"
}
