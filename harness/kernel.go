package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/scenarios"
)

// A scenario that needs something the running kernel lacks (a sysctl, a
// tcp_info bit) is not run: its result is an UnsupportedError naming the
// missing thing, reported as "not supported by this kernel", never as a
// TFO failure. Sysctls are checked from the scenario's own Sysctls; other
// features from Scenario.KernelNeeds.

// ErrUnsupported marks a scenario the kernel cannot run.
var ErrUnsupported = errors.New("not supported by this kernel")

// UnsupportedError says what the kernel lacks.
type UnsupportedError struct{ Lacks []string }

func (e *UnsupportedError) Error() string {
	return ErrUnsupported.Error() + ": lacks " + strings.Join(e.Lacks, ", ")
}

func (e *UnsupportedError) Unwrap() error { return ErrUnsupported }

// Kernel features a scenario may name in KernelNeeds.
const (
	// FeatureTFOChild is TCPI_OPT_TFO_CHILD (0x80) in tcp_info's
	// tcpi_options of a passive TFO child: added in 2025 ("tcp: fastopen:
	// pass TFO child indication through getsockopt", net/ipv4/tcp.c
	// tcp_get_info), absent from 6.1 and 6.12.
	FeatureTFOChild = tfo.FeatureTFOChild
)

// Unsupported returns what the running kernel lacks for s, or nil.
func Unsupported(s scenarios.Scenario) error {
	var lacks []string
	for _, node := range s.Sysctls {
		for key := range node {
			if !perNamespaceKey(key) {
				continue
			}
			if _, err := os.Stat(filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))); errors.Is(err, os.ErrNotExist) {
				lacks = append(lacks, "sysctl "+key)
			}
		}
	}
	for _, f := range s.KernelNeeds {
		ok, err := HasFeature(f)
		if err != nil {
			return fmt.Errorf("checking the kernel for %s: %w", f, err)
		}
		if !ok {
			lacks = append(lacks, f)
		}
	}
	if len(lacks) == 0 {
		return nil
	}
	slices.Sort(lacks)
	return &UnsupportedError{Lacks: slices.Compact(lacks)}
}

// perNamespaceKey: a key whose presence in this process's namespace
// says whether the kernel has it (not one of an interface the lab makes).
func perNamespaceKey(key string) bool {
	for _, part := range []string{".conf.", ".neigh."} {
		if strings.Contains(key, part) {
			return false
		}
	}
	return strings.HasPrefix(key, "net.")
}

var features sync.Map // name -> featureResult

type featureResult struct {
	ok  bool
	err error
}

// HasFeature probes the running kernel once per process for a feature.
func HasFeature(name string) (bool, error) {
	if v, ok := features.Load(name); ok {
		r := v.(featureResult)
		return r.ok, r.err
	}
	var r featureResult
	switch name {
	case FeatureTFOChild:
		r.ok, r.err = tfo.ProbeTFOChild()
	default:
		r.err = fmt.Errorf("unknown kernel feature %q", name)
	}
	features.Store(name, r)
	return r.ok, r.err
}
