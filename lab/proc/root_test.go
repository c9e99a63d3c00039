package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/labtest/rerun"
	"github.com/tfolab/tfolab/lab/netnsx"
)

// Debian's interpreter: python3 on PATH may be a pyenv shim.
const python = "/usr/bin/python3"

// testNS is an anonymous namespace with lo up, and its runner.
type testNS struct {
	h    netns.NsHandle
	run  func(func() error) error
	path string // /proc/self/fd/N of the handle
}

// newNS creates a namespace for one test; at the end it checks that no
// process is left inside, then closes it.
func newNS(t *testing.T) *testNS {
	t.Helper()
	labtest.NeedRoot(t, "network namespaces")
	h := labtest.NewNS(t) // closed after the check below
	n := &testNS{h: h, path: fmt.Sprintf("/proc/self/fd/%d", int(h))}
	n.run = func(f func() error) error { return netnsx.Do(h, f) }
	t.Cleanup(func() {
		if pids, err := InNamespace(n.path); err != nil || len(pids) > 0 {
			t.Errorf("after the test: processes %v left in the namespace (err %v)", pids, err)
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	nl := labtest.Netlink(t, h)
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return n
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// start starts s and registers Stop for teardown.
func start(t *testing.T, n *testNS, s Spec) *Process {
	t.Helper()
	p, err := Start(ctxFor(t, 10*time.Second), n.run, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return p
}

// assertGone checks that Stop left nothing: no live member of the group
// (zombies held by another parent are PID 1's to reap), and no temp dir.
func assertGone(t *testing.T, p *Process) {
	t.Helper()
	members, err := GroupMembers(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if !m.Zombie() || m.PPID == os.Getpid() {
			t.Errorf("group %d: member %+v survived Stop", p.Pid(), m)
		}
	}
	if _, err := os.Stat(p.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s left behind (stat: %v)", p.Dir(), err)
	}
}

func httpGet(n *testNS, addr string) (string, error) {
	var status string
	err := n.run(func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		status, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return strings.TrimSpace(status), err
}

func sameNetNS(t *testing.T, pid int, nsPath string) bool {
	t.Helper()
	var a, b syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &a); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(nsPath, &b); err != nil {
		t.Fatal(err)
	}
	return a.Ino == b.Ino && a.Dev == b.Dev
}

// A real server started in a namespace is seen listening there, serves a
// connection made from inside, and Stop leaves nothing behind.
func TestHTTPServerInNamespace(t *testing.T) {
	n := newNS(t)
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s: %v", python, err)
	}
	addr := netip.MustParseAddrPort("127.0.0.1:8034")
	p := start(t, n, Spec{
		Name:  "http.server",
		Path:  python,
		Args:  []string{"-m", "http.server", "--bind", addr.Addr().String(), strconv.Itoa(int(addr.Port()))},
		Files: map[string][]byte{"index.html": []byte("hello\n")},
		Ready: ListeningOn(addr),
	})
	if !sameNetNS(t, p.Pid(), n.path) {
		t.Fatalf("pid %d is not in the test namespace", p.Pid())
	}
	if pids, _ := InNamespace(n.path); len(pids) != 1 || pids[0] != p.Pid() {
		t.Errorf("InNamespace = %v, want [%d]", pids, p.Pid())
	}
	// The listener exists in that namespace only.
	if socks, err := os.ReadFile("/proc/thread-self/net/tcp"); err == nil {
		if s, _ := ParseNetTCP(socks); Listening(s, addr) {
			t.Errorf("listener on %v visible in the test's own namespace", addr)
		}
	}
	status, err := httpGet(n, addr.String())
	if err != nil || !strings.HasPrefix(status, "HTTP/1.0 200") {
		t.Fatalf("GET from inside the namespace: %q, %v", status, err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	assertGone(t, p)
	if pids, _ := InNamespace(n.path); len(pids) != 0 {
		t.Errorf("after Stop, processes %v in the namespace", pids)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if code, err := p.Wait(context.Background()); code != -1 || err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("Wait after Stop = %d, %v; want -1 and SIGTERM", code, err)
	}
	if !strings.Contains(string(p.Output()), `"GET / HTTP/1.0" 200`) {
		t.Errorf("output lacks the access log line:\n%s", p.Output())
	}
}

// A listener on the IPv6 wildcard (dual-stack) satisfies an IPv4 address;
// When runs a caller's check.
func TestWildcardListenerAndWhen(t *testing.T) {
	n := newNS(t)
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s: %v", python, err)
	}
	p := start(t, n, Spec{
		Path:  python,
		Args:  []string{"-m", "http.server", "--bind", "::", "8035"},
		Ready: ListeningOn(netip.MustParseAddrPort("10.34.2.2:8035")),
	})
	q := start(t, n, Spec{
		Name: "sleeper",
		Path: "sleep",
		Args: []string{"60"},
		Ready: When("GET answers", func(ctx context.Context) error {
			_, err := httpGet(n, "[::1]:8035")
			return err
		}),
	})
	for _, x := range []*Process{q, p} {
		if err := x.Stop(); err != nil {
			t.Fatal(err)
		}
		assertGone(t, x)
	}
}

// A process that exits at once fails Start with its status and output,
// at once rather than at the deadline.
func TestStartFailsWhenProcessEndsFirst(t *testing.T) {
	n := newNS(t)
	for _, c := range []struct {
		name  string
		args  []string
		ready Readiness
		code  int
		tail  string
	}{
		{"false", nil, ListeningOn(netip.MustParseAddrPort("127.0.0.1:80")), 1, ""},
		{"sh", []string{"-c", "echo boom >&2; exit 3"}, ListeningOn(netip.MustParseAddrPort("127.0.0.1:80")), 3, "boom"},
		{"sh", []string{"-c", "echo not it; exit 5"}, FirstLine(regexp.MustCompile("ready")), 5, "not it"},
	} {
		began := time.Now()
		p, err := Start(ctxFor(t, 10*time.Second), n.run, Spec{Path: c.name, Args: c.args, Ready: c.ready})
		if err == nil {
			p.Stop()
			t.Fatalf("%s %v: Start succeeded", c.name, c.args)
		}
		var se *StartError
		if !errors.As(err, &se) || !errors.Is(err, ErrEnded) || !se.Ended || se.ExitCode != c.code {
			t.Fatalf("%s %v: error %#v (%v); want a StartError, ended, exit %d", c.name, c.args, se, err, c.code)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("exit status %d", c.code)) || !strings.Contains(err.Error(), c.tail) {
			t.Errorf("error lacks the status or the output tail %q:\n%v", c.tail, err)
		}
		if d := time.Since(began); d > 2*time.Second {
			t.Errorf("%s: Start took %v to notice the exit", c.name, d)
		}
	}
	t.Log("example:", func() error {
		_, err := Start(ctxFor(t, time.Second), n.run, Spec{Path: "false", Ready: ListeningOn(netip.MustParseAddrPort("127.0.0.1:80"))})
		return err
	}())
}

func TestMissingBinary(t *testing.T) {
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "tfolab-proc-*"))
	_, err := Start(ctxFor(t, time.Second), nil, Spec{Path: "tfolab-no-such-binary"})
	if err == nil || !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), `"tfolab-no-such-binary"`) || !strings.Contains(err.Error(), "make deps") {
		t.Fatalf("Start of a missing binary: %v; want ErrNotFound naming it and make deps", err)
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "tfolab-proc-*"))
	if len(after) > len(before) {
		t.Errorf("temp dirs created for a missing binary: %v", after)
	}
}

func TestFirstLineAndWaitLine(t *testing.T) {
	n := newNS(t)
	p := start(t, n, Spec{
		Path:  "sh",
		Args:  []string{"-c", `echo starting; echo "ready on 7" >&2; echo "later 9"; exec sleep 60`},
		Ready: FirstLine(regexp.MustCompile(`^ready on \d+$`)),
	})
	line, err := p.WaitLine(ctxFor(t, 5*time.Second), regexp.MustCompile(`^later (\d+)`))
	if err != nil || line != "later 9" {
		t.Fatalf("WaitLine = %q, %v", line, err)
	}
	if out := string(p.Output()); !strings.Contains(out, "starting\n") || !strings.Contains(out, "ready on 7\n") {
		t.Errorf("output = %q, want stdout and stderr", out)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, p)
}

// A process that ignores the graceful signal is SIGKILLed after the grace.
func TestStopEscalatesToSIGKILL(t *testing.T) {
	n := newNS(t)
	const grace = 200 * time.Millisecond
	p := start(t, n, Spec{
		Path:      "sh",
		Args:      []string{"-c", `trap "" TERM; echo ready; while :; do sleep 1; done`},
		Ready:     FirstLine(regexp.MustCompile(`^ready$`)),
		StopGrace: grace,
	})
	began := time.Now()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d < grace || d > grace+2*time.Second {
		t.Errorf("Stop took %v; want just over the %v grace", d, grace)
	}
	if _, err := p.Wait(context.Background()); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Wait: %v; want killed by SIGKILL", err)
	}
	assertGone(t, p)
}

// childOf starts sh running script, which must print "child=PID" for a
// background child, and returns the process and the child's Stat.
func childOf(t *testing.T, n *testNS, script string, ready Readiness, running bool) (*Process, Stat) {
	t.Helper()
	p := start(t, n, Spec{Path: "sh", Args: []string{"-c", script}, Ready: ready, StopGrace: 200 * time.Millisecond})
	line, err := p.WaitLine(ctxFor(t, 5*time.Second), regexp.MustCompile(`^child=\d+$`))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimPrefix(line, "child="))
	st, err := ReadStat(pid)
	if err != nil && running {
		t.Fatal(err)
	}
	if err == nil && st.PGID != p.Pid() {
		t.Fatalf("child %d is in group %d, want %d", pid, st.PGID, p.Pid())
	}
	st.PID = pid
	return p, st
}

// childAlive reports whether the process st still runs (not a zombie and
// not a later process reusing the PID).
func childAlive(st Stat) bool {
	now, err := ReadStat(st.PID)
	return err == nil && now.StartTime == st.StartTime && !now.Zombie()
}

// A child forked into the group, and ignoring SIGTERM, dies with it.
func TestStopKillsForkedChild(t *testing.T) {
	n := newNS(t)
	p, child := childOf(t, n, `trap "" TERM; sleep 60 & echo child=$!; wait`, FirstLine(regexp.MustCompile(`^child=`)), true)
	if !childAlive(child) {
		t.Fatalf("child %d not running before Stop", child.PID)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if childAlive(child) {
		t.Errorf("child %d survived Stop", child.PID)
	}
	assertGone(t, p)
}

// When the leader exits on its own, the rest of its group goes with it.
func TestLeaderExitKillsGroup(t *testing.T) {
	n := newNS(t)
	p, child := childOf(t, n, `sleep 60 & echo child=$!`, Exited(), false)
	if childAlive(child) {
		t.Errorf("child %d outlived its leader", child.PID)
	}
	if code, err := p.Wait(ctxFor(t, time.Second)); code != 0 || err != nil {
		t.Errorf("Wait = %d, %v; want 0", code, err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, p)
}

// After EnableSubreaper, Stop reaps orphaned members too: not even a
// zombie of the group is left.
func TestSubreaperReapsWholeGroup(t *testing.T) {
	n := newNS(t)
	if err := EnableSubreaper(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	// The subshell forks sleep: a grandchild, orphaned when the subshell dies.
	p, _ := childOf(t, n, `trap "" TERM; (sleep 60; echo never) & echo child=$!; wait`, FirstLine(regexp.MustCompile(`^child=`)), true)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if members, err := GroupMembers(p.Pid()); err != nil || len(members) > 0 {
		t.Errorf("group %d after Stop: %+v (err %v); want nothing, zombies included", p.Pid(), members, err)
	}
	assertGone(t, p)
}

// Files and {dir}, the minimal environment, and Exited readiness.
func TestFilesEnvAndExited(t *testing.T) {
	n := newNS(t)
	t.Setenv("TFOLAB_PROC_SECRET", "leak")
	p := start(t, n, Spec{
		Path:  "sh",
		Args:  []string{"-c", `cat {dir}/conf/x.conf; echo "home=$HOME pwd=$(pwd)"; env; exit 3`},
		Files: map[string][]byte{"conf/x.conf": []byte("root {dir}/html;\n")},
		Ready: Exited(),
	})
	code, err := p.Wait(ctxFor(t, time.Second))
	if code != 3 || err != nil {
		t.Fatalf("Wait = %d, %v; want 3", code, err)
	}
	out := string(p.Output())
	for _, want := range []string{"root " + p.Dir() + "/html;\n", "home=" + p.Dir() + " pwd=" + p.Dir() + "\n", "PATH=" + DefaultPATH + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "TFOLAB_PROC_SECRET") {
		t.Errorf("the caller's environment leaked:\n%s", out)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop after a Wait that saw exit 3: %v", err)
	}
	assertGone(t, p)

	if _, err := Start(ctxFor(t, time.Second), n.run, Spec{Path: "true", Files: map[string][]byte{"../x": nil}}); err == nil {
		t.Error("a file name outside the dir was accepted")
	}
}

// A server that died on its own during the test is reported at teardown,
// unless a Wait call already saw its status.
func TestStopReportsUnexpectedEnd(t *testing.T) {
	n := newNS(t)
	p, err := Start(ctxFor(t, 5*time.Second), n.run, Spec{Path: "sh", Args: []string{"-c", "echo ready; exit 4"}, Ready: FirstLine(regexp.MustCompile("ready"))})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if err := p.Stop(); err == nil || !strings.Contains(err.Error(), "exit status 4") {
		t.Errorf("Stop = %v; want it to report exit status 4", err)
	}
	assertGone(t, p)
}

// The readiness wait is bounded by ctx; the process is killed.
func TestReadyTimeout(t *testing.T) {
	n := newNS(t)
	began := time.Now()
	_, err := Start(ctxFor(t, 100*time.Millisecond), n.run, Spec{
		Path:  "sleep",
		Args:  []string{"60"},
		Ready: ListeningOn(netip.MustParseAddrPort("127.0.0.1:1")),
	})
	var se *StartError
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrEnded) || !errors.As(err, &se) || se.Ended {
		t.Fatalf("Start = %v; want a StartError for DeadlineExceeded", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("Start took %v with a 100 ms context", d)
	}
	// newNS's cleanup checks the namespace is empty.
}

// A nil runner runs the process in the caller's namespace.
func TestNilRunner(t *testing.T) {
	p, err := Start(ctxFor(t, 5*time.Second), nil, Spec{Path: "sh", Args: []string{"-c", "echo hi"}, Ready: Exited()})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(context.Background()); code != 0 || err != nil || string(p.Output()) != "hi\n" {
		t.Errorf("Wait = %d, %v, output %q", code, err, p.Output())
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, p)
}

// The peer is forked from a thread of this package's own, not from the
// runner's: a runner that discards its thread (here: it never unlocks it)
// must not take the peer with it through Pdeathsig.
func TestPeerOutlivesRunnerThread(t *testing.T) {
	n := newNS(t)
	var tid int
	discarding := func(f func() error) error {
		errc := make(chan error, 1)
		var attempt func()
		attempt = func() {
			runtime.LockOSThread()
			if unix.Gettid() == os.Getpid() {
				// The runtime wedges the main thread instead of ending it:
				// keep it busy so that another thread runs the attempt.
				done := make(chan struct{})
				go func() { attempt(); close(done) }()
				<-done
				runtime.UnlockOSThread()
				return
			}
			// Never unlocked: the thread exits with the goroutine.
			if err := netns.Set(n.h); err != nil {
				errc <- err
				return
			}
			tid = unix.Gettid()
			errc <- f()
		}
		go attempt()
		return <-errc
	}
	p, err := Start(ctxFor(t, 5*time.Second), discarding, Spec{Path: "sleep", Args: []string{"60"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	if !sameNetNS(t, p.Pid(), n.path) {
		t.Fatal("peer not in the runner's namespace")
	}
	st, err := ReadStat(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	// The runner's thread is gone once its /proc entry is.
	task := fmt.Sprintf("/proc/self/task/%d", tid)
	err = poll(ctxFor(t, 5*time.Second), nil, func() (bool, error) {
		_, err := os.Stat(task)
		return errors.Is(err, os.ErrNotExist), nil
	})
	if err != nil {
		t.Fatalf("runner thread %d (pid %d) never exited: %v", tid, os.Getpid(), err)
	}
	// Pdeathsig would be sent during that thread's exit; give delivery a
	// moment to show.
	select {
	case <-p.Done():
		t.Fatalf("peer died with the runner's thread: %s", p.Output())
	case <-time.After(50 * time.Millisecond):
	}
	if !childAlive(st) {
		t.Fatal("peer not running")
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, p)
}

// If the program dies without running any Go code (SIGKILL), Pdeathsig
// kills the peer: a helper copy of this test binary starts one and is
// killed.
func TestPeerDiesWithProgram(t *testing.T) {
	if os.Getenv("TFOLAB_PROC_HELPER") == "1" {
		helperStartsPeer()
		return
	}
	cmd := rerun.Command(context.Background(), "TestPeerDiesWithProgram", "TFOLAB_PROC_HELPER", "1")
	stdin, stdout := rerun.Pipes(t, cmd) // the helper blocks reading stdin
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	peer, dir, _ := strings.Cut(strings.TrimSpace(line), " ")
	pid, perr := strconv.Atoi(strings.TrimPrefix(peer, "peer="))
	if err != nil || perr != nil || dir == "" {
		t.Fatalf("helper said %q (%v)", line, err)
	}
	st, err := ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	ctx := ctxFor(t, 5*time.Second)
	err = poll(ctx, nil, func() (bool, error) { return !childAlive(st), nil })
	if err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("peer %d outlived its killed program: %v", pid, err)
	}
	// The killed program could not remove its temp dir; SweepDirs does.
	removed, err := SweepDirs()
	if err != nil || !slices.Contains(removed, dir) {
		t.Errorf("SweepDirs = %v, %v; want it to remove %s", removed, err, dir)
	}
	os.RemoveAll(dir)
}

func helperStartsPeer() {
	p, err := Start(context.Background(), nil, Spec{Path: "sleep", Args: []string{"60"}})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Printf("peer=%d %s\n", p.Pid(), p.Dir())
	var b [1]byte
	os.Stdin.Read(b[:]) // until killed
	p.Stop()
	os.Exit(0)
}

// TCPSockets sees exactly what /proc/net/tcp shows of a namespace, state
// filter applied: a listener in each family, and a half-open connection
// (SYN-SENT) that a LISTEN-only request must leave out; nothing of the
// host's sockets.
func TestTCPSocketsMatchesProcNetTCP(t *testing.T) {
	n := newNS(t)
	var lns []net.Listener
	err := n.run(func() error {
		for _, a := range []string{"127.0.0.1:7000", "[::1]:7001"} {
			l, err := net.Listen("tcp", a)
			if err != nil {
				return err
			}
			lns = append(lns, l)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	var diag, listening, all []Socket
	err = n.run(func() error {
		var err error
		if listening, err = TCPSockets(StateMask(StateListen)); err != nil {
			return err
		}
		if all, err = TCPSockets(^uint32(0)); err != nil {
			return err
		}
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			s, err := ParseNetTCP(b)
			if err != nil {
				return err
			}
			diag = append(diag, s...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	key := func(s Socket) string { return fmt.Sprintf("%v %v %d", s.Local, s.Remote, s.State) }
	var want, got []string
	for _, s := range diag {
		want = append(want, key(s))
	}
	for _, s := range all {
		got = append(got, key(s))
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) || len(got) != 2 {
		t.Errorf("sock_diag, all states: %v; /proc/net/tcp: %v (want the 2 listeners)", got, want)
	}
	for _, a := range []string{"127.0.0.1:7000", "[::1]:7001"} {
		if !Listening(listening, netip.MustParseAddrPort(a)) {
			t.Errorf("no listener on %s in %v", a, listening)
		}
	}
	if Listening(listening, netip.MustParseAddrPort("127.0.0.1:7002")) {
		t.Error("a listener on a port nothing listens on")
	}
}

// CPUBudget bounds readiness by the process's CPU, not by the clock: a
// program that sleeps (waits for a CPU, or for anything) past its budget's
// worth of wall time is fine; one that spins through its budget is
// stopped with ErrCPUBudget.
func TestCPUBudget(t *testing.T) {
	p, err := Start(ctxFor(t, 5*time.Second), nil, Spec{
		Path: "sh", Args: []string{"-c", "sleep 0.5"}, Ready: Exited(), CPUBudget: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("a sleeper past its CPU budget's worth of wall time: %v", err)
	}
	_ = p.Stop()
	start := time.Now()
	_, err = Start(ctxFor(t, 10*time.Second), nil, Spec{
		Path: "sh", Args: []string{"-c", "while :; do :; done"}, Ready: Exited(), CPUBudget: 300 * time.Millisecond,
	})
	if !errors.Is(err, ErrCPUBudget) {
		t.Fatalf("a spinner: %v, want ErrCPUBudget", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("the spinner was stopped after %v, want well before its 10 s context", d)
	}
}
