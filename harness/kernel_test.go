package harness

import (
	"errors"
	"strings"
	"testing"

	"github.com/tfolab/tfolab/scenarios"
)

func TestUnsupportedNamesTheMissingSysctl(t *testing.T) {
	s := scenarios.Scenario{Sysctls: map[string]map[string]string{
		"client": {"net.ipv4.tcp_fastopen": "1", "net.ipv4.tcp_no_such_knob": "0"},
		"router": {"net.ipv4.conf.eth9.forwarding": "1"}, // an interface the lab makes: not checked here
	}}
	err := Unsupported(s)
	var ue *UnsupportedError
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnsupported) {
		t.Fatalf("got %v, want an UnsupportedError", err)
	}
	if got := err.Error(); got != "not supported by this kernel: lacks sysctl net.ipv4.tcp_no_such_knob" {
		t.Errorf("got %q", got)
	}
	delete(s.Sysctls["client"], "net.ipv4.tcp_no_such_knob")
	if err := Unsupported(s); err != nil {
		t.Errorf("every key present: got %v", err)
	}
	s.KernelNeeds = []string{"NO_SUCH_FEATURE"}
	if err := Unsupported(s); err == nil || !strings.Contains(err.Error(), "unknown kernel feature") {
		t.Errorf("an unknown feature: got %v", err)
	}
}
