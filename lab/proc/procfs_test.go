package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestParseStat(t *testing.T) {
	for _, c := range []struct {
		line string
		want Stat
	}{
		{
			"10794 (cat) R 10788 10788 3369 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 75422 3133440 389 18446744073709551615",
			Stat{PID: 10794, Comm: "cat", State: 'R', PPID: 10788, PGID: 10788, Session: 3369, Flags: 4194304, NumThreads: 1, StartTime: 75422},
		},
		{
			// comm may hold spaces and parentheses: it ends at the last ')'.
			"42 (a) Z 1 (b) Z 7 8 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0",
			Stat{PID: 42, Comm: "a) Z 1 (b", State: 'Z', PPID: 7, PGID: 8, Session: 9, NumThreads: 1, StartTime: 555},
		},
		{
			"7 (web server) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0\n",
			Stat{PID: 7, Comm: "web server", State: 'S', PPID: 1, PGID: 7, Session: 7, NumThreads: 1, StartTime: 99},
		},
	} {
		got, err := ParseStat([]byte(c.line))
		if err != nil {
			t.Errorf("ParseStat(%q): %v", c.line, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseStat(%q) = %+v, want %+v", c.line, got, c.want)
		}
	}
	if s, _ := ParseStat([]byte("42 (a) Z 1 (b) Z 7 8 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0")); !s.Zombie() {
		t.Error("state Z not reported as a zombie")
	}
}

func TestParseStatRejectsGarbage(t *testing.T) {
	for _, bad := range []string{
		"",
		"12 cat R 1 2 3",
		"x (cat) R 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0",
		"12 (cat) R 1 1 1",
		"12 (cat) RR 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0",
		"12 (cat) R one 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0",
	} {
		if s, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) = %+v, want an error", bad, s)
		}
	}
}

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
