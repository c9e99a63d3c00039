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
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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

// Files the guest writes into the job's out/ folder.
const (
	ExitCodeFile  = "exit-code"
	GuestInfoFile = "guest.json"
)

// GuestInfo is what the guest measured about itself before the report.
type GuestInfo struct {
	Release string `json:"release"`
	CPUs    int    `json:"cpus"`
	// UptimeAtInit is the guest's uptime when its PID 1 started: the
	// boot's length in guest time.
	UptimeAtInit time.Duration `json:"uptime_at_init_ns"`
	// SchedLatency is the wake-up lateness of a 1 ms sleep, measured
	// inside the guest (median and 99th percentile of 200) while idle.
	SchedLatencyP50 time.Duration `json:"sched_latency_p50_ns"`
	SchedLatencyP99 time.Duration `json:"sched_latency_p99_ns"`
	// Preload is the time the lab's modules took to load before the
	// report; Modules the modules loaded after it.
	Preload time.Duration `json:"preload_ns"`
	Modules []string      `json:"modules,omitempty"`
	// Calibration is Calibrate's time in the guest, HostCalibration the
	// host's; Parallel the scenarios at a time the report ran.
	Calibration     time.Duration `json:"calibration_ns"`
	HostCalibration time.Duration `json:"host_calibration_ns"`
	Parallel        int           `json:"parallel"`
	// Report is the report's wall time inside the guest.
	Report time.Duration `json:"report_ns"`
}

// Preload are the modules (Debian's names) the lab's namespaces, veths
// and firewalls need: loaded before the report starts. A kernel that has
// one built in, or lacks it, is fine: modprobe -a -q goes on.
var Preload = []string{
	"veth", "nf_tables", "nft_compat", "x_tables", "nf_conntrack", "nf_nat",
	"xt_bpf", "xt_comment", "xt_connmark", "xt_mark", "xt_conntrack", "xt_tcpudp",
	"xt_TCPOPTSTRIP", "xt_NFQUEUE", "nfnetlink_queue", "xt_nat", "xt_REJECT",
	"ipt_REJECT", "ip6t_REJECT", "nf_reject_ipv4", "nf_reject_ipv6",
	"ip_tables", "ip6_tables", "nft_ct", "nft_reject_inet", "nft_chain_nat", "nft_nat",
	"nft_queue", "nft_limit", "nfnetlink",
}

func loadedModules() []string {
	b, err := os.ReadFile("/proc/modules")
	if err != nil {
		return nil
	}
	var mods []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			mods = append(mods, f[0])
		}
	}
	sort.Strings(mods)
	return mods
}

// Guest is the VM's PID 1 (`tfolab vm-guest JOB`): it mounts what the
// lab needs, checks that the kernel has network namespaces and veth,
// runs `tfolab report` as a child with the job's arguments, writes its
// exit code and powers the VM off. It never returns.
func Guest(jobPath string) {
	code := guest(jobPath)
	out := filepath.Join(filepath.Dir(jobPath), "out")
	_ = os.WriteFile(filepath.Join(out, ExitCodeFile), []byte(strconv.Itoa(code)+"\n"), 0o644)
	fmt.Printf("tfolab-vm: exit %d\n", code)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	os.Exit(code)
}

func guest(jobPath string) int {
	var info GuestInfo
	info.UptimeAtInit = uptime()
	var u unix.Utsname
	_ = unix.Uname(&u)
	info.Release = unix.ByteSliceToString(u.Release[:])
	info.CPUs = runtime.NumCPU()
	fmt.Printf("tfolab-vm: up: kernel %s, %d CPUs, PID 1 at %.2f s of guest time\n", info.Release, info.CPUs, info.UptimeAtInit.Seconds())
	b, err := os.ReadFile(jobPath)
	if err != nil {
		fmt.Printf("tfolab-vm: unsupported: cannot read the job: %v\n", err)
		return 2
	}
	var job Job
	if err := json.Unmarshal(b, &job); err != nil {
		fmt.Printf("tfolab-vm: unsupported: bad job: %v\n", err)
		return 2
	}
	for _, m := range []struct{ src, dst, typ, opts string }{
		{"devpts", "/dev/pts", "devpts", "newinstance,ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", ""},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.typ, 0, m.opts); err != nil {
			fmt.Printf("tfolab-vm: mount %s on %s: %v\n", m.typ, m.dst, err)
		}
	}
	_ = os.MkdirAll("/run/netns", 0o755)
	_ = unix.Sethostname([]byte("tfolab-vm"))
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	if err := checkKernel(); err != nil {
		fmt.Printf("tfolab-vm: unsupported: %v\n", err)
		return 2
	}
	// Load the modules the lab's topologies and middleboxes use now,
	// not under the report's first iptables-restore: the kernel's own
	// modprobe reads them over 9p and inflates them, which takes seconds
	// under TCG while every other lab waits on the xtables lock.
	t := time.Now()
	// -q: a module this kernel lacks or has built in is no error.
	if out, err := exec.Command(GuestModprobe, append([]string{"-a", "-q"}, Preload...)...).CombinedOutput(); err != nil && len(out) > 0 {
		fmt.Printf("tfolab-vm: preloading modules: %v: %s\n", err, strings.TrimSpace(string(out)))
	}
	info.Preload = time.Since(t)
	fmt.Printf("tfolab-vm: %d modules loaded in %v\n", len(loadedModules()), info.Preload.Round(time.Millisecond))
	info.SchedLatencyP50, info.SchedLatencyP99 = schedLatency(200, time.Millisecond)
	fmt.Printf("tfolab-vm: scheduling latency of a 1 ms sleep: %v median, %v p99\n", info.SchedLatencyP50, info.SchedLatencyP99)
	info.Calibration, info.HostCalibration = Calibrate(), job.HostCalibration
	if p, ok := parallelArg(job.Args); ok {
		info.Parallel = p
	} else if job.DefaultParallel > 0 {
		info.Parallel = GuestParallel(job.DefaultParallel, job.HostCalibration, info.Calibration)
		job.Args = append(job.Args, "--parallel", strconv.Itoa(info.Parallel))
		fmt.Printf("tfolab-vm: a fixed CPU workload took %v here, %v on the host (%.1f×): %d scenarios at a time\n",
			info.Calibration.Round(time.Millisecond), job.HostCalibration.Round(time.Millisecond),
			float64(info.Calibration)/float64(max(1, job.HostCalibration)), info.Parallel)
	}
	out := filepath.Join(filepath.Dir(jobPath), "out")
	writeInfo := func() {
		ib, _ := json.MarshalIndent(info, "", "  ")
		_ = os.WriteFile(filepath.Join(out, GuestInfoFile), ib, 0o644)
	}
	writeInfo()

	self := filepath.Join(filepath.Dir(jobPath), "tfolab")
	args := append([]string{self, "report"}, job.Args...)
	args = append(args, "--out", filepath.Join(out, "report"))
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "TERM=dumb", "LANG=C.UTF-8",
		"TFOLAB_VM=" + fmt.Sprintf("%s %s, %d vCPUs", job.Spec, job.Engine, job.VCPUs),
	}
	if info.HostCalibration > 0 && info.Calibration > info.HostCalibration {
		// CPU budgets of programs (lab/proc.CPUScaleEnv) scale with the
		// measured slowdown.
		env = append(env, fmt.Sprintf("TFOLAB_CPU_SCALE=%.2f", float64(info.Calibration)/float64(info.HostCalibration)))
	}
	if v := os.Getenv("CI"); v != "" {
		env = append(env, "CI="+v)
	}
	// The report's output goes through a pipe: not a terminal, so its
	// progress is plain lines the host can pass on.
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Printf("tfolab-vm: unsupported: %v\n", err)
		return 2
	}
	dir := job.Dir
	if _, err := os.Stat(dir); err != nil {
		dir = "/"
	}
	start := time.Now()
	p, err := os.StartProcess(self, args, &os.ProcAttr{Dir: dir, Env: env, Files: []*os.File{nil, w, w}})
	w.Close()
	if err != nil {
		fmt.Printf("tfolab-vm: unsupported: cannot start the report: %v\n", err)
		return 2
	}
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(os.Stdout, r); close(copied) }()
	// PID 1 reaps every orphan; the report's own status ends the loop.
	code := 1
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			break
		}
		if pid == p.Pid {
			switch {
			case ws.Exited():
				code = ws.ExitStatus()
			case ws.Signaled():
				code = 128 + int(ws.Signal())
			}
			break
		}
	}
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	info.Report = time.Since(start)
	info.Modules = loadedModules()
	writeInfo()
	return code
}

// checkKernel creates a network namespace and a veth pair in it: the
// two things every lab stands on.
func checkKernel() error {
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return errors.New("no network namespaces (CONFIG_NET_NS)")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// This thread is discarded, not restored: never unlocked.
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("network namespaces: %v", err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			errc <- fmt.Errorf("no network namespaces: unshare(CLONE_NEWNET): %v", err)
			return
		}
		defer ns.Close()
		err = netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tfocheck0"}, PeerName: "tfocheck1"})
		if err != nil {
			errc <- fmt.Errorf("no veth (CONFIG_VETH, module veth): %v", err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// schedLatency measures how late a sleep of d wakes up, n times.
func schedLatency(n int, d time.Duration) (p50, p99 time.Duration) {
	late := make([]time.Duration, 0, n)
	for range n {
		t := time.Now()
		time.Sleep(d)
		late = append(late, max(0, time.Since(t)-d))
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	return late[n/2], late[n*99/100]
}

func uptime() time.Duration {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	s, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// Calibrate times a fixed CPU-bound workload (hashing and allocation, as
// the lab's Go code does): the best of three runs. The host and the guest
// run it alike, and the ratio is how much slower the guest is.
func Calibrate() time.Duration {
	best := time.Duration(0)
	for range 3 {
		t := time.Now()
		calibrationWork()
		if d := time.Since(t); best == 0 || d < best {
			best = d
		}
	}
	return best
}

var calibrationSink uint64

func calibrationWork() {
	m := make(map[uint64]uint64, 1<<14)
	x := uint64(88172645463325252)
	for i := range 1 << 20 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		m[x&(1<<14-1)] += uint64(i)
	}
	buf := make([]byte, 0, 64)
	for i := range 1 << 15 {
		buf = strconv.AppendInt(buf[:0], int64(i)*int64(x), 16)
		x += uint64(len(buf))
	}
	calibrationSink = x + m[1]
}

// GuestParallel is how many scenarios the guest runs at a time: the
// report's default divided by how much slower the guest measured than
// the host, at least 1. Under KVM the ratio is about 1; under TCG the
// emulation's cost is measured, not assumed.
func GuestParallel(defaultParallel int, host, guest time.Duration) int {
	if host <= 0 || guest <= 0 {
		return defaultParallel
	}
	slow := float64(guest) / float64(host)
	p := int(float64(defaultParallel)/slow + 0.5)
	return max(1, min(defaultParallel, p))
}

// parallelArg finds --parallel N (or -parallel=N) among report's args.
func parallelArg(args []string) (int, bool) {
	for i, a := range args {
		name, val, has := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "parallel" || !strings.HasPrefix(a, "-") {
			continue
		}
		if !has && i+1 < len(args) {
			val = args[i+1]
		}
		if n, err := strconv.Atoi(val); err == nil {
			return n, true
		}
	}
	return 0, false
}
