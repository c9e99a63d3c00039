package netnsx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tfolab/tfolab/lab/labtest/rerun"
)

// These tests never touch the host's /run: each runs again in a child
// process with a fresh tmpfs on /run (see rerun), so /run/netns starts
// out missing, as on a host where `ip netns` was never used.

const envPrivateMountNS = "TFOLAB_TEST_PRIVATE_MOUNTNS"

// testRun is the ID of the tmpfs the child mounted on /run.
var testRun int

// inPrivateMountNS returns true in the child, where the test should do its
// work, once it has checked that lookups below /run go to the tmpfs. In
// the parent it runs the child, fails t if the child failed, and returns
// false.
func inPrivateMountNS(t *testing.T) bool {
	t.Helper()
	if !rerun.InPrivateMountNS(t, envPrivateMountNS, 3*time.Minute, "ip") {
		return false
	}
	mounts, err := readMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := newMountTable(mounts).walk("/run/x")
	if err != nil || c.Point != "/run" || c.FSType != "tmpfs" {
		t.Fatalf("the tmpfs on /run is not where lookups go: %v, %v", c, err)
	}
	testRun = c.ID
	return true
}

func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// checkClean asserts that /run/netns holds no file and no binding, that it
// is at most one mount (no stacked self-binds), and that no owner record is
// left.
func checkClean(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(RunDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left in %s: %s", RunDir, e.Name())
	}
	mounts, l := runDirLayers(t, "x")
	if len(l.dirStack) > 1 {
		t.Errorf("%d mounts stacked on %s: %v", len(l.dirStack), RunDir, l.dirStack)
	}
	for _, m := range mounts {
		if m.FSType == "nsfs" && strings.HasPrefix(m.Point, RunDir+"/") && isOurs(mounts, m) {
			t.Errorf("namespace still bound: %v", m)
		}
	}
	if pids, _ := ListOwners(); len(pids) > 0 {
		t.Errorf("owner records left: %v", pids)
	}
}

// runDirLayers reads the mount table and returns it with the layers at
// RunDir/name.
func runDirLayers(t *testing.T, name string) ([]mount, fileLayers) {
	t.Helper()
	mounts, err := readMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	l, err := layersAt(mounts, RunDir, name)
	if err != nil {
		t.Fatal(err)
	}
	return mounts, l
}

// isOurs reports whether m hangs off the tmpfs this test mounted on /run,
// not off the host's mounts copied into the mount namespace.
func isOurs(mounts []mount, m mount) bool {
	t := newMountTable(mounts)
	for cur, i := m, 0; i < len(mounts); i++ {
		if cur.Parent == testRun {
			return true
		}
		p, ok := t.byID[cur.Parent]
		if !ok {
			return false
		}
		cur = p
	}
	return false
}

// TestNewNamedPreparesRunDir: the first NewNamed makes /run/netns a shared
// mount point before binding, so the binding hangs off that mount and a
// later `ip netns add` adds no layer over it.
func TestNewNamedPreparesRunDir(t *testing.T) {
	if !inPrivateMountNS(t) {
		return
	}
	ctx := context.Background()
	h, err := NewNamed("tfo-prep-1")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	check := func(when string) {
		t.Helper()
		_, l := runDirLayers(t, "tfo-prep-1")
		if len(l.dirStack) != 1 || !l.dirStack[0].Shared {
			t.Errorf("%s: %s is %v, want one shared mount", when, RunDir, l.dirStack)
		}
		if len(l.visible) != 1 || len(l.hidden) != 0 {
			t.Errorf("%s: binding visible %v, hidden %v", when, l.visible, l.hidden)
		}
	}
	check("after NewNamed")
	if o, err := ReadOwner(os.Getpid()); err != nil || o.StartTime == 0 || o.BootID == "" {
		t.Errorf("owner record: %+v, %v", o, err)
	}
	if err := ipCmd(ctx, "netns", "add", "ipr-prep"); err != nil {
		t.Fatal(err)
	}
	check("after ip netns add")
	if err := ipCmd(ctx, "netns", "del", "ipr-prep"); err != nil {
		t.Error(err)
	}
	if err := DeleteNamed("tfo-prep-1"); err != nil {
		t.Fatal(err)
	}
	checkClean(t)
}

const envRaceWorker = "TFOLAB_TEST_NETNS_RACE_WORKER"

// TestNetnsRaceWorker is not a test on its own: TestNamedRaceWithIPNetns
// runs it as a separate process (like one of Ginkgo's parallel processes).
// It starts at the first line on stdin and stops churning at the next line
// or end of input.
func TestNetnsRaceWorker(t *testing.T) {
	id := os.Getenv(envRaceWorker)
	if id == "" {
		t.Skip("helper process of TestNamedRaceWithIPNetns")
	}
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		t.Fatalf("wait for the start signal: %v", err)
	}
	stop := make(chan struct{})
	go func() {
		in.ReadString('\n')
		close(stop)
	}()
	if err := churn("tfo-race-p"+id, stop, func() { fmt.Println("early") }); err != nil {
		t.Fatal(err)
	}
}

// Each actor makes between churnMin and churnMax namespaces: network
// namespaces are torn down asynchronously, and an unbounded loop fills the
// kernel's queue until unshare fails with ENOSPC.
const churnMin, churnMax = 10, 40

// churn creates prefix-early and calls bound, then creates namespaces one
// after the other (each used, then deleted) until stop is closed, then
// deletes prefix-early once stop is closed. The early one exists before any
// `ip netns add` runs and until the last has run, as the namespaces of a
// running suite do when someone uses `ip netns`.
func churn(prefix string, stop <-chan struct{}, bound func()) error {
	early, err := NewNamed(prefix + "-early")
	if err != nil {
		bound()
		return err
	}
	early.Close()
	bound()
	var errs []error
	for i := 0; i < churnMax && (i < churnMin || !isClosed(stop)); i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		h, err := NewNamed(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := Do(h, func() error { return nil }); err != nil {
			errs = append(errs, fmt.Errorf("enter %s: %w", name, err))
		}
		h.Close()
		if err := DeleteNamed(name); err != nil {
			errs = append(errs, err)
		}
	}
	<-stop
	if err := DeleteNamed(prefix + "-early"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestNamedRaceWithIPNetns binds and deletes lab namespaces from several
// processes and goroutines at once, all starting together on a /run/netns
// that is not yet a mount point (so that they race to set it up), while
// `ip netns add/exec/del` run beside them from the moment every actor's
// first namespace exists. Every delete must succeed and nothing may be
// left. Without prepareRunDir the first `ip netns add` covers the early
// namespaces and their deletes fail with EBUSY.
func TestNamedRaceWithIPNetns(t *testing.T) {
	if !inPrivateMountNS(t) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const procs, goroutines, ipWorkers = 4, 2, 2

	start := make(chan struct{})
	stop := make(chan struct{}) // closed when the ip workers are done
	var early sync.WaitGroup    // every actor's first namespace is bound
	early.Add(procs + goroutines)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}

	var releases []io.WriteCloser
	for p := range procs {
		cmd := rerun.Command(ctx, "TestNetnsRaceWorker", envRaceWorker, strconv.Itoa(p), "-test.v")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdin, stdout := rerun.Pipes(t, cmd)
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		releases = append(releases, stdin)
		ready := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out strings.Builder
			sc := bufio.NewScanner(stdout)
			sawReady, sawEarly := false, false
			for sc.Scan() {
				switch {
				case sc.Text() == "ready" && !sawReady:
					close(ready)
					sawReady = true
				case sc.Text() == "early" && !sawEarly:
					early.Done()
					sawEarly = true
				}
				out.WriteString(sc.Text() + "\n")
			}
			if !sawReady {
				close(ready)
			}
			if !sawEarly {
				early.Done()
			}
			if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "--- PASS: TestNetnsRaceWorker") {
				fail(fmt.Errorf("worker process %d: %v\n%s", p, err, out.String()))
			}
		}()
		select { // all processes wait at the line, so they start together
		case <-ready:
		case <-ctx.Done():
			t.Fatalf("worker process %d never got ready", p)
		}
	}
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := churn(fmt.Sprintf("tfo-race-g%d", g), stop, early.Done); err != nil {
				fail(err)
			}
		}()
	}
	var ipWG sync.WaitGroup
	for w := range ipWorkers {
		ipWG.Add(1)
		go func() {
			defer ipWG.Done()
			early.Wait()
			for i := range 5 {
				name := fmt.Sprintf("ipr-%d-%d", w, i)
				for _, args := range [][]string{{"netns", "add", name}, {"netns", "exec", name, "true"}, {"netns", "del", name}} {
					if err := ipCmd(ctx, args...); err != nil {
						fail(err)
						return
					}
				}
			}
		}()
	}
	close(start)
	for _, r := range releases {
		r.Write([]byte("go\n"))
	}
	ipWG.Wait()
	close(stop)
	for _, r := range releases {
		r.Close()
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	checkClean(t)
}

// bindLegacy binds a namespace at RunDir/name the way the lab did before
// prepareRunDir (vishvananda/netns.NewNamed: mkdir, create, bind; nothing
// about mount points).
func bindLegacy(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	h, err := create("legacy "+name, func() (netns.NsHandle, error) { return netns.NewNamed(name) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func handleID(t *testing.T, h netns.NsHandle) NamespaceID {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		t.Fatal(err)
	}
	return NamespaceID{Dev: st.Dev, Ino: st.Ino}
}

// TestDeleteNamedRecoversCovered reproduces a host where lab namespaces were
// bound before the first `ip netns add` (the lab before prepareRunDir) and
// checks that DeleteNamed still removes them, whether nothing was tried yet
// or an old-style delete already failed half-way, and that the namespace
// `ip netns` added meanwhile is untouched.
func TestDeleteNamedRecoversCovered(t *testing.T) {
	if !inPrivateMountNS(t) {
		return
	}
	ctx := context.Background()
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	fresh := bindLegacy(t, "tfo-legacy-1")
	halfDone := bindLegacy(t, "tfo-legacy-2")
	if err := ipCmd(ctx, "netns", "add", "ipr-cover"); err != nil {
		t.Fatal(err)
	}
	mounts, err := readMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := layersAt(mounts, RunDir, "tfo-legacy-1"); len(l.hidden) != 1 {
		t.Fatalf("setup: want tfo-legacy-1 covered by ip netns add, layers %+v", l)
	}
	id, ok, err := LookupNamed("tfo-legacy-1")
	if err != nil || !ok || id != handleID(t, fresh) {
		t.Errorf("LookupNamed(covered) = %v, %v, %v; want %v", id, ok, err, handleID(t, fresh))
	}

	// What failed in issue 10: unmount+unlink gives EBUSY...
	if err := netns.DeleteNamed("tfo-legacy-2"); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("old delete of a covered namespace: %v, want EBUSY", err)
	}
	// ... and the path now reaches no mount; LookupNamed still finds it.
	id, ok, err = LookupNamed("tfo-legacy-2")
	if err != nil || !ok || id != handleID(t, halfDone) {
		t.Errorf("LookupNamed(half-deleted) = %v, %v, %v; want %v", id, ok, err, handleID(t, halfDone))
	}
	for _, name := range []string{"tfo-legacy-1", "tfo-legacy-2"} {
		if err := DeleteNamed(name); err != nil {
			t.Errorf("DeleteNamed(%s): %v", name, err)
		}
	}
	if err := ipCmd(ctx, "netns", "exec", "ipr-cover", "true"); err != nil {
		t.Errorf("the namespace ip netns added is damaged: %v", err)
	}
	if err := ipCmd(ctx, "netns", "del", "ipr-cover"); err != nil {
		t.Error(err)
	}
	checkClean(t)
}

// TestDeleteNamedExplainsSharedCover: under a shared parent (systemd's
// /run) with a self-bind in a peer group of its own (iproute2 since
// 82c8b9fe, reproduced here by hand), the kernel refuses to move the cover;
// DeleteNamed must say what to run, and what it says must work.
func TestDeleteNamedExplainsSharedCover(t *testing.T) {
	if !inPrivateMountNS(t) {
		return
	}
	if err := unix.Mount("", "/run", "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bindLegacy(t, "tfo-legacy-3")
	for _, step := range []struct {
		src   string
		flags uintptr
	}{{RunDir, unix.MS_BIND | unix.MS_REC}, {"", unix.MS_PRIVATE | unix.MS_REC}, {"", unix.MS_SHARED | unix.MS_REC}} {
		if err := unix.Mount(step.src, RunDir, "none", step.flags, ""); err != nil {
			t.Fatalf("cover %s (flags %#x): %v", RunDir, step.flags, err)
		}
	}
	err := DeleteNamed("tfo-legacy-3")
	if err == nil {
		t.Fatal("DeleteNamed of a binding under a cover it cannot move succeeded")
	}
	t.Logf("DeleteNamed: %v", err)
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "umount --lazy "+RunDir) {
		t.Errorf("error does not wrap EBUSY and name the command: %v", err)
	}
	// Follow the advice.
	if out, err := exec.Command("umount", "--lazy", RunDir).CombinedOutput(); err != nil {
		t.Fatalf("umount --lazy: %v: %s", err, out)
	}
	if err := DeleteNamed("tfo-legacy-3"); err != nil {
		t.Errorf("DeleteNamed after umount --lazy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(RunDir, "tfo-legacy-3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tfo-legacy-3 still there: %v", err)
	}
	checkClean(t)
}
