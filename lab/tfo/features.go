package tfo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/tfolab/tfolab/lab/netnsx"
	"github.com/vishvananda/netlink"
)

// TCPI_OPT_TFO_CHILD (0x80 in tcpi_options) marks a passive TFO child: it
// came in 2025 ("tcp: fastopen: pass TFO child indication through
// getsockopt", tcp_get_info in net/ipv4/tcp.c), so 6.1 and 6.12 never set
// it. Checks that read it ask HasTFOChild first.

// FeatureTFOChild names the bit in Scenario.KernelNeeds.
const FeatureTFOChild = "TCPI_OPT_TFO_CHILD"

var tfoChild struct {
	once  sync.Once
	known bool
}

// HasTFOChild reports whether the running kernel sets TCPI_OPT_TFO_CHILD.
// It probes once per process; a probe that cannot run (no root) answers
// true, so the bit is still checked.
func HasTFOChild() bool {
	tfoChild.once.Do(func() {
		ok, err := ProbeTFOChild()
		tfoChild.known = ok || err != nil
	})
	return tfoChild.known
}

// ProbeTFOChild makes one cookie-less TFO connection over loopback in a
// throwaway namespace (tcp_fastopen 0x207: client, server, no cookie on
// either side) and reads the accepted socket's tcpi_options: a kernel
// with the bit sets TCPI_OPT_TFO_CHILD beside TCPI_OPT_SYN_DATA.
func ProbeTFOChild() (bool, error) {
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
	srv, err := Listen(ServerOptions{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Run: run, FastOpenQueue: 8})
	if err != nil {
		return false, err
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := Request(ctx, DialOptions{Mode: ModeSendto, Run: run}, srv.Addr(), []byte("probe\n"))
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
