package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `tfolab run -f` with a malformed file: bad input (exit 2), one line
// naming file:line, well under a second, before anything needs root.
func TestRunFileRefusesAMalformedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(path, []byte("services: [{kind: listener}]\nclients:\n  - {count: 3, node: clinet}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"run", "-f", path, "--keep"}, {"run", "--file", path}} {
		start := time.Now()
		out, code := tfolab(t, args...)
		took := time.Since(start)
		if code != exitBadInput {
			t.Fatalf("%v: exit %d, want %d:\n%s", args, code, exitBadInput, out)
		}
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], path+":3: ") {
			t.Errorf("%v: want one line at %s:3, got %q", args, path, out)
		}
		if took > 500*time.Millisecond {
			t.Errorf("%v: took %v", args, took)
		}
		t.Logf("refused in %v: %s", took, strings.TrimSpace(out))
	}
}

// run takes a NAME or -f FILE, not both, and not neither.
func TestRunNameOrFile(t *testing.T) {
	for _, args := range [][]string{{"run"}, {"run", "baseline/routed/ipv4/sendto/cookie-then-data", "-f", "x.yaml"}} {
		out, code := tfolab(t, args...)
		if code != exitBadInput || strings.Count(strings.TrimSpace(out), "\n") > 1 {
			t.Errorf("%v: exit %d:\n%s", args, code, out)
		}
	}
}

// `tfolab export NAME` writes a file that loads; an unknown NAME is bad
// input.
func TestExport(t *testing.T) {
	out, code := tfolab(t, "export", "middlebox/drop-syn-data/router/ipv4/sendto")
	if code != exitPass || !strings.Contains(out, "behaviour: drop-syn-data") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if out, code := tfolab(t, "export", "no/such/scenario"); code != exitBadInput {
		t.Errorf("unknown scenario: exit %d:\n%s", code, out)
	}
}
