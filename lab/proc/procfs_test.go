package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestReadStatSelf(t *testing.T) {
	s, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.PPID != os.Getppid() || s.StartTime == 0 {
		t.Errorf("ReadStat(self) = %+v; pid %d ppid %d", s, os.Getpid(), os.Getppid())
	}
}

// The calling process is never listed, even though it is in the namespace
// (here: its own).
func TestInNamespaceExcludesSelf(t *testing.T) {
	pids, err := InNamespace("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if pid == os.Getpid() {
			t.Fatalf("InNamespace listed the calling process %d", pid)
		}
	}
	if _, err := InNamespace("/nonexistent/ns"); err == nil {
		t.Error("InNamespace of a missing path: no error")
	}
}

func TestDirOwner(t *testing.T) {
	for _, c := range []struct {
		name  string
		pid   int
		start uint64
		ok    bool
	}{
		{"tfolab-proc-1234.5678-nginx-99", 1234, 5678, true},
		{"tfolab-proc-1234.5678-http.server-99", 1234, 5678, true},
		{"tfolab-proc-nginx-99", 0, 0, false}, // an older layout: not ours to judge
		{"tfolab-proc-12x.5-a-1", 0, 0, false},
		{"other-1.2-a-1", 0, 0, false},
	} {
		pid, start, ok := dirOwner(c.name)
		if ok != c.ok || ok && (pid != c.pid || start != c.start) {
			t.Errorf("dirOwner(%q) = %d, %d, %v; want %d, %d, %v", c.name, pid, start, ok, c.pid, c.start, c.ok)
		}
	}
}

// SweepDirs removes a dead owner's dir and keeps this program's.
func TestSweepDirs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	mine, err := dirPrefix()
	if err != nil {
		t.Fatal(err)
	}
	self, _ := ReadStat(os.Getpid())
	live := filepath.Join(tmp, mine+"x-1")
	dead := filepath.Join(tmp, fmt.Sprintf("%s%d.%d-x-2", dirPrefixBase, self.PID, self.StartTime+1)) // a reused PID
	for _, d := range []string{live, dead} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := SweepDirs()
	if err != nil || len(removed) != 1 || removed[0] != dead {
		t.Fatalf("SweepDirs = %v, %v; want [%s]", removed, err, dead)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the live program's dir was removed: %v", err)
	}
}
