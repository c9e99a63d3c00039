package profile

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/tfolab/tfolab/lab/labtest"
)

// TestResolveOnThisKernel classifies real keys in a scratch lab namespace:
// the TFO knobs and net.core.somaxconn are per namespace, net.core's
// backlog knob is host-wide, and nothing of the scratch namespace is left.
func TestResolveOnThisKernel(t *testing.T) {
	labtest.NeedRoot(t, "creates a scratch network namespace")
	hostBefore, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Fatal(err)
	}
	p := FromSources(NewSource("ok.conf", []byte(`net.ipv4.tcp_fastopen = 3
net.ipv4.tcp_fastopen_blackhole_timeout_sec = 1
net.core.somaxconn = 1234
net.ipv4.conf.*.rp_filter = 2
-net.ipv4.tcp_no_such_knob = 1
`)))
	plan, err := Resolve(p)
	if err != nil {
		t.Fatal(err)
	}
	got := Map(plan.For([]string{"to-router"}))
	for k, v := range map[string]string{
		"net.ipv4.tcp_fastopen": "3", "net.ipv4.tcp_fastopen_blackhole_timeout_sec": "1", "net.core.somaxconn": "1234",
		"net.ipv4.conf.all.rp_filter": "2", "net.ipv4.conf.to-router.rp_filter": "2",
	} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (plan %v)", k, got[k], v, got)
		}
	}
	if hostAfter, _ := os.ReadFile("/proc/sys/net/core/somaxconn"); string(hostAfter) != string(hostBefore) {
		t.Errorf("the host's net.core.somaxconn changed: %q -> %q", hostBefore, hostAfter)
	}

	p = FromSources(NewSource("bad.conf", []byte("net.core.netdev_max_backlog = 5000\nnet.ipv4.tcp_fastopen = 3\n")))
	_, err = Resolve(p)
	var re *RefusedError
	if !errors.As(err, &re) || len(re.Refusals) != 1 || !strings.Contains(err.Error(), "bad.conf:1: net.core.netdev_max_backlog = 5000: a host-wide") {
		t.Fatalf("got %v, want bad.conf:1 refused as host-wide", err)
	}
	labtest.NoNamespaceLeft(t, "-sysctlprobe")
}
