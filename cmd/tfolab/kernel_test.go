package main

import (
	"slices"
	"testing"
)

func TestSplitKernelArgs(t *testing.T) {
	kf, rest, ok, err := splitKernelArgs([]string{"--labels", "baseline", "--kernel", "debian:6.12", "--vcpus=2", "--out", "o/r", "--parallel", "3", "--engine", "tcg"})
	if err != nil || !ok {
		t.Fatalf("ok %v, err %v", ok, err)
	}
	if kf.kernel != "debian:6.12" || kf.vcpus != 2 || kf.out != "o/r" || kf.engine != "TCG" {
		t.Errorf("kernel flags: %+v", kf)
	}
	if want := []string{"--labels", "baseline", "--parallel", "3"}; !slices.Equal(rest, want) {
		t.Errorf("report's own args: got %q, want %q", rest, want)
	}
	// No --kernel, or host: the report runs here, --out given back.
	_, rest, ok, err = splitKernelArgs([]string{"--kernel=host", "--out", "x"})
	if err != nil || ok || !slices.Equal(rest, []string{"--out", "x"}) {
		t.Errorf("host: ok %v, rest %q, err %v", ok, rest, err)
	}
	for _, bad := range [][]string{{"--kernel"}, {"--kernel", "debian:6.1", "--vcpus", "0"}, {"--kernel", "debian:6.1", "--engine", "xen"}} {
		if _, _, _, err := splitKernelArgs(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}
