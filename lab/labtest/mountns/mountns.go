// Package mountns runs a test again in a child process that has a mount
// namespace of its own and a fresh tmpfs on /run, so that the test sees
// only the namespaces and files it makes there, and the host's /run (its
// /run/netns above all) is never touched: whatever the child leaves
// disappears with its mount namespace.
//
// Only tests import it, and it imports no tfolab package, so that the
// internal tests of lab and lab/netnsx can use it (lab/labtest imports
// both, see its package comment).
package mountns

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Private returns true in the child, where the test should do its work,
// once a tmpfs is mounted on /run. In the parent it skips t unless it runs
// as root and every command of needs is on PATH, runs t again in the child
// (env, set to t's name, tells the child it is one) for at most timeout,
// fails t if the child failed, logs the child's output and returns false.
func Private(t *testing.T, env string, timeout time.Duration, needs ...string) bool {
	t.Helper()
	if os.Getenv(env) == t.Name() {
		if err := unix.Mount("tfolab-test", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			t.Fatalf("mount a tmpfs on /run in the private mount namespace: %v", err)
		}
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: mount and network namespaces")
	}
	for _, c := range needs {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s on PATH", c)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v", "-test.timeout="+timeout.String())
	cmd.Env = append(os.Environ(), env+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("in a private mount namespace: %v\n%s", err, out)
	}
	t.Logf("in a private mount namespace:\n%s", out)
	return false
}
