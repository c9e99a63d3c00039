// Package admit bounds the CPU-heavy phases that run at once on the
// machine, across every process of every run: one slot per CPU. A phase
// is a real program whose start-up is most of a CPU second or more (the
// scapy probe's Python imports, a tshark run). Without the bound, sixteen
// parallel workers on a 2-core runner start them together, each gets an
// eighth of a CPU, and readiness waits sized for an idle machine expire;
// with it, a phase waits for a slot and then runs at full speed, and the
// timer-bound specs around it keep their precision.
//
// A slot is an exclusive flock(2) on one of NumCPU files in a folder all
// runs share; the kernel drops it when the holder dies, so a killed run
// never keeps a slot.
package admit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Dir holds the slot files; TFOLAB_ADMIT_DIR overrides it (tests).
func Dir() string {
	if d := os.Getenv("TFOLAB_ADMIT_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "tfolab-admit")
}

// retry is how often a waiting phase tries the slots again.
const retry = 5 * time.Millisecond

// Slot is a held slot.
type Slot struct {
	f      *os.File
	Waited time.Duration // how long Acquire waited for it
}

// Release gives the slot back.
func (s *Slot) Release() {
	if s != nil && s.f != nil {
		s.f.Close() // drops the lock
		s.f = nil
	}
}

// Acquire waits for a free slot, or for ctx.
//
// The folder is shared by every user's runs (a root suite and a user's
// unit tests), so the call that creates it, and the call that creates a
// slot, make them writable by all whatever the umask; nothing that exists
// already is changed (root could chmod anyone's files), and a slot that is
// a symlink is refused. A slot is opened read-only: on a local file system
// flock(2) locks a file whatever mode it was opened in, so the slots of a
// folder another user made (0755, 0644 under a umask of 022) serve as well.
func Acquire(ctx context.Context) (*Slot, error) {
	dir := Dir()
	if err := os.MkdirAll(filepath.Dir(dir), 0o777); err != nil {
		return nil, fmt.Errorf("admit: %w", err)
	}
	if err := os.Mkdir(dir, 0o777); err == nil {
		_ = os.Chmod(dir, os.ModeSticky|0o777)
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("admit: %w", err)
	}
	start := time.Now()
	n := runtime.NumCPU()
	for {
		opened := 0
		for i := range n {
			path := filepath.Join(dir, fmt.Sprintf("slot-%d", i))
			f, err := openSlot(path)
			if errors.Is(err, fs.ErrPermission) {
				continue // a slot another user's folder lacks, and we cannot add
			}
			if err != nil {
				return nil, fmt.Errorf("admit: %w", err)
			}
			opened++
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				return &Slot{f: f, Waited: time.Since(start)}, nil
			}
			f.Close()
			if err != unix.EWOULDBLOCK {
				return nil, fmt.Errorf("admit: lock slot %d: %w", i, err)
			}
		}
		if opened == 0 {
			return nil, fmt.Errorf("admit: no slot in %s can be opened (permission denied): remove the folder, or set TFOLAB_ADMIT_DIR", dir)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("admit: no CPU slot free after %v: %w", time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-time.After(retry):
		}
	}
}

// openSlot opens the slot at path read-only, creating it writable by all
// if it is missing; it never follows a symlink.
func openSlot(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY|unix.O_NOFOLLOW, 0o666)
	if err == nil {
		_ = f.Chmod(0o666) // ours: past the umask
		return f, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
}
