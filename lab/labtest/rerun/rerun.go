// Package rerun runs the test binary again: for a helper test that plays
// a part in another test (a process to kill, a worker to race), or for a
// test itself, in a child process that has a mount namespace of its own
// and a fresh tmpfs on /run, so that the test sees only the namespaces and
// files it makes there and the host's /run (its /run/netns above all) is
// never touched: whatever the child leaves disappears with its mount
// namespace.
//
// Only tests import it, and it imports no tfolab package, so that the
// internal tests of lab and lab/netnsx can use it (lab/labtest imports
// both, see its package comment).
package rerun

import (
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Command is the test binary run again (not yet started) for the one test
// named test, once, with env=value in its environment and the test flags
// of args after the others ("-test.v", ...).
func Command(ctx context.Context, test, env, value string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^" + regexp.QuoteMeta(test) + "$", "-test.count=1"}, args...)...)
	cmd.Env = append(os.Environ(), env+"="+value)
	return cmd
}

// Pipes returns a pipe to cmd's stdin and one from its stdout, failing t
// if it cannot make them.
func Pipes(t testing.TB, cmd *exec.Cmd) (stdin io.WriteCloser, stdout io.ReadCloser) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err = cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	return stdin, stdout
}

// InPrivateMountNS returns true in the child, where the test should do its
// work, once a tmpfs is mounted on /run. In the parent it skips t unless
// it runs as root and every command of needs is on PATH, runs t again in
// the child (env, set to t's name, tells the child it is one) for at most
// timeout, fails t if the child failed, logs the child's output and
// returns false.
func InPrivateMountNS(t *testing.T, env string, timeout time.Duration, needs ...string) bool {
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
	cmd := Command(ctx, t.Name(), env, t.Name(), "-test.v", "-test.timeout="+timeout.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("in a private mount namespace: %v\n%s", err, out)
	}
	t.Logf("in a private mount namespace:\n%s", out)
	return false
}
