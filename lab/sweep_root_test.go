package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tfolab/tfolab/lab/labtest/rerun"
	"github.com/tfolab/tfolab/lab/netnsx"
)

// The sweep tests run again in a child process with a mount namespace of
// its own and a fresh tmpfs on /run (see rerun), so that they see only
// the namespaces and owner records they make, and the host's /run/netns is
// never touched.

const envSweepMountNS = "TFOLAB_TEST_SWEEP_MOUNTNS"

func inPrivateMountNS(t *testing.T) bool {
	t.Helper()
	return rerun.InPrivateMountNS(t, envSweepMountNS, 2*time.Minute)
}

const envSweepOwner = "TFOLAB_TEST_SWEEP_OWNER"

// TestSweepOwnerHelper is not a test on its own: TestSweepRemovesZombieOwner
// runs it as the process that owns a namespace and is then killed. It binds
// the namespace, starts a sleep inside it (the server a killed run leaves
// behind), reports "ready <sleep pid>" and waits to be killed (its stdin
// stays open until then).
func TestSweepOwnerHelper(t *testing.T) {
	role := os.Getenv(envSweepOwner)
	if role == "" {
		t.Skip("helper process of TestSweepRemovesZombieOwner")
	}
	name := fmt.Sprintf("%s%d-dead-1-%s", NamePrefix, os.Getpid(), role)
	h, err := netnsx.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("sleep", "600")
	if err := netnsx.Do(h, sleep.Start); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ready %d\n", sleep.Process.Pid)
	bufio.NewReader(os.Stdin).ReadString('\n')
	t.Fatal("stdin closed before the helper was killed")
}

// TestSweepRemovesZombieOwner kills the owner of a namespace with SIGKILL
// and leaves it unreaped: a zombie, on which kill(pid, 0) still succeeds.
// Sweep must remove its namespace and kill the process left inside. Beside
// it: a namespace named for a live process whose start time differs from
// the record (a reused PID: removed), and one of this live process (kept).
func TestSweepRemovesZombieOwner(t *testing.T) {
	if !inPrivateMountNS(t) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Orphans (the helper's sleep, once the helper dies) come to this
	// process instead of PID 1, so that the test can reap them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}

	owner, leftover := startOwner(ctx, t, "zombie")
	if err := syscall.Kill(owner, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitZombie(ctx, t, owner)
	if st, err := netnsx.ReadProcStat(owner); err != nil || st.State != 'Z' {
		t.Fatalf("owner %d: %+v, %v; want a zombie", owner, st, err)
	}
	if err := syscall.Kill(owner, 0); err != nil {
		t.Fatalf("kill(%d, 0) on the zombie: %v (the old sweeper's test would have called it gone)", owner, err)
	}
	zombieNS := fmt.Sprintf("%s%d-dead-1-zombie", NamePrefix, owner)

	// Killed just before the sweep: Sweep may find it still running with
	// the SIGKILL pending, or mid-exit, and must wait for it.
	dying, dyingLeftover := startOwner(ctx, t, "dying")
	dyingNS := fmt.Sprintf("%s%d-dead-1-dying", NamePrefix, dying)

	// A reused PID: a live process, but not the one the record names.
	other := exec.Command("sleep", "600")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	st, err := netnsx.ReadProcStat(other.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	reusedNS := fmt.Sprintf("%s%d-feed-1-reused", NamePrefix, other.Process.Pid)
	bind(t, reusedNS)
	writeRecord(t, netnsx.Owner{PID: other.Process.Pid, StartTime: st.StartTime - 1})

	aliveNS := fmt.Sprintf("%s%d-cafe-1-alive", NamePrefix, os.Getpid())
	bind(t, aliveNS)

	if err := syscall.Kill(dying, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := Sweep(false)
	t.Logf("Sweep took %v: %+v", time.Since(start), res)
	if err != nil {
		t.Errorf("Sweep: %v", err)
	}
	if want := []string{zombieNS, dyingNS, reusedNS}; !sameSet(res.Removed, want) {
		t.Errorf("removed %v, want %v", res.Removed, want)
	}
	if len(res.Kept) != 1 || res.Kept[0].Name != aliveNS || !res.Kept[0].Alive || !strings.Contains(res.Kept[0].Reason, "alive") {
		t.Errorf("kept %+v, want only %s, alive", res.Kept, aliveNS)
	}
	if !slices.Equal(res.Skipped, []string{aliveNS}) {
		t.Errorf("skipped %v, want [%s]", res.Skipped, aliveNS)
	}
	if !slices.Contains(res.Killed, leftover) || !slices.Contains(res.Killed, dyingLeftover) {
		t.Errorf("killed %v, want the sleeps %d and %d left in %s and %s", res.Killed, leftover, dyingLeftover, zombieNS, dyingNS)
	}

	if err := netnsx.DeleteNamed(aliveNS); err != nil {
		t.Error(err)
	}
	if names, _ := ListNamespaces(); len(names) > 0 {
		t.Errorf("namespaces left: %v", names)
	}
	if pids, _ := netnsx.ListOwners(); len(pids) > 0 {
		t.Errorf("owner records left: %v", pids)
	}
}

// startOwner starts TestSweepOwnerHelper as the owner of a namespace
// tfo-<pid>-dead-1-<role> and returns its PID and that of the sleep it left
// in the namespace. Both are reaped at cleanup.
func startOwner(ctx context.Context, t *testing.T, role string) (owner, leftover int) {
	t.Helper()
	helper := rerun.Command(ctx, "TestSweepOwnerHelper", envSweepOwner, role, "-test.v")
	helper.Stderr = os.Stderr
	in, out := rerun.Pipes(t, helper)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); helper.Process.Kill(); helper.Wait() })
	leftover = readReady(ctx, t, out)
	t.Cleanup(func() { syscall.Kill(leftover, syscall.SIGKILL); unix.Wait4(leftover, nil, 0, nil) })
	return helper.Process.Pid, leftover
}

// TestSweepReportsWhatItCouldNotRemove: a dead run's namespace hidden under
// a mount of /run/netns that cannot be moved (see netnsx) stays; Sweep must
// say so in Kept and fail, naming it and the command to run.
func TestSweepReportsWhatItCouldNotRemove(t *testing.T) {
	if !inPrivateMountNS(t) {
		return
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%s%d-dead-1-hidden", NamePrefix, gone.Process.Pid)
	if err := unix.Mount("", "/run", "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(netnsDir, name)
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("unshare", "--net="+path, "true").CombinedOutput(); err != nil {
		t.Fatalf("bind a namespace at %s: %v: %s", path, err, out)
	}
	for _, flags := range []uintptr{unix.MS_BIND | unix.MS_REC, unix.MS_PRIVATE | unix.MS_REC, unix.MS_SHARED | unix.MS_REC} {
		src := ""
		if flags&unix.MS_BIND != 0 {
			src = netnsDir
		}
		if err := unix.Mount(src, netnsDir, "none", flags, ""); err != nil {
			t.Fatalf("cover %s: %v", netnsDir, err)
		}
	}

	res, err := Sweep(false)
	t.Logf("Sweep: %+v\nerror: %v", res, err)
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "umount --lazy") {
		t.Errorf("Sweep error %v, want one naming %s and the command to run", err, name)
	}
	if len(res.Kept) != 1 || res.Kept[0].Name != name || res.Kept[0].Alive {
		t.Errorf("kept %+v, want %s, not alive", res.Kept, name)
	}

	if out, err := exec.Command("umount", "--lazy", netnsDir).CombinedOutput(); err != nil {
		t.Fatalf("umount --lazy: %v: %s", err, out)
	}
	res, err = Sweep(false)
	if err != nil || !slices.Equal(res.Removed, []string{name}) {
		t.Errorf("Sweep after umount --lazy: %+v, %v", res, err)
	}
}

func readReady(ctx context.Context, t *testing.T, out interface{ Read([]byte) (int, error) }) int {
	t.Helper()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				line <- rest
				return
			}
		}
		close(line)
	}()
	select {
	case s, ok := <-line:
		pid, err := strconv.Atoi(s)
		if !ok || err != nil {
			t.Fatalf("helper did not report ready (%q)", s)
		}
		return pid
	case <-ctx.Done():
		t.Fatal("helper never got ready")
	}
	return 0
}

// waitZombie waits for the child pid to exit without reaping it.
func waitZombie(ctx context.Context, t *testing.T, pid int) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		var info unix.Siginfo
		done <- unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waitid(%d, WNOWAIT): %v", pid, err)
		}
	case <-ctx.Done():
		t.Fatalf("pid %d did not exit after SIGKILL", pid)
	}
}

func bind(t *testing.T, name string) {
	t.Helper()
	h, err := netnsx.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
}

func writeRecord(t *testing.T, o netnsx.Owner) {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(netnsx.OwnersDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(netnsx.OwnersDir, strconv.Itoa(o.PID)), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
