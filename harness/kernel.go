package harness

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tfolab/tfolab/lab/netnsx"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/scenarios"
	"github.com/vishvananda/netlink"
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
	FeatureTFOChild = "TCPI_OPT_TFO_CHILD"
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
		r.ok, r.err = probeTFOChild()
	default:
		r.err = fmt.Errorf("unknown kernel feature %q", name)
	}
	features.Store(name, r)
	return r.ok, r.err
}

// probeTFOChild makes one cookie-less TFO connection over loopback in a
// throwaway namespace (tcp_fastopen 0x207: client, server, no cookie on
// either side) and reads the accepted socket's tcpi_options: a kernel
// with the bit sets TCPI_OPT_TFO_CHILD beside TCPI_OPT_SYN_DATA.
func probeTFOChild() (bool, error) {
	ns, err := netnsx.NewUnnamed()
	if err != nil {
		return false, err
	}
	defer ns.Close()
	run := func(f func() error) error { return netnsx.Do(ns, f) }
	if err := run(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		return os.WriteFile("/proc/sys/net/ipv4/tcp_fastopen", []byte("0x207"), 0o644)
	}); err != nil {
		return false, fmt.Errorf("probe namespace: %w", err)
	}
	srv, err := tfo.Listen(tfo.ServerOptions{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Run: run, FastOpenQueue: 8})
	if err != nil {
		return false, err
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := tfo.Request(ctx, tfo.DialOptions{Mode: tfo.ModeSendto, Run: run}, srv.Addr(), []byte("probe\n"))
	if res.Err != nil {
		return false, fmt.Errorf("loopback TFO connection: %w", res.Err)
	}
	for range 100 {
		if acc := srv.Accepted(); len(acc) > 0 {
			if !acc[0].SynData {
				return false, errors.New("loopback TFO connection: the SYN's data was not accepted (TCPI_OPT_SYN_DATA unset)")
			}
			return acc[0].Options&0x80 != 0, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false, errors.New("loopback TFO connection: the server recorded no accepted socket")
}
