package lab

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// A process started in a namespace lives there, and the Lab's teardown
// ends it: a killed server or peer must never outlive its lab.
func TestStartProcessInNamespaceAndTeardown(t *testing.T) {
	if err := Preflight(); err != nil {
		t.Skipf("needs root: %v", err)
	}
	l := New()
	defer l.Close()
	ns, err := l.AddNamespace("proc")
	if err != nil {
		t.Fatal(err)
	}
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
