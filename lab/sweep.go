package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tfolab/tfolab/lab/netnsx"
)

// netnsDir is where `ip netns` and netnsx.NewNamed bind named namespaces.
const netnsDir = netnsx.RunDir

// ListNamespaces returns the names of lab namespaces present on the host.
func ListNamespaces() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", netnsDir, err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), NamePrefix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// SweepResult says what Sweep removed and what it left alone, and why.
type SweepResult struct {
	Removed []string
	Skipped []string        // namespaces of a run that is still alive (each also in Kept)
	Kept    []KeptNamespace // every namespace Sweep left in place
	Killed  []int           // PIDs of processes that were still inside a removed namespace
}

// KeptNamespace is a namespace Sweep did not remove.
type KeptNamespace struct {
	Name   string
	Reason string
	// Alive is set when the namespace's run is alive, the one reason to
	// keep a namespace that is not a failure.
	Alive bool
}

// How long Sweep waits for an owner that is exiting (a zombie whose
// other threads are still going, or a process do_exit has started on)
// before it gives up on it, and how often it looks when it cannot wait for
// the event itself.
const (
	exitWait = 2 * time.Second
	exitPoll = 20 * time.Millisecond
)

// Sweep is SweepContext without a deadline of the caller's.
func Sweep(all bool) (SweepResult, error) { return SweepContext(context.Background(), all) }

// SweepContext removes lab namespaces whose creating process is gone (all
// of them when all is true), after killing any process still running inside
// them (a server or peer a killed run left behind). Links, addresses,
// routes and iptables rules live inside the namespaces, so they go with
// them.
//
// "Gone" is decided from the owner's record (netnsx.OwnersDir) and
// /proc/<pid>/stat, never from kill(pid, 0), which succeeds on a zombie and
// on whatever process reused the PID: the owner is gone when no process has
// its PID, when the process with that PID started at another time or in
// another boot than the record says, or when it is a zombie. A process
// that is exiting gets up to 2 s to finish.
//
// Every namespace left in place is in Kept with the reason. The error is
// non-nil when any of them should have been removed (anything but a live
// run's), naming each and why, as well as when killing failed.
func SweepContext(ctx context.Context, all bool) (SweepResult, error) {
	var res SweepResult
	names, err := ListNamespaces()
	if err != nil {
		return res, err
	}
	boot, err := netnsx.BootID()
	if err != nil {
		boot = "" // only the start time is compared then
	}
	var errs []error
	verdicts := map[int]ownerVerdict{}
	keptBy := map[int]bool{} // owners with a namespace left in place
	for _, name := range names {
		pid := OwnerPID(name)
		var v ownerVerdict
		switch {
		case all:
			v = ownerVerdict{gone: true}
		case pid == 0:
			v = ownerVerdict{gone: true} // not a name of ours; no run to spare
		default:
			var seen bool
			if v, seen = verdicts[pid]; !seen {
				v = judgeOwner(ctx, pid, boot)
				verdicts[pid] = v
			}
		}
		if !v.gone {
			res.Kept = append(res.Kept, KeptNamespace{Name: name, Reason: v.reason, Alive: v.alive})
			if v.alive {
				res.Skipped = append(res.Skipped, name)
			}
			keptBy[pid] = true
			continue
		}
		killed, err := killProcessesIn(name)
		res.Killed = append(res.Killed, killed...)
		if err != nil {
			errs = append(errs, err)
		}
		if err := netnsx.DeleteNamed(name); err != nil {
			res.Kept = append(res.Kept, KeptNamespace{Name: name, Reason: err.Error()})
			keptBy[pid] = true
			continue
		}
		res.Removed = append(res.Removed, name)
	}
	if err := sweepOwnerRecords(verdicts, keptBy, boot); err != nil {
		errs = append(errs, err)
	}
	var stuck []string
	for _, k := range res.Kept {
		if !k.Alive {
			stuck = append(stuck, fmt.Sprintf("%s (%s)", k.Name, k.Reason))
		}
	}
	if len(stuck) > 0 {
		errs = append(errs, fmt.Errorf("kept %d namespace(s) that should have been removed: %s", len(stuck), strings.Join(stuck, "; ")))
	}
	return res, errors.Join(errs...)
}

// sweepOwnerRecords removes the records of owners that are gone and have
// no namespace left. Owners Sweep did not judge (a record without
// namespaces: a process about to bind its first, or one that was killed
// after deleting its last) are judged without waiting.
func sweepOwnerRecords(verdicts map[int]ownerVerdict, keptBy map[int]bool, boot string) error {
	pids, err := netnsx.ListOwners()
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range pids {
		if keptBy[pid] {
			continue
		}
		v, ok := verdicts[pid]
		if !ok {
			f := readOwner(pid)
			f.boot = boot
			v = judge(f)
		}
		if v.gone {
			if err := netnsx.RemoveOwner(pid); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ownerVerdict is what Sweep concluded about a namespace's owner.
type ownerVerdict struct {
	gone    bool // remove its namespaces
	alive   bool // a live run: keep them, and that is fine
	exiting bool // decide after waiting for the exit
	reason  string
}

// ownerFacts is what judge decides from: the owner's record (nil if there
// is none) and the status of the process now holding the PID (nil if none).
type ownerFacts struct {
	pid    int
	record *netnsx.Owner
	stat   *netnsx.ProcStat
	boot   string
	note   string // why the record is missing or unreadable
	// killed: a SIGKILL is pending. Between kill(2) and do_exit the victim
	// still looks alive in /proc/PID/stat.
	killed bool
}

func readOwner(pid int) ownerFacts {
	f := ownerFacts{pid: pid}
	if st, err := netnsx.ReadProcStat(pid); err == nil {
		f.stat = &st
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			f.killed = sigkillPending(b)
		}
	}
	rec, err := netnsx.ReadOwner(pid)
	switch {
	case err == nil:
		f.record = &rec
	case errors.Is(err, os.ErrNotExist):
		f.note = "no owner record, so a reused PID cannot be ruled out"
	default:
		f.note = err.Error()
	}
	return f
}

// judge decides from the facts alone. A verdict with exiting set still needs
// the wait.
func judge(f ownerFacts) ownerVerdict {
	switch {
	case f.stat == nil:
		return ownerVerdict{gone: true, reason: fmt.Sprintf("owner pid %d has exited", f.pid)}
	case f.record != nil && f.boot != "" && f.record.BootID != "" && f.record.BootID != f.boot:
		return ownerVerdict{gone: true, reason: fmt.Sprintf("owner pid %d belongs to an earlier boot (%s)", f.pid, f.record.BootID)}
	case f.record != nil && f.record.StartTime != f.stat.StartTime:
		return ownerVerdict{gone: true, reason: fmt.Sprintf("pid %d is now another process (%q, started at tick %d; the owner started at tick %d)",
			f.pid, f.stat.Comm, f.stat.StartTime, f.record.StartTime)}
	case f.stat.Exiting():
		return ownerVerdict{exiting: true, reason: fmt.Sprintf("owner pid %d (%s) is exiting (state %c)", f.pid, f.stat.Comm, f.stat.State)}
	case f.killed:
		return ownerVerdict{exiting: true, reason: fmt.Sprintf("owner pid %d (%s) has a SIGKILL pending", f.pid, f.stat.Comm)}
	}
	reason := fmt.Sprintf("its run is alive: pid %d (%s, state %c)", f.pid, f.stat.Comm, f.stat.State)
	if f.note != "" {
		reason += "; " + f.note
	}
	return ownerVerdict{alive: true, reason: reason}
}

// sigkillPending reports whether SIGKILL is among the pending signals of a
// /proc/PID/status: SigPnd (the thread's) or ShdPnd (the process's, where a
// kill(2) of the whole process queues it until the last thread is gone).
func sigkillPending(status []byte) bool {
	const sigkill = 1 << (syscall.SIGKILL - 1)
	for _, line := range strings.Split(string(status), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "SigPnd" && key != "ShdPnd") {
			continue
		}
		if mask, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64); err == nil && mask&sigkill != 0 {
			return true
		}
	}
	return false
}

// judgeOwner reads the facts about pid and decides, waiting (bounded by
// exitWait and ctx) for an owner that is exiting.
func judgeOwner(ctx context.Context, pid int, boot string) ownerVerdict {
	f := readOwner(pid)
	f.boot = boot
	v := judge(f)
	if !v.exiting {
		return v
	}
	ctx, cancel := context.WithTimeout(ctx, exitWait)
	defer cancel()
	exited, err := waitThreadGroupExit(ctx, pid, f.stat.StartTime)
	switch {
	case exited && (f.stat.State == 'Z' || f.killed):
		return ownerVerdict{gone: true, reason: fmt.Sprintf("owner pid %d is a zombie its parent (pid %d) has not reaped", pid, f.stat.PPID)}
	case exited:
		return ownerVerdict{gone: true, reason: fmt.Sprintf("owner pid %d has exited", pid)}
	}
	now := "still exiting after " + exitWait.String()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		now = "could not wait for its exit: " + err.Error()
	}
	if st, err := netnsx.ReadProcStat(pid); err == nil {
		now += fmt.Sprintf(" (state %c, %d threads)", st.State, st.NumThreads)
	}
	return ownerVerdict{reason: fmt.Sprintf("owner pid %d (%s) %s; run the sweep again", pid, f.stat.Comm, now)}
}

// waitThreadGroupExit waits until every thread of the process pid, which
// started at startTime, has exited (it is then a zombie or gone), or ctx
// ends. A pidfd becomes readable exactly then; without pidfds (Linux < 5.3)
// it looks every exitPoll.
func waitThreadGroupExit(ctx context.Context, pid int, startTime uint64) (bool, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return true, nil
	}
	if err != nil {
		return pollThreadGroupExit(ctx, pid, startTime)
	}
	defer unix.Close(fd)
	if st, err := netnsx.ReadProcStat(pid); err != nil || st.StartTime != startTime {
		return true, nil // the PID changed hands before the pidfd was opened
	}
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(exitPoll/time.Millisecond)) // slices, so ctx is noticed
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false, fmt.Errorf("poll pidfd of %d: %w", pid, err)
		}
		if n > 0 {
			return true, nil
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
	}
}

func pollThreadGroupExit(ctx context.Context, pid int, startTime uint64) (bool, error) {
	tick := time.NewTicker(exitPoll)
	defer tick.Stop()
	for {
		st, err := netnsx.ReadProcStat(pid)
		if err != nil || st.StartTime != startTime {
			return true, nil
		}
		if st.Zombie() {
			tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
			if err != nil || len(tasks) <= 1 {
				return true, nil
			}
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-tick.C:
		}
	}
}

// killProcessesIn SIGKILLs every process whose network namespace is the one
// bound at name, comparing namespace inode numbers as `ip netns pids` does
// (the namespace is found even where a later mount of /run/netns hides its
// binding).
func killProcessesIn(name string) ([]int, error) {
	target, ok, err := netnsx.LookupNamed(name)
	if err != nil {
		return nil, fmt.Errorf("find namespace %s: %w", name, err)
	}
	if !ok {
		return nil, nil // a plain file: no namespace, no processes
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	self := os.Getpid()
	var killed []int
	var errs []error
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", p.Name(), "ns", "net"), &st) != nil {
			continue // exited, a zombie, or a kernel thread
		}
		if uint64(st.Ino) != target.Ino || uint64(st.Dev) != target.Dev {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill pid %d in %s: %w", pid, name, err))
			continue
		}
		killed = append(killed, pid)
	}
	return killed, errors.Join(errs...)
}
