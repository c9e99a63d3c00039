// Package admit bounds the CPU-heavy phases that run at once on the
// machine, across every process of every run: one slot per CPU. A phase
// is a real program whose start-up is most of a CPU second or more (the
// scapy probe's Python imports, a tshark run). Without the bound, sixteen
// parallel workers on a 2-core runner start them together, each gets an
// eighth of a CPU, and readiness waits sized for an idle machine expire;
// with it, a phase waits for a slot and then runs at full speed, and the
// timer-bound specs around it keep their precision.
//
// Lab builds are admitted the same way, with a pool of their own: building
// a topology is short (about 9 ms) but takes the RTNL lock many times, and
// two dozen workers starting 16-lab firewall checks at once made hundreds
// of builds queue on that lock beside CPU hogs until their runs' budgets
// ran out.
//
// A slot is an exclusive flock(2) on one of a pool's files in a folder all
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

// Pool is a named set of slots.
type Pool struct {
	Name string
	Size func() int
}

var (
	// CPU admits CPU-heavy phases: one slot per CPU.
	CPU = Pool{"cpu", runtime.NumCPU}
	// Builds admits lab topology builds: two per CPU.
	Builds = Pool{"build", func() int { return 2 * runtime.NumCPU() }}
)

// Acquire waits for a free CPU slot, or for ctx.
func Acquire(ctx context.Context) (*Slot, error) { return CPU.Acquire(ctx) }

// Acquire waits for a free slot of the pool, or for ctx.
func (p Pool) Acquire(ctx context.Context) (*Slot, error) {
	dir := Dir()
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("admit: %w", err)
	}
	start := time.Now()
	n := p.Size()
	for {
		for i := range n {
			f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%s-%d", p.Name, i)), os.O_CREATE|os.O_RDWR, 0o666)
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
			return nil, fmt.Errorf("admit: no %s slot free after %v: %w", p.Name, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-time.After(retry):
		}
	}
}
