package proc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Stat is the part of /proc/PID/stat this package needs (see proc_pid_stat(5)).
type Stat struct {
	PID       int
	Comm      string // may contain spaces and parentheses
	State     byte   // 'R', 'S', 'D', 'Z' (zombie), 'X' (dead), ...
	PPID      int
	PGID      int
	Session   int
	StartTime uint64 // clock ticks after boot; with PID it identifies a process across PID reuse
	// CPU is the time it has run, user and system (utime + stime).
	CPU time.Duration
}

// Zombie reports whether the process has exited and waits to be reaped.
func (s Stat) Zombie() bool { return s.State == 'Z' || s.State == 'X' }

// ParseStat parses one /proc/PID/stat line. The comm field is everything
// between the first '(' and the LAST ')': a program may name itself
// "a) S 1 (b", so splitting on spaces is wrong.
func ParseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return Stat{}, fmt.Errorf("stat %q: no (comm)", b)
	}
	var s Stat
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return Stat{}, fmt.Errorf("stat %q: pid: %w", b, err)
	}
	s.PID = pid
	s.Comm = string(b[open+1 : closing])
	// Fields after comm, numbered from 3 (state) as in proc_pid_stat(5).
	f := bytes.Fields(b[closing+1:])
	field := func(n int) []byte { return f[n-3] }
	if len(f) < 22-2 {
		return Stat{}, fmt.Errorf("stat of pid %d: %d fields after comm, want at least %d", pid, len(f), 22-2)
	}
	if len(field(3)) != 1 {
		return Stat{}, fmt.Errorf("stat of pid %d: state %q", pid, field(3))
	}
	s.State = field(3)[0]
	ints := []struct {
		n   int
		dst *int
	}{{4, &s.PPID}, {5, &s.PGID}, {6, &s.Session}}
	for _, x := range ints {
		if *x.dst, err = strconv.Atoi(string(field(x.n))); err != nil {
			return Stat{}, fmt.Errorf("stat of pid %d: field %d: %w", pid, x.n, err)
		}
	}
	if s.StartTime, err = strconv.ParseUint(string(field(22)), 10, 64); err != nil {
		return Stat{}, fmt.Errorf("stat of pid %d: starttime: %w", pid, err)
	}
	for _, n := range []int{14, 15} { // utime, stime, in clock ticks (USER_HZ, 100 on Linux)
		ticks, err := strconv.ParseUint(string(field(n)), 10, 64)
		if err != nil {
			return Stat{}, fmt.Errorf("stat of pid %d: field %d: %w", pid, n, err)
		}
		s.CPU += time.Duration(ticks) * 10 * time.Millisecond
	}
	return s, nil
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return Stat{}, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return ParseStat(b)
}

// pids lists the numeric entries of /proc.
func pids() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

// GroupMembers lists the processes whose process group is pgid, zombies
// included (their Stat says so), in PID order.
func GroupMembers(pgid int) ([]Stat, error) {
	all, err := pids()
	if err != nil {
		return nil, err
	}
	var out []Stat
	for _, pid := range all {
		s, err := ReadStat(pid)
		if err != nil {
			continue // exited and reaped meanwhile
		}
		if s.PGID == pgid {
			out = append(out, s)
		}
	}
	return out, nil
}

// InNamespace lists the PIDs of live processes inside the network namespace
// that nsPath refers to (a /run/netns/NAME binding, /proc/PID/ns/net, or
// /proc/self/fd/N of a namespace handle), compared by device and inode as
// `ip netns pids` does. The calling process is never listed, even when
// some of its threads are inside, so a sweeper cannot kill itself.
//
// Zombies are not listed: the kernel drops a task's namespaces when it
// exits, so /proc/PID/ns/net of a zombie does not resolve; a zombie holds
// no reference to the namespace and cannot be killed, only reaped by its
// parent. One exception is handled: a process whose main thread has exited
// while other threads run shows state Z but is alive, and is matched by
// its remaining threads' namespaces.
func InNamespace(nsPath string) ([]int, error) {
	var target syscall.Stat_t
	if err := syscall.Stat(nsPath, &target); err != nil {
		return nil, fmt.Errorf("stat namespace %s: %w", nsPath, err)
	}
	all, err := pids()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var out []int
	for _, pid := range all {
		if pid == self {
			continue
		}
		dir := filepath.Join("/proc", strconv.Itoa(pid))
		if sameFile(filepath.Join(dir, "ns", "net"), &target) || zombieLeaderIn(pid, dir, &target) {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out, nil
}

func sameFile(path string, target *syscall.Stat_t) bool {
	var st syscall.Stat_t
	return syscall.Stat(path, &st) == nil && st.Ino == target.Ino && st.Dev == target.Dev
}

// zombieLeaderIn handles a thread group whose leader is a zombie but whose
// other threads still run inside the namespace.
func zombieLeaderIn(pid int, dir string, target *syscall.Stat_t) bool {
	s, err := ReadStat(pid)
	if err != nil || !s.Zombie() {
		return false
	}
	tasks, err := os.ReadDir(filepath.Join(dir, "task"))
	if err != nil {
		return false
	}
	for _, t := range tasks {
		if t.Name() != strconv.Itoa(pid) && sameFile(filepath.Join(dir, "task", t.Name(), "ns", "net"), target) {
			return true
		}
	}
	return false
}

// EnableSubreaper makes the calling process a child subreaper
// (PR_SET_CHILD_SUBREAPER): orphaned descendants are re-parented to it
// instead of PID 1. With it, Stop reaps every member of a process's group
// (nginx workers, a shell's background jobs), so none is left a zombie even
// on hosts whose PID 1 reaps late or never. Without it, the members that
// outlive their leader are killed but reaped by PID 1.
//
// It is process-wide and affects orphans of every child, including ones
// this package did not start (they would stay zombies until this process
// exits), so it is left to the program's main or TestMain to opt in.
func EnableSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}
