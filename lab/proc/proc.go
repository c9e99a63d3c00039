// Package proc runs real peers (nginx, HAProxy, curl, Python clients)
// inside lab network namespaces, waits until they are ready, and stops them
// without leaving processes, zombies or temp dirs behind.
//
// The package does not know about labs. Start takes a namespace runner, a
// func(func() error) error that runs its argument on an OS thread inside
// the namespace (netnsx.Do bound to a handle, or a lab's runner). Start
// calls it once, only to open /proc/thread-self/ns/net; everything after
// that happens on threads of this package's own:
//
//   - Each process is forked from a dedicated locked OS thread that joins
//     the namespace with setns(2) for the fork, switches back, and stays
//     locked, blocked in waitid(2), until the process has been reaped.
//     Pdeathsig is tied to the thread that forked, not to the process: on a
//     runner's thread it would kill the peer whenever that thread exits
//     (a runner that discards its threads, or any goroutine that later
//     exits locked to it). On the dedicated thread, which cannot exit
//     before the reap, Pdeathsig=SIGKILL means exactly "the peer dies if
//     this program dies", including when it is SIGKILLed and no Go code
//     runs.
//   - Pdeathsig reaches only the direct child. Workers it forked (nginx,
//     HAProxy) survive a killed program; the lab's sweeper finds them by
//     namespace with InNamespace. Within a running program, Stop or the
//     leader's own exit kills the whole group.
//
// Each process runs in its own process group (Setpgid), and the group
// lives and dies with its leader: when the leader exits, for any reason,
// the rest of the group is SIGKILLed. Peers must therefore run in the
// foreground (nginx "daemon off;", HAProxy -db or -W without -D); a member
// that leaves the group (setsid) escapes, and only the namespace sweeper
// will find it. The leader is reaped here; the members that outlive it are
// reaped by PID 1, or here too after EnableSubreaper.
//
// Costs and limits: one locked OS thread per running process. Pdeathsig
// is cleared by the kernel when a set-user-ID or file-capability binary
// is executed; none of the lab's peers is one.
//
// Output (stdout and stderr, combined in one pipe so their order is kept)
// is read continuously, the last MaxOutput bytes kept. Temp dirs carry the
// owner's PID and start time in their names, so that SweepDirs can remove
// those of a killed program.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/tfolab/tfolab/lab/cost"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// DirPlaceholder in Path, Args, Env and Files contents is replaced by
	// the process's temp dir.
	DirPlaceholder = "{dir}"
	// DefaultPATH is the PATH of the minimal environment, and the PATH a
	// program name is looked up in when Env sets none.
	DefaultPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// DefaultStopGrace is how long Stop waits after the graceful signal.
	DefaultStopGrace = 2 * time.Second
	// DefaultReadyTimeout bounds Start's readiness wait when ctx has no
	// deadline.
	DefaultReadyTimeout = 30 * time.Second

	// killTimeout bounds the wait for a SIGKILLed leader to be reaped (only
	// a task stuck in uninterruptible sleep takes longer).
	killTimeout = 5 * time.Second
	// groupTimeout bounds the wait for the rest of the group to die after
	// the leader.
	groupTimeout = 2 * time.Second
	// drainTimeout bounds the wait for the output pipe to reach EOF once
	// the group is dead; only an escaped member can still hold it open.
	drainTimeout = 500 * time.Millisecond
)

// Spec describes a process to start.
type Spec struct {
	// Name is a short name for logs and errors ("nginx"); default: the
	// base name of Path.
	Name string
	// Path is the program: a name looked up in the PATH the process will
	// get (Env's, else DefaultPATH), not in the caller's, so that a pyenv
	// shim or a developer's ~/bin is never picked by accident; or a path
	// containing '/'.
	Path string
	Args []string
	// Env is the whole environment. Nil means a minimal one: PATH (see
	// DefaultPATH), HOME and TMPDIR set to the temp dir. The caller's
	// environment is never inherited.
	Env []string
	// Files are written into the process's fresh temp dir before the start
	// (names relative to it, subdirectories created; mode 0644, dir 0755 so
	// that workers which drop privileges can read them), with "{dir}" in
	// their contents replaced by the dir, so that a config can name its pid
	// file or document root. The temp dir is also the working directory
	// and is removed by Stop.
	Files map[string][]byte
	// Ready says when Start returns; nil: as soon as the process runs.
	Ready Readiness
	// StopSignal is the graceful stop signal sent to the whole group by
	// Stop; default SIGTERM (nginx wants SIGQUIT for a graceful stop).
	StopSignal syscall.Signal
	// StopGrace is how long Stop waits after StopSignal before SIGKILLing
	// the group; default DefaultStopGrace.
	StopGrace time.Duration
	// CPUBudget, if set, bounds the readiness wait by the process's own
	// CPU time rather than by the clock: on a busy machine a program may
	// wait long for a CPU, which is no fault of its own, while one that
	// has used its budget without becoming ready is stuck. ctx still
	// bounds the wall time.
	CPUBudget time.Duration
}

// Process is a started process. Its methods are safe for concurrent use.
type Process struct {
	costs context.Context // the meters its CPU is recorded to when reaped
	name  string
	pid   int
	dir   string
	sig   syscall.Signal
	grace time.Duration
	cmd   *exec.Cmd
	out   *output
	r     *os.File // read end of the output pipe
	nsfd  int      // the namespace, open only during Start; -1: ours

	ended chan struct{} // leader reaped, rest of the group SIGKILLed
	done  chan struct{} // ended, group gone, output drained

	mu       sync.Mutex
	reaped   bool
	stopping bool // our signal has been sent: whatever follows is expected
	selfEnd  bool // ended before any signal of ours
	waited   bool // a Wait call has returned the status
	status   exitStatus
	groupErr error

	stopOnce sync.Once
	stopErr  error
}

type exitStatus struct {
	code   int            // exit code, -1 if signalled
	signal syscall.Signal // 0 unless killed by a signal
}

func (s exitStatus) String() string {
	if s.signal != 0 {
		return "killed by signal " + s.signal.String()
	}
	return fmt.Sprintf("exit status %d", s.code)
}

func (s exitStatus) ok() bool { return s.signal == 0 && s.code == 0 }

// Start starts s inside the namespace that run enters (nil run: the
// caller's namespace) and waits until s.Ready says it is ready, bounded by
// ctx (DefaultReadyTimeout if ctx has no deadline). The process's lifetime
// is not tied to ctx: end it with Stop, which the caller should register
// for teardown right away.
//
// If the process ends before it is ready, or ctx ends first, Start kills
// it, cleans up, and returns an error with its status and the tail of its
// output.
func Start(ctx context.Context, run func(func() error) error, s Spec) (*Process, error) {
	if s.Path == "" {
		return nil, errors.New("proc: Spec.Path is empty")
	}
	name := s.Name
	if name == "" {
		name = filepath.Base(s.Path)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", name, err)
	}
	p := &Process{
		costs: context.WithoutCancel(ctx),
		name:  name,
		sig:   s.StopSignal,
		grace: s.StopGrace,
		out:   newOutput(MaxOutput),
		nsfd:  -1,
		ended: make(chan struct{}),
		done:  make(chan struct{}),
	}
	if p.sig == 0 {
		p.sig = syscall.SIGTERM
	}
	if p.grace <= 0 {
		p.grace = DefaultStopGrace
	}
	if err := p.prepare(s); err != nil {
		if p.dir != "" {
			os.RemoveAll(p.dir)
		}
		return nil, fmt.Errorf("proc: start %s: %w", name, err)
	}
	if err := p.spawn(run); err != nil {
		os.RemoveAll(p.dir)
		return nil, fmt.Errorf("proc: start %s: %w", name, err)
	}
	defer p.closeNS() // the threads that needed it are done with it
	if s.Ready == nil {
		return p, nil
	}
	rctx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, DefaultReadyTimeout)
		defer cancel()
	}
	if s.CPUBudget > 0 {
		var cancel context.CancelCauseFunc
		rctx, cancel = context.WithCancelCause(rctx)
		defer cancel(nil)
		go p.watchCPU(rctx, ScaleCPU(s.CPUBudget), cancel)
	}
	err := s.Ready.wait(rctx, p)
	if cause := context.Cause(rctx); errors.Is(cause, ErrCPUBudget) {
		err = cause
	}
	if err == nil {
		return p, nil
	}
	if errors.Is(err, errOutputClosed) {
		// The pipe closes as the process exits, a moment before it is
		// reaped: give the reaper that moment so the error can say how it
		// ended (a process that merely closed its output is killed).
		waitClosed(p.ended, 200*time.Millisecond)
	}
	p.mu.Lock()
	p.waited = true // the error below reports the status; stop must not
	p.mu.Unlock()
	stopErr := p.stop(syscall.SIGKILL, 0)
	p.mu.Lock()
	se := &StartError{Name: name, Pid: p.pid, Ready: s.Ready.String(), Err: err, Cleanup: stopErr, Tail: p.out.tail(2048)}
	if p.selfEnd {
		se.Ended, se.ExitCode, se.Signal, se.Err = true, p.status.code, p.status.signal, ErrEnded
	}
	p.mu.Unlock()
	return nil, se
}

// ErrCPUBudget is in Start's error (errors.Is) when the process used its
// CPUBudget without becoming ready.
var ErrCPUBudget = errors.New("used its CPU budget without becoming ready")

// watchCPU cancels ctx with ErrCPUBudget once the process has run for
// budget. It looks every cpuPoll, a few times per budget at least.
func (p *Process) watchCPU(ctx context.Context, budget time.Duration, cancel context.CancelCauseFunc) {
	t := time.NewTicker(min(cpuPoll, budget/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.ended:
			return
		case <-t.C:
		}
		st, err := ReadStat(p.pid)
		if err != nil {
			return // gone: the readiness wait sees it end
		}
		if st.CPU >= budget {
			cancel(fmt.Errorf("%w: %v of CPU", ErrCPUBudget, st.CPU))
			return
		}
	}
}

// cpuPoll is how often watchCPU reads the process's CPU time.
const cpuPoll = 100 * time.Millisecond

// StartError is Start's error for a process that was started but never
// became ready. Start has killed it and cleaned up.
type StartError struct {
	Name     string
	Pid      int
	Ready    string         // what Start waited for
	Ended    bool           // the process ended on its own first
	ExitCode int            // when Ended: its exit code, -1 if signalled
	Signal   syscall.Signal // when Ended by a signal
	Tail     string         // the end of its output
	Err      error          // ErrEnded, ctx's error, or why the check failed
	Cleanup  error          // trouble killing or cleaning up, if any
}

func (e *StartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "proc: %s (pid %d) ", e.Name, e.Pid)
	if e.Ended {
		st := exitStatus{code: e.ExitCode, signal: e.Signal}
		fmt.Fprintf(&b, "ended before %s: %s", e.Ready, st)
	} else {
		fmt.Fprintf(&b, "not ready (%s): %v; killed it", e.Ready, e.Err)
	}
	if e.Cleanup != nil {
		fmt.Fprintf(&b, " (and cleanup: %v)", e.Cleanup)
	}
	b.WriteString("\n")
	b.WriteString(tailBlock(e.Tail))
	return b.String()
}

func (e *StartError) Unwrap() error { return e.Err }

func tailBlock(t string) string {
	if t == "" {
		return "(no output)"
	}
	return "output tail:\n" + strings.TrimRight(t, "\n")
}

// prepare resolves the program and writes the temp dir.
func (p *Process) prepare(s Spec) error {
	env := s.Env
	pathEnv := DefaultPATH
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	// Resolve before creating anything, so a missing binary costs nothing.
	if !strings.Contains(s.Path, DirPlaceholder) {
		if _, err := lookPath(s.Path, pathEnv); err != nil {
			return err
		}
	}
	prefix, err := dirPrefix()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", prefix+safeName(p.name)+"-")
	if err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	p.dir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	expand := func(v string) string { return strings.ReplaceAll(v, DirPlaceholder, dir) }
	for rel, content := range s.Files {
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("file name %q is not a local relative path", rel)
		}
		full := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}
		content = bytes.ReplaceAll(content, []byte(DirPlaceholder), []byte(dir))
		if err := os.WriteFile(full, content, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}
	}
	path, err := lookPath(expand(s.Path), pathEnv)
	if err != nil {
		return err
	}
	if env == nil {
		env = []string{"PATH=" + DefaultPATH, "HOME=" + dir, "TMPDIR=" + dir}
	} else {
		env = mapStrings(env, expand)
	}
	p.cmd = &exec.Cmd{
		Path: path,
		Args: append([]string{expand(s.Path)}, mapStrings(s.Args, expand)...),
		Env:  env,
		Dir:  dir,
		// Stdin nil: /dev/null.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	return nil
}

func mapStrings(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func safeName(n string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator || r == '*' || r < ' ' {
			return '_'
		}
		return r
	}, n)
}

// lookPath finds file in the directories of pathEnv, the way the process's
// own shell would, and names the binary and the fix when it is missing.
func lookPath(file, pathEnv string) (string, error) {
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", fmt.Errorf("program %s: %w (install the lab's dependencies with \"make deps\")", file, err)
		}
		// Absolute, because the process runs in its temp dir.
		abs, err := filepath.Abs(file)
		if err != nil {
			return "", fmt.Errorf("program %s: %w", file, err)
		}
		return abs, nil
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		full := filepath.Join(d, file)
		if executable(full) == nil {
			return full, nil
		}
	}
	return "", fmt.Errorf("program %q not found in PATH %s (install the lab's dependencies with \"make deps\"): %w", file, pathEnv, exec.ErrNotFound)
}

func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %w", err, exec.ErrNotFound)
		}
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file: %w", path, exec.ErrNotFound)
	}
	return nil
}

// spawn opens the namespace through run and starts the process from a
// dedicated thread inside it (see the package comment for why).
func (p *Process) spawn(run func(func() error) error) error {
	if run != nil {
		err := run(func() error {
			fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open /proc/thread-self/ns/net: %w", err)
			}
			p.nsfd = fd
			return nil
		})
		if err != nil {
			return fmt.Errorf("enter namespace: %w", err)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		p.closeNS()
		return fmt.Errorf("output pipe: %w", err)
	}
	p.r = r
	p.cmd.Stdout, p.cmd.Stderr = w, w // *os.File: the child gets it directly, no copying goroutine
	started := make(chan error, 1)
	go p.hold(started)
	err = <-started
	w.Close() // the child holds its own copy; EOF comes when the group is gone
	if err != nil {
		r.Close()
		p.closeNS()
		return err
	}
	p.pid = p.cmd.Process.Pid
	go p.out.readFrom(r)
	return nil
}

// hold runs on a thread dedicated to the process for its whole life: it
// forks the process from inside the namespace, waits for its end, kills
// and reaps the group, and closes ended and done.
func (p *Process) hold(started chan<- error) {
	// Locked until the leader is reaped: this is the thread Pdeathsig
	// watches, and a thread the scheduler has back may be discarded by
	// some other goroutine that exits locked to it.
	restore, err := lockInNS(p.nsfd)
	if err != nil {
		started <- err
		return
	}
	if err := p.cmd.Start(); err != nil {
		if restore() {
			runtime.UnlockOSThread()
		}
		started <- err
		return
	}
	pid := p.cmd.Process.Pid
	started <- nil
	// The fork is done; the thread need not stay in the namespace, only
	// alive. If the namespace cannot be restored, the thread stays locked
	// and the runtime discards it when this goroutine ends.
	unlock := restore()

	// Wait for the exit without reaping: while the leader is a zombie its
	// PID, which is the group's ID, cannot be reused, so the group kill
	// below cannot hit a stranger.
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break // on another error, Wait below reports it
		}
	}
	p.mu.Lock()
	_ = syscall.Kill(-pid, syscall.SIGKILL) // ESRCH: nobody else in the group
	werr := p.cmd.Wait()
	cost.Record(p.costs, p.name, p.cmd.ProcessState)
	p.reaped = true
	p.selfEnd = !p.stopping
	p.status = statusOf(p.cmd.ProcessState, werr)
	p.mu.Unlock()
	if unlock {
		runtime.UnlockOSThread()
	}
	close(p.ended)

	gerr := waitGroupGone(pid, groupTimeout)
	p.mu.Lock()
	p.groupErr = gerr
	p.mu.Unlock()

	select {
	case <-p.out.eof:
	case <-time.After(drainTimeout):
		p.r.Close() // an escaped member holds the pipe: stop reading
		<-p.out.eof
	}
	close(p.done)
}

// lockInNS locks the calling goroutine to its thread and moves the
// thread into namespace nsfd (enterNS). On an error the thread is
// unlocked again: enterNS left it where it was.
func lockInNS(nsfd int) (restore func() bool, err error) {
	runtime.LockOSThread()
	restore, err = enterNS(nsfd)
	if err != nil {
		runtime.UnlockOSThread()
	}
	return restore, err
}

// enterNS switches the calling (locked) thread into the namespace nsfd
// (nothing if nsfd < 0) and returns a function that switches it back and
// reports whether it did, i.e. whether the thread may be unlocked. On
// error the thread is where it was.
//
// Restoring, rather than letting the runtime discard the thread, matters:
// the runtime cannot discard the main thread and wedges it instead, and a
// main thread left in a lab namespace would pin that namespace and move
// /proc/self/net and /proc/PID/ns/net of the whole program into it.
func enterNS(nsfd int) (restore func() bool, err error) {
	if nsfd < 0 {
		return func() bool { return true }, nil
	}
	origin, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /proc/thread-self/ns/net: %w", err)
	}
	if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
		unix.Close(origin)
		return nil, fmt.Errorf("enter namespace: setns: %w", err)
	}
	return func() bool {
		defer unix.Close(origin)
		return unix.Setns(origin, unix.CLONE_NEWNET) == nil
	}, nil
}

func statusOf(ps *os.ProcessState, err error) exitStatus {
	if ps == nil {
		return exitStatus{code: -1}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitStatus{code: -1, signal: ws.Signal()}
	}
	return exitStatus{code: ps.ExitCode()}
}

// waitGroupGone waits until no live member of group pgid is left. It reaps
// the members that are its own children (orphans re-parented here after
// EnableSubreaper) and ignores zombies of other parents (PID 1 reaps
// those; they hold nothing and cannot be killed).
func waitGroupGone(pgid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	self := os.Getpid()
	for d := 50 * time.Microsecond; ; d = min(2*d, 5*time.Millisecond) {
		for {
			// Reaps only our children in this group; the leader is gone.
			pid, err := unix.Wait4(-pgid, nil, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		members, err := GroupMembers(pgid)
		if err != nil {
			return err
		}
		var live []int
		for _, m := range members {
			if !m.Zombie() || m.PPID == self {
				live = append(live, m.PID)
			}
		}
		if len(live) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d: members %v still there %v after SIGKILL", pgid, live, timeout)
		}
		time.Sleep(d)
	}
}

func (p *Process) closeNS() {
	if p.nsfd >= 0 {
		unix.Close(p.nsfd)
		p.nsfd = -1
	}
}

// inNamespace runs f on a locked thread inside the process's namespace
// (only during Start, while nsfd is open).
func (p *Process) inNamespace(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		restore, err := lockInNS(p.nsfd)
		if err != nil {
			errc <- err
			return
		}
		err = f()
		if restore() {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Name returns the Spec's name.
func (p *Process) Name() string { return p.name }

// Pid returns the process's PID, which is also its process group ID.
func (p *Process) Pid() int { return p.pid }

// Dir returns the process's temp dir (removed by Stop).
func (p *Process) Dir() string { return p.dir }

// Output returns the combined stdout and stderr so far (the last
// MaxOutput bytes).
func (p *Process) Output() []byte { return p.out.bytes() }

// Done is closed once the process and its whole group have ended and its
// output has been read to the end.
func (p *Process) Done() <-chan struct{} { return p.done }

// WaitLine waits for a line of output matching re (lines already printed
// count) and returns it; it fails if the output ends first or ctx ends.
func (p *Process) WaitLine(ctx context.Context, re *regexp.Regexp) (string, error) {
	line, err := p.out.waitLine(ctx, re)
	if err != nil {
		return "", fmt.Errorf("proc: %s: wait for a line matching %q: %w", p.name, re, err)
	}
	return line, nil
}

// Wait waits for the process to end (see Done) and returns its exit code.
// A process killed by a signal, ours included, returns -1 and an error
// naming the signal; an exit with any code returns a nil error.
func (p *Process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return -1, fmt.Errorf("proc: wait for %s (pid %d): %w", p.name, p.pid, ctx.Err())
	}
	p.mu.Lock()
	p.waited = true
	st := p.status
	p.mu.Unlock()
	if st.signal != 0 {
		return -1, fmt.Errorf("proc: %s (pid %d) %s", p.name, p.pid, st)
	}
	return st.code, nil
}

// Stop ends the process: StopSignal to the whole group, up to StopGrace
// for the leader to exit, then SIGKILL to the group; it reaps, waits until
// the group is gone, and removes the temp dir. It is idempotent.
//
// It returns nil when the process ended after our signal, however it
// ended. If it had ended on its own with a failure (non-zero status or a
// signal not ours) and no Wait call has returned that status, Stop reports
// it, so that a server that died during a test shows up at teardown.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop(p.sig, p.grace) })
	return p.stopErr
}

func (p *Process) stop(sig syscall.Signal, grace time.Duration) error {
	var errs []error
	p.mu.Lock()
	if !p.reaped {
		p.stopping = true
		if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("send %v to group %d: %w", sig, p.pid, err))
		}
	}
	p.mu.Unlock()
	if !waitClosed(p.ended, grace) {
		p.mu.Lock()
		if !p.reaped {
			if err := syscall.Kill(-p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("SIGKILL group %d: %w", p.pid, err))
			}
		}
		p.mu.Unlock()
	}
	if !waitClosed(p.done, killTimeout+groupTimeout+drainTimeout) {
		errs = append(errs, fmt.Errorf("not reaped within %v of SIGKILL (uninterruptible sleep?)", killTimeout+groupTimeout+drainTimeout))
	} else {
		p.mu.Lock()
		if p.groupErr != nil {
			errs = append(errs, p.groupErr)
		}
		if p.selfEnd && !p.waited && !p.status.ok() {
			errs = append(errs, fmt.Errorf("had ended on its own before Stop: %s\n%s", p.status, tailBlock(p.out.tail(2048))))
		}
		p.mu.Unlock()
	}
	if err := os.RemoveAll(p.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove temp dir: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("proc: stop %s (pid %d): %w", p.name, p.pid, err)
	}
	return nil
}

// waitClosed waits up to d for c to be closed.
func waitClosed(c <-chan struct{}, d time.Duration) bool {
	select {
	case <-c:
		return true
	default:
	}
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
		return true
	case <-t.C:
		return false
	}
}
