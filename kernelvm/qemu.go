package kernelvm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Errors that are the user's environment, not a TFO finding: exit 2.
var (
	ErrNoQEMU = errors.New("QEMU is missing")
	ErrBoot   = errors.New("the kernel did not boot")
	ErrKernel = errors.New("the kernel lacks what the lab needs")
)

// QEMU is the emulator binary (Debian's qemu-system-x86).
const QEMU = "qemu-system-x86_64"

// Busybox is the static busybox the initramfs carries (busybox-static).
const Busybox = "/bin/busybox"

// Engines.
const (
	KVM = "KVM"
	TCG = "TCG"
)

// KVMUsable reports whether this process can create a KVM virtual
// machine: /dev/kvm opens, speaks API 12 and KVM_CREATE_VM succeeds.
func KVMUsable() bool {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	const kvmGetAPIVersion, kvmCreateVM = 0xAE00, 0xAE01
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmGetAPIVersion, 0)
	if errno != 0 || v != 12 {
		return false
	}
	vm, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), kvmCreateVM, 0)
	if errno != 0 {
		return false
	}
	unix.Close(int(vm))
	return true
}

// Config is one VM run of `tfolab report`.
type Config struct {
	Kernel Kernel
	// Engine is KVM or TCG; empty: KVM when usable, else TCG.
	Engine string
	// VCPUs (0: the host's CPUs) and MemoryMB (0: 2048).
	VCPUs, MemoryMB int
	// Binary is the tfolab executable the guest runs (this one).
	Binary string
	// Args are `tfolab report`'s arguments, without --out; Dir the
	// working folder they are relative to (the host's, seen read-only).
	Args []string
	Dir  string
	// DefaultParallel is the report's default scenarios at a time, scaled
	// inside the guest by its measured speed (unless Args has --parallel).
	DefaultParallel int
	// Out is the host folder the report lands in.
	Out string
	// Console gets the guest's output, line by line; Logf the host
	// side's steps.
	Console io.Writer
	Logf    func(string, ...any)
	// BootTimeout bounds the time to the guest's first line of its own
	// (0: 5 minutes); the whole run is bounded by ctx.
	BootTimeout time.Duration
}

// Job is what the guest reads from job.json.
type Job struct {
	Args   []string `json:"args"`
	Dir    string   `json:"dir"`
	Engine string   `json:"engine"`
	VCPUs  int      `json:"vcpus"`
	Spec   string   `json:"kernel_spec"`
	// HostCalibration is Calibrate's time on the host; DefaultParallel
	// the report's own default. Without --parallel in Args the guest runs
	// DefaultParallel scaled by how much slower it measures (GuestParallel).
	HostCalibration time.Duration `json:"host_calibration_ns"`
	DefaultParallel int           `json:"default_parallel"`
}

// Result is what a VM run measured.
type Result struct {
	Kernel Kernel `json:"kernel"`
	Engine string `json:"engine"`
	VCPUs  int    `json:"vcpus"`
	// Boot is host wall time from QEMU's start to the guest's PID 1;
	// Run the whole VM's life.
	Boot time.Duration `json:"boot_ns"`
	Run  time.Duration `json:"run_ns"`
	// Guest is what the guest measured about itself.
	Guest GuestInfo `json:"guest"`
	// ExitCode is the report's inside the guest.
	ExitCode int `json:"exit_code"`
}

// QEMUArgs builds QEMU's command line. job is the host folder shared
// read-write with the guest; initrd the initramfs.
func QEMUArgs(c Config, initrd, job string) []string {
	a := []string{
		"-name", "tfolab-" + Slug(c.Kernel.Spec),
		"-nodefaults", "-no-user-config", "-no-reboot",
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-nic", "none",
	}
	if c.Engine == KVM {
		a = append(a, "-accel", "kvm", "-cpu", "host")
	} else {
		a = append(a, "-accel", "tcg,thread=multi", "-cpu", "max")
	}
	a = append(a,
		"-smp", strconv.Itoa(c.VCPUs), "-m", strconv.Itoa(c.MemoryMB),
		"-kernel", c.Kernel.Image, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init",
		"-fsdev", "local,id="+TagRoot+",path=/,readonly=on,security_model=none,multidevs=remap",
		"-device", "virtio-9p-pci,fsdev="+TagRoot+",mount_tag="+TagRoot,
		"-fsdev", "local,id="+TagJob+",path="+job+",security_model=none",
		"-device", "virtio-9p-pci,fsdev="+TagJob+",mount_tag="+TagJob,
	)
	if c.Kernel.ModRoot != "" {
		a = append(a,
			"-fsdev", "local,id="+TagKernel+",path="+c.Kernel.ModRoot+",readonly=on,security_model=none,multidevs=remap",
			"-device", "virtio-9p-pci,fsdev="+TagKernel+",mount_tag="+TagKernel)
	}
	return a
}

// Run boots the kernel, runs the report inside and moves it to c.Out.
// Cancelling ctx stops the VM and removes the job folder: nothing is
// left behind.
func Run(ctx context.Context, c Config) (Result, error) {
	logf := c.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if c.Console == nil {
		c.Console = io.Discard
	}
	qemu, err := exec.LookPath(QEMU)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %s not found (install Debian's qemu-system-x86: make deps)", ErrNoQEMU, QEMU)
	}
	if c.Engine == KVM && !KVMUsable() {
		return Result{}, fmt.Errorf("%w: --engine kvm: /dev/kvm is missing or cannot create a VM", ErrNoQEMU)
	}
	if c.Engine == "" && KVMUsable() {
		c.Engine = KVM
		res, err := runOnce(ctx, c, qemu, logf)
		if !errors.Is(err, errKVM) {
			return res, err
		}
		// /dev/kvm opens and creates a VM, yet QEMU cannot run one (a
		// nested or partial KVM): TCG then.
		logf("KVM is present but cannot run this VM (%v): TCG instead", oneLine(err.Error()))
		c.Engine = TCG
	}
	if c.Engine == "" {
		c.Engine = TCG
	}
	return runOnce(ctx, c, qemu, logf)
}

// errKVM marks a VM that KVM failed to run before the guest's init.
var errKVM = errors.New("KVM failed")

func runOnce(ctx context.Context, c Config, qemu string, logf func(string, ...any)) (Result, error) {
	if c.VCPUs <= 0 {
		c.VCPUs = runtime.NumCPU()
	}
	if c.MemoryMB <= 0 {
		c.MemoryMB = 2048
	}
	if c.BootTimeout <= 0 {
		c.BootTimeout = 5 * time.Minute
	}
	res := Result{Kernel: c.Kernel, Engine: c.Engine, VCPUs: c.VCPUs, ExitCode: -1}
	if err := os.MkdirAll(filepath.Dir(c.Out), 0o755); err != nil {
		return res, fmt.Errorf("vm: output folder: %w", err)
	}
	job, err := os.MkdirTemp(filepath.Dir(c.Out), ".vm-"+Slug(c.Kernel.Spec)+"-")
	if err != nil {
		return res, fmt.Errorf("vm: job folder: %w", err)
	}
	defer os.RemoveAll(job)
	if job, err = filepath.Abs(job); err != nil {
		return res, fmt.Errorf("vm: job folder: %w", err)
	}
	if err := os.Chmod(job, 0o755); err != nil {
		return res, fmt.Errorf("vm: job folder: %w", err)
	}
	if err := linkOrCopy(c.Binary, filepath.Join(job, "tfolab")); err != nil {
		return res, fmt.Errorf("vm: the guest's tfolab: %w", err)
	}
	if err := os.Mkdir(filepath.Join(job, "out"), 0o755); err != nil {
		return res, fmt.Errorf("vm: %w", err)
	}
	jb, _ := json.Marshal(Job{Args: c.Args, Dir: c.Dir, Engine: c.Engine, VCPUs: c.VCPUs, Spec: c.Kernel.Spec,
		HostCalibration: Calibrate(), DefaultParallel: c.DefaultParallel})
	if err := os.WriteFile(filepath.Join(job, "job.json"), jb, 0o644); err != nil {
		return res, fmt.Errorf("vm: %w", err)
	}
	initrd := filepath.Join(job, "initramfs.cpio")
	f, err := os.Create(initrd)
	if err != nil {
		return res, fmt.Errorf("vm: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = BuildInitramfs(bw, Busybox, c.Kernel.ModRoot, c.Kernel.Release, KeepDirs(c.Dir)...)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, fmt.Errorf("vm: kernel %s: %w", c.Kernel.Spec, err)
	}

	args := QEMUArgs(c, initrd, job)
	logf("booting %s (%s) in QEMU under %s, %d vCPUs, %d MiB", c.Kernel.Spec, c.Kernel.Release, c.Engine, c.VCPUs, c.MemoryMB)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(runCtx, qemu, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, fmt.Errorf("vm: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("%w: %s: %v", ErrNoQEMU, qemu, err)
	}
	up := make(chan struct{})
	var tail []string
	var tailMu sync.Mutex
	var initFailed, unsupported, kvmFailed string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		upSeen := false
		for sc.Scan() {
			line := strings.TrimRight(strings.ReplaceAll(sc.Text(), "\r", ""), " ")
			if line == "" {
				continue
			}
			tailMu.Lock()
			tail = append(tail, line)
			if len(tail) > 30 {
				tail = tail[1:]
			}
			tailMu.Unlock()
			switch {
			case strings.HasPrefix(line, "tfolab-vm: up") && !upSeen:
				upSeen = true
				res.Boot = time.Since(start)
				close(up)
			case strings.HasPrefix(line, "tfolab-vm: init: "):
				initFailed = strings.TrimPrefix(line, "tfolab-vm: init: ")
			case strings.Contains(line, "KVM internal error") && !upSeen:
				kvmFailed = line
				cancel()
			case strings.HasPrefix(line, "tfolab-vm: unsupported: "):
				unsupported = strings.TrimPrefix(line, "tfolab-vm: unsupported: ")
			}
			fmt.Fprintln(c.Console, line)
		}
	}()
	waitErr := make(chan error, 1)
	go func() { <-done; waitErr <- cmd.Wait() }()
	lastLines := func() string {
		tailMu.Lock()
		defer tailMu.Unlock()
		return strings.Join(tail[max(0, len(tail)-8):], "\n  ")
	}
	bootTimer := time.NewTimer(c.BootTimeout)
	defer bootTimer.Stop()
	var werr error
	select {
	case <-up:
		werr = <-waitErr
	case werr = <-waitErr:
	case <-bootTimer.C:
		cancel()
		<-waitErr
		return res, fmt.Errorf("%w: %s (%s): no sign of the guest's init after %v under %s; last console lines:\n  %s",
			ErrBoot, c.Kernel.Spec, c.Kernel.Release, c.BootTimeout, c.Engine, lastLines())
	}
	res.Run = time.Since(start)
	if c.Engine == KVM && res.Boot == 0 && ctx.Err() == nil {
		select {
		case <-up:
		default:
			if kvmFailed == "" {
				kvmFailed = lastLines()
			}
			return res, fmt.Errorf("%w: %w: %s", ErrBoot, errKVM, kvmFailed)
		}
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("vm: %w (the VM was stopped)", ctx.Err())
	}
	select {
	case <-up:
	default:
		if initFailed != "" {
			return res, fmt.Errorf("%w: %s (%s): the initramfs failed: %s; last console lines:\n  %s", ErrBoot, c.Kernel.Spec, c.Kernel.Release, initFailed, lastLines())
		}
		return res, fmt.Errorf("%w: %s (%s): QEMU exited (%v) before the guest's init ran; last console lines:\n  %s", ErrBoot, c.Kernel.Spec, c.Kernel.Release, werr, lastLines())
	}
	if gi, err := os.ReadFile(filepath.Join(job, "out", GuestInfoFile)); err == nil {
		_ = json.Unmarshal(gi, &res.Guest)
	}
	if unsupported != "" {
		return res, fmt.Errorf("%w: %s (%s): %s", ErrKernel, c.Kernel.Spec, c.Kernel.Release, unsupported)
	}
	b, err := os.ReadFile(filepath.Join(job, "out", ExitCodeFile))
	if err != nil {
		return res, fmt.Errorf("vm: %s: the guest wrote no exit code (QEMU: %v); last console lines:\n  %s", c.Kernel.Spec, werr, lastLines())
	}
	if res.ExitCode, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		return res, fmt.Errorf("vm: %s: bad exit code %q", c.Kernel.Spec, b)
	}
	// Bring the report home.
	src := filepath.Join(job, "out", "report")
	if _, err := os.Stat(src); err == nil {
		if err := os.RemoveAll(c.Out); err != nil {
			return res, fmt.Errorf("vm: %w", err)
		}
		if err := os.Rename(src, c.Out); err != nil {
			return res, fmt.Errorf("vm: bringing the report back: %w", err)
		}
	} else if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return res, fmt.Errorf("vm: %w", err)
	}
	rb, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(c.Out, VMFile), append(rb, '\n'), 0o644); err != nil {
		return res, fmt.Errorf("vm: %w", err)
	}
	return res, nil
}

// VMFile is written beside the report: the kernel, engine, vCPUs and
// what the run measured (Result).
const VMFile = "vm.json"

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
