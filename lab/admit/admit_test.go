package admit

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// The folder is shared by every user's runs: the one who creates it
// leaves it and its slots writable by all (umask notwithstanding), and a
// folder someone else made read-only for us still serves its slots, since
// flock(2) needs no write access. (As root the second half holds anyway;
// `go test` as another user is what tries it.)
func TestSlotsSharedAcrossUsers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "admit")
	t.Setenv("TFOLAB_ADMIT_DIR", dir)
	old := unix.Umask(0o022)
	s, err := Acquire(context.Background())
	unix.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	s.Release()
	for path, want := range map[string]fs.FileMode{dir: fs.ModeDir | fs.ModeSticky | 0o777, filepath.Join(dir, "slot-0"): 0o666} {
		if st, err := os.Stat(path); err != nil || st.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, st.Mode(), err, want)
		}
	}

	ro := t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "slot-0"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(ro, 0o755) })
	t.Setenv("TFOLAB_ADMIT_DIR", ro)
	s, err = Acquire(context.Background())
	if err != nil {
		t.Fatalf("a read-only folder's slot: %v", err)
	}
	s.Release()
}
