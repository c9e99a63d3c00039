package lab_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/labtest"
)

// newNamespace skips t unless a lab can be built here (see lab.Preflight),
// and returns a new Lab with a namespace for role (see labtest.Namespace).
func newNamespace(t *testing.T, role string) (*lab.Lab, *lab.Namespace) {
	t.Helper()
	if err := lab.Preflight(); err != nil {
		t.Skipf("needs root: %v", err)
	}
	return labtest.Namespace(t, role)
}

// A process started in a namespace lives there, and the Lab's teardown
// ends it: a killed server or peer must never outlive its lab.
func TestStartProcessInNamespaceAndTeardown(t *testing.T) {
	l, ns := newNamespace(t, "proc")
	cmd := exec.Command("sleep", "60")
	if err := l.StartProcess(ns, cmd); err != nil {
		t.Fatal(err)
	}
	var want, got syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+ns.Name, &want); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), &got); err != nil {
		t.Fatal(err)
	}
	if got.Ino != want.Ino {
		t.Fatalf("process is in netns inode %d, want %d (%s)", got.Ino, want.Ino, ns.Name)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", cmd.Process.Pid)); err == nil {
		t.Fatalf("process %d outlived its lab", cmd.Process.Pid)
	}
	if _, err := os.Stat("/run/netns/" + ns.Name); err == nil {
		t.Fatalf("namespace %s outlived its lab", ns.Name)
	}
}

// Counter reads the namespace it was first used in, from any thread, and
// agrees with Counters; it sees a counter move (a namespace's own traffic).
func TestCounterFollowsItsNamespace(t *testing.T) {
	_, ns := newNamespace(t, "ctr")
	read := func() int64 {
		v, err := ns.Counter("Tcp.ActiveOpens")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := read(); v != 0 {
		t.Fatalf("fresh namespace: Tcp.ActiveOpens = %d, want 0", v)
	}
	// A refused connection to the namespace's own loopback opens actively.
	_ = ns.Do(func() error {
		c, err := net.Dial("tcp", "127.0.0.1:9")
		if err == nil {
			c.Close()
		}
		return nil
	})
	if v := read(); v != 1 {
		t.Errorf("after one connect: Tcp.ActiveOpens = %d, want 1", v)
	}
	all, err := ns.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := all.Get("Tcp.ActiveOpens"); v != read() {
		t.Errorf("Counters says %d, Counter %d", v, read())
	}
	if _, err := ns.Counter("TcpExt.NoSuchCounter"); err == nil {
		t.Error("an absent counter read without error")
	}
}

// DeferIn skips what the Lab's own namespace deletion removes anyway, and
// runs what lives in another Lab's namespace.
func TestDeferInSkipsWhatTheNamespaceTakes(t *testing.T) {
	owner, ns := newNamespace(t, "defer")
	var ran []string
	other := lab.New()
	other.DeferIn(ns, "rule of another lab", func() error { ran = append(ran, "other"); return nil })
	owner.DeferIn(ns, "rule of the owner", func() error { ran = append(ran, "owner"); return nil })
	owner.Defer("plain", func() error { ran = append(ran, "plain"); return nil })
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"other", "plain"}; !slices.Equal(ran, want) {
		t.Errorf("ran %v, want %v", ran, want)
	}
}
