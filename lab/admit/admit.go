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
	"fmt"
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
func Acquire(ctx context.Context) (*Slot, error) {
	dir := Dir()
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("admit: %w", err)
	}
	start := time.Now()
	n := runtime.NumCPU()
	for {
		for i := range n {
			f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("slot-%d", i)), os.O_CREATE|os.O_RDWR, 0o666)
			if err != nil {
				return nil, fmt.Errorf("admit: %w", err)
			}
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				return &Slot{f: f, Waited: time.Since(start)}, nil
			}
			f.Close()
			if err != unix.EWOULDBLOCK {
				return nil, fmt.Errorf("admit: lock slot %d: %w", i, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("admit: no CPU slot free after %v: %w", time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-time.After(retry):
		}
	}
}
