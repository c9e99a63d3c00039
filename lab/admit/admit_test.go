package admit

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// Every CPU's slot can be held at once; one more waits until one is
// released, and gives up with its context.
func TestSlotsBoundedByCPUs(t *testing.T) {
	t.Setenv("TFOLAB_ADMIT_DIR", t.TempDir())
	var held []*Slot
	for range runtime.NumCPU() {
		s, err := Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("one slot more than CPUs: %v, want a deadline error", err)
	}
	go func() {
		time.Sleep(30 * time.Millisecond)
		held[0].Release()
	}()
	s, err := Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Waited < 20*time.Millisecond {
		t.Errorf("acquired after %v, before the release", s.Waited)
	}
	s.Release()
	for _, h := range held[1:] {
		h.Release()
	}
}
