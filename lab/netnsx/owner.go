package netnsx

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// Owner records: how a sweeper tells a live run from a killed one.
//
// A lab namespace's name carries the PID of the process that made it, but
// a PID says little on its own: kill(pid, 0) succeeds on a zombie (after a
// SIGKILL of a whole run the test processes can stay zombies for as long as
// their parent does not reap them, forever where PID 1 never reaps), and a
// PID can be reused by an unrelated process. A process is identified by its
// PID together with its start time (field 22 of /proc/PID/stat, clock ticks
// since boot) and the boot it belongs to.
//
// So the first NewNamed of a process writes OwnersDir/<pid> (JSON: pid,
// start time, boot ID) before it binds anything, and the last DeleteNamed of
// the names it made removes it. A namespace of this package therefore never
// exists without its owner's record, except one left by a killed process,
// whose record stays for the sweeper. The sweeper compares the record with
// /proc/<pid>/stat: no such process, another start time or boot, or a
// zombie means the owner is gone.

// OwnersDir holds one record per process that owns named namespaces.
const OwnersDir = "/run/tfolab/owners"

// Owner is a process that created named namespaces.
type Owner struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"` // clock ticks after boot, /proc/PID/stat field 22
	BootID    string `json:"boot_id"`    // /proc/sys/kernel/random/boot_id
}

func ownerPath(pid int) string { return filepath.Join(OwnersDir, strconv.Itoa(pid)) }

// ReadOwner returns the record of pid; the error wraps os.ErrNotExist when
// there is none.
func ReadOwner(pid int) (Owner, error) {
	b, err := os.ReadFile(ownerPath(pid))
	if err != nil {
		return Owner{}, fmt.Errorf("read owner record: %w", err)
	}
	var o Owner
	if err := json.Unmarshal(b, &o); err != nil {
		return Owner{}, fmt.Errorf("parse owner record %s: %w", ownerPath(pid), err)
	}
	if o.PID != pid {
		return Owner{}, fmt.Errorf("owner record %s names pid %d", ownerPath(pid), o.PID)
	}
	return o, nil
}

// RemoveOwner deletes the record of pid, if there is one.
func RemoveOwner(pid int) error {
	if err := os.Remove(ownerPath(pid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove owner record: %w", err)
	}
	return nil
}

// ListOwners returns the PIDs that have a record.
func ListOwners() ([]int, error) {
	entries, err := os.ReadDir(OwnersDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list owner records: %w", err)
	}
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// owned tracks the names this process bound, so that its record lives
// exactly as long as one of them does.
var owned ownedNames

type ownedNames struct {
	mu    sync.Mutex
	names map[string]struct{}
}

// add registers name, writing the record first if it is the first name.
func (o *ownedNames) add(name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.names) == 0 {
		if err := writeOwnRecord(); err != nil {
			return err
		}
	}
	if o.names == nil {
		o.names = map[string]struct{}{}
	}
	o.names[name] = struct{}{}
	return nil
}

// forget drops name (a name this process did not bind is ignored) and the
// record with the last one.
func (o *ownedNames) forget(name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.names[name]; !ok {
		return nil
	}
	delete(o.names, name)
	if len(o.names) == 0 {
		return RemoveOwner(os.Getpid())
	}
	return nil
}

func writeOwnRecord() error {
	pid := os.Getpid()
	st, err := ReadProcStat(pid)
	if err != nil {
		return fmt.Errorf("write owner record: %w", err)
	}
	boot, err := BootID()
	if err != nil {
		return fmt.Errorf("write owner record: %w", err)
	}
	b, err := json.Marshal(Owner{PID: pid, StartTime: st.StartTime, BootID: boot})
	if err != nil {
		return fmt.Errorf("write owner record: %w", err)
	}
	if err := os.MkdirAll(OwnersDir, 0o755); err != nil {
		return fmt.Errorf("write owner record: %w", err)
	}
	// Written aside and renamed, so that a reader never sees half of it.
	tmp := ownerPath(pid) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write owner record: %w", err)
	}
	if err := os.Rename(tmp, ownerPath(pid)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write owner record: %w", err)
	}
	return nil
}
