package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tfolab/tfolab/lab/netnsx"
)

// Stat is /proc/PID/stat as lab/netnsx reads it for the sweeper: one
// parser of that line for the whole lab.
type Stat = netnsx.ProcStat

// ReadStat reads /proc/PID/stat (netnsx.ReadProcStat); the error wraps
// os.ErrNotExist when there is no such process.
func ReadStat(pid int) (Stat, error) { return netnsx.ReadProcStat(pid) }

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
