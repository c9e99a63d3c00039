package main

import (
	"slices"
	"testing"
	"time"
)

// The guest's report gets the report's own flags, and nothing of the VM's.
func TestGuestArgs(t *testing.T) {
	c := newReportCmd()
	if err := c.ParseFlags([]string{"--labels", "baseline", "--kernel", "debian:6.12", "--vcpus=2", "--out", "o/r", "--parallel", "3", "--profile", "a.conf", "--profile", "b.conf", "--rtt", "50ms"}); err != nil {
		t.Fatal(err)
	}
	o := reportFlags{all: []string{"a.conf", "b.conf"}, rtt: 50 * time.Millisecond, labels: "baseline", parallel: 3, out: "o/r"}
	want := []string{"--profile", "a.conf", "--profile", "b.conf", "--rtt", "50ms", "--labels", "baseline", "--parallel", "3"}
	if got := guestArgs(c, o); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// --parallel left at its default is the guest's own choice (it sizes it
	// to the VM's measured speed).
	c = newReportCmd()
	if err := c.ParseFlags([]string{"--kernel", "debian:6.1"}); err != nil {
		t.Fatal(err)
	}
	if got := guestArgs(c, reportFlags{parallel: 16}); len(got) != 0 {
		t.Errorf("default parallel passed on: %q", got)
	}
}

func TestInVM(t *testing.T) {
	c := newReportCmd()
	for _, v := range []vmFlags{{}, {kernel: "host"}} {
		if vm, err := v.inVM(c); vm || err != nil {
			t.Errorf("%+v: in a VM %v, err %v; want the host", v, vm, err)
		}
	}
	v := vmFlags{kernel: "debian:6.12", engine: "tcg"}
	if vm, err := v.inVM(c); !vm || err != nil || v.engine != "TCG" {
		t.Errorf("debian:6.12: vm %v, err %v, engine %q", vm, err, v.engine)
	}
	for _, bad := range []vmFlags{{kernel: "debian:6.1", engine: "xen"}, {kernel: "debian:6.1", vcpus: -1}, {kernel: "debian:5"}} {
		if _, err := bad.inVM(c); err == nil || exitCode(err) != 2 {
			t.Errorf("%+v: err %v (exit %d), want bad input", bad, err, exitCode(err))
		}
	}
}
