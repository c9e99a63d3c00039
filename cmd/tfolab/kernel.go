package main

// The report under another kernel: `tfolab report --kernel K` boots K in
// QEMU (package kernelvm) and runs the report inside; `tfolab vm-guest`
// is the guest's PID 1; `tfolab matrix` puts several kernels' reports
// side by side.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/kernelvm"
	"github.com/tfolab/tfolab/report"
)

// vmFlags are report's flags that concern the VM; the rest go to the
// report inside it.
type vmFlags struct {
	kernel, cache, engine string
	vcpus, memory         int
}

// addVMFlags puts the VM's flags on report.
func addVMFlags(c *cobra.Command, v *vmFlags) {
	f := c.Flags()
	f.StringVar(&v.kernel, "kernel", "", "run the report inside this kernel in a VM: debian:6.1, debian:6.12, a vmlinuz path, or host (no VM)")
	f.StringVar(&v.cache, "kernel-cache", kernelvm.DefaultCache, "folder for downloaded and unpacked kernels")
	f.StringVar(&v.engine, "engine", "auto", "the VM's accelerator: kvm, tcg or auto (KVM when /dev/kvm works)")
	f.IntVar(&v.vcpus, "vcpus", 0, "the VM's CPUs (0: the host's, at most 4)")
	f.IntVar(&v.memory, "memory", 0, "the VM's memory in MiB (0: a default sized to the parallelism)")
	flagCompletion(c, "kernel", completeWords("debian:6.1", "debian:6.12", "host"))
	flagCompletion(c, "kernel-cache", completeDirs)
	flagCompletion(c, "engine", completeWords("auto", "kvm", "tcg"))
	flagCompletion(c, "vcpus", completeWords())
	flagCompletion(c, "memory", completeWords())
}

// inVM says whether the report runs in a VM, checking the VM's flags.
func (v *vmFlags) inVM(c *cobra.Command) (bool, error) {
	if v.kernel == "" || v.kernel == "host" {
		return false, nil
	}
	switch strings.ToUpper(v.engine) {
	case "", "AUTO":
		v.engine = ""
	case "KVM", "TCG":
		v.engine = strings.ToUpper(v.engine)
	default:
		return false, badUsage(c, "--engine %q: want kvm, tcg or auto", v.engine)
	}
	if v.vcpus < 0 || v.memory < 0 {
		return false, badUsage(c, "--vcpus and --memory: want 0 (automatic) or more")
	}
	if err := kernelvm.ParseSpec(v.kernel); err != nil {
		return false, badInput("tfolab report: --kernel: %v", err)
	}
	return true, nil
}

// guestArgs are the report's own flags as the guest's tfolab report
// takes them (--out stays with the host: the VM brings the report back).
func guestArgs(c *cobra.Command, o reportFlags) []string {
	var args []string
	for _, p := range []struct {
		flag  string
		files []string
	}{{"profile", o.all}, {"client-profile", o.client}, {"server-profile", o.server}, {"baseline-profile", o.baseline}} {
		for _, f := range p.files {
			args = append(args, "--"+p.flag, f)
		}
	}
	if o.rtt != 0 {
		args = append(args, "--rtt", o.rtt.String())
	}
	if o.labels != "" {
		args = append(args, "--labels", o.labels)
	}
	if c.Flags().Changed("parallel") {
		args = append(args, "--parallel", fmt.Sprint(o.parallel))
	}
	return args
}

// reportInVM boots the kernel --kernel names and runs the report inside
// it, with the report's own flags (already checked here, before a VM
// boots); the report comes back to --out.
func reportInVM(c *cobra.Command, o reportFlags) error {
	kf := o.vm
	ctx, stop := interruptible()
	defer stop()
	logf := func(format string, a ...any) {
		fmt.Printf("tfolab report: "+format+"\n", a...)
	}
	k, err := kernelvm.Resolve(ctx, kf.kernel, kf.cache, logf)
	if err != nil {
		if errors.Is(err, kernelvm.ErrBadKernel) {
			return badInput("tfolab report: --kernel %s: %v", kf.kernel, err)
		}
		return fmt.Errorf("tfolab report: --kernel %s: %w", kf.kernel, err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("tfolab report: %w", err)
	}
	cwd, _ := os.Getwd()
	prefix := "[" + kernelvm.Slug(kf.kernel) + "] "
	start := time.Now()
	res, err := kernelvm.Run(ctx, kernelvm.Config{
		Kernel: k, Engine: kf.engine, VCPUs: kf.vcpus, MemoryMB: kf.memory,
		Binary: self, Args: guestArgs(c, o), Dir: cwd, Out: o.out, DefaultParallel: report.DefaultParallel,
		Console: prefixWriter{prefix}, Logf: logf,
	})
	if err != nil {
		switch {
		case errors.Is(err, kernelvm.ErrNoQEMU), errors.Is(err, kernelvm.ErrBoot),
			errors.Is(err, kernelvm.ErrKernel), errors.Is(err, kernelvm.ErrBadKernel):
			return badInput("tfolab report: --kernel %s: %v", kf.kernel, err)
		}
		return fmt.Errorf("tfolab report: --kernel %s: %w", kf.kernel, err)
	}
	fmt.Printf("tfolab report: %s (%s) under %s, %d vCPUs: booted in %v, report %v inside, %v in all; report in %s\n",
		kf.kernel, k.Release, res.Engine, res.VCPUs, res.Boot.Round(100*time.Millisecond),
		res.Guest.Report.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond), o.out)
	if res.ExitCode != 0 {
		return exitError{res.ExitCode, fmt.Errorf("tfolab report: --kernel %s: the report inside exited %d", kf.kernel, res.ExitCode)}
	}
	return nil
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

func newMatrixCmd() *cobra.Command {
	var out string
	c := command("matrix", groupResults, argsBetween(1, 1<<20, "one report.json per kernel"), completeFiles("json"),
		func(_ *cobra.Command, args []string) error { return runMatrix(args, out) })
	c.Flags().StringVar(&out, "out", filepath.Join("out", "report"), "folder for matrix.md and matrix.json")
	flagCompletion(c, "out", completeDirs)
	return c
}

// newVMGuestCmd is the VM's PID 1; hidden from --help.
func newVMGuestCmd() *cobra.Command {
	c := command("vm-guest", "", argsBetween(1, 1, "JOB"), nil, func(_ *cobra.Command, args []string) error {
		if os.Getpid() != 1 {
			return badInput("tfolab vm-guest: runs only as a VM's PID 1 (tfolab report --kernel K starts it)")
		}
		kernelvm.Guest(args[0])
		return nil
	})
	c.Hidden = true
	return c
}

// runMatrix reads one report per kernel and writes the matrix.
func runMatrix(paths []string, out string) error {
	var cols []report.MatrixColumn
	for _, p := range paths {
		r, err := report.Read(p)
		if err != nil {
			return badInput("tfolab matrix: %v", err)
		}
		cols = append(cols, report.MatrixColumn{Name: kernelName(r), Report: r})
	}
	m := report.BuildMatrix(cols)
	md, js, err := report.WriteMatrix(m, out)
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
