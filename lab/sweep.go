package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/tfolab/tfolab/lab/netnsx"
)

// netnsDir is where `ip netns` and netns.NewNamed bind named namespaces.
const netnsDir = "/run/netns"

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

// SweepResult says what Sweep removed and what it left alone.
type SweepResult struct {
	Removed []string
	Skipped []string // namespaces of a run that is still alive
	Killed  []int    // PIDs of processes that were still inside a removed namespace
}

// Sweep removes lab namespaces whose creating process is gone (all of them
// when all is true), after killing any process still running inside them
// (a server or peer a killed run left behind). Links, addresses, routes and
// iptables rules live inside the namespaces, so they go with them.
func Sweep(all bool) (SweepResult, error) {
	var res SweepResult
	names, err := ListNamespaces()
	if err != nil {
		return res, err
	}
	var errs []error
	for _, name := range names {
		if pid := OwnerPID(name); !all && pid > 0 && processAlive(pid) {
			res.Skipped = append(res.Skipped, name)
			continue
		}
		killed, err := killProcessesIn(filepath.Join(netnsDir, name))
		res.Killed = append(res.Killed, killed...)
		if err != nil {
			errs = append(errs, err)
		}
		if err := netnsx.DeleteNamed(name); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Removed = append(res.Removed, name)
	}
	return res, errors.Join(errs...)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// killProcessesIn SIGKILLs every process whose network namespace is the one
// bound at path, comparing namespace inode numbers as `ip netns pids` does.
func killProcessesIn(path string) ([]int, error) {
	var target syscall.Stat_t
	if err := syscall.Stat(path, &target); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
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
			continue // exited, or a kernel thread
		}
		if st.Ino != target.Ino || st.Dev != target.Dev {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill pid %d in %s: %w", pid, path, err))
			continue
		}
		killed = append(killed, pid)
	}
	return killed, errors.Join(errs...)
}
