package main

import (
	"errors"
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
	start := time.Now()
	err := run([]string{"run", "-f", path, "--keep"})
	took := time.Since(start)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("want bad input (exit 2), got %v", err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, path+":3: ") {
		t.Errorf("want one line at %s:3, got %q", path, msg)
	}
	if took > 500*time.Millisecond {
		t.Errorf("took %v", took)
	}
	t.Logf("refused in %v: %v", took, err)
}
