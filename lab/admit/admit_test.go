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

// The folder is shared by every user's runs: the call that creates it
// leaves it and its slots writable by all (umask notwithstanding); a
// folder and slots that exist already are left as they are (root could
// chmod anyone's), a slot that is a symlink is refused rather than
// followed, and a read-only slot serves (flock needs no write access).
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

	// Someone else's folder: a read-only slot-0, slot-1 a symlink.
	other := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "slot-0"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(other, "slot-1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(other, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TFOLAB_ADMIT_DIR", other)
	s, err = Acquire(context.Background())
	if err != nil {
		t.Fatalf("a read-only slot: %v", err)
	}
	s.Release()
	if _, err := openSlot(filepath.Join(other, "slot-1")); err == nil {
		t.Error("a symlinked slot was opened")
	}
	for path, want := range map[string]fs.FileMode{other: fs.ModeDir | 0o755, filepath.Join(other, "slot-0"): 0o444, victim: 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v: changed by Acquire", path, st.Mode(), err, want)
		}
	}
}
