package netnsx

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// What /proc says about a process and the boot it belongs to: together
// with its PID, a process's start time and the boot ID identify it across
// PID reuse and reboots (see the owner records in owner.go).

// BootID identifies the running boot.
func BootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ProcStat is what the lab reads of /proc/PID/stat (proc_pid_stat(5)):
// the sweeper here, and lab/proc's process runner.
type ProcStat struct {
	PID        int
	Comm       string // may contain spaces and parentheses
	State      byte   // R, S, D, Z (zombie), X (dead), T, t, I, ...
	PPID       int
	PGID       int
	Session    int
	Flags      uint64 // PF_* flags, field 9
	NumThreads int
	StartTime  uint64 // clock ticks after boot, field 22; with PID it identifies a process across PID reuse
	// CPU is the time it has run, user and system (utime + stime, fields
	// 14 and 15).
	CPU time.Duration
}

// Zombie reports a process that has exited and waits to be reaped.
func (s ProcStat) Zombie() bool { return s.State == 'Z' || s.State == 'X' }

// pfExiting is PF_EXITING (include/linux/sched.h): set when a thread has
// begun to exit, before it becomes a zombie.
const pfExiting = 0x4

// Exiting reports a process that has exited or is exiting: a zombie, a
// dead task being reaped, or a leader that do_exit has started on.
func (s ProcStat) Exiting() bool {
	return s.Zombie() || s.Flags&pfExiting != 0
}

// ReadProcStat reads /proc/<pid>/stat; the error wraps os.ErrNotExist when
// there is no such process.
func ReadProcStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, fmt.Errorf("read process status: %w", err)
	}
	st, err := ParseProcStat(b)
	if err != nil {
		return ProcStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

// ParseProcStat parses the one line of /proc/PID/stat. The command name
// (field 2) is in parentheses and may itself contain spaces and
// parentheses, so the fields after it start after the last ')'.
func ParseProcStat(b []byte) (ProcStat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return ProcStat{}, fmt.Errorf("parse stat %q: no (comm)", truncate(b))
	}
	var st ProcStat
	var err error
	if st.PID, err = strconv.Atoi(string(bytes.TrimSpace(b[:open]))); err != nil {
		return ProcStat{}, fmt.Errorf("parse stat %q: pid: %w", truncate(b), err)
	}
	st.Comm = string(b[open+1 : end])
	// rest[0] is field 3 (state): field k is rest[k-3].
	rest := strings.Fields(string(b[end+1:]))
	if len(rest) < 20 || len(rest[0]) != 1 {
		return ProcStat{}, fmt.Errorf("parse stat %q: %d fields after comm, want at least 20", truncate(b), len(rest))
	}
	st.State = rest[0][0]
	fields := []struct {
		k   int
		dst any
	}{{4, &st.PPID}, {5, &st.PGID}, {6, &st.Session}, {9, &st.Flags}, {20, &st.NumThreads}, {22, &st.StartTime}}
	for _, f := range fields {
		v := rest[f.k-3]
		switch d := f.dst.(type) {
		case *int:
			*d, err = strconv.Atoi(v)
		case *uint64:
			*d, err = strconv.ParseUint(v, 10, 64)
		}
		if err != nil {
			return ProcStat{}, fmt.Errorf("parse stat %q: field %d: %w", truncate(b), f.k, err)
		}
	}
	for _, k := range []int{14, 15} { // utime, stime, in clock ticks (USER_HZ, 100 on Linux)
		ticks, err := strconv.ParseUint(rest[k-3], 10, 64)
		if err != nil {
			return ProcStat{}, fmt.Errorf("parse stat %q: field %d: %w", truncate(b), k, err)
		}
		st.CPU += time.Duration(ticks) * 10 * time.Millisecond
	}
	return st, nil
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(bytes.TrimSpace(b))
}
