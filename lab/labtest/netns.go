package labtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tfolab/tfolab/lab/netnsx"
)

// NewNS creates an anonymous network namespace, closed at cleanup. It
// never touches the root namespace; the namespace goes away with its last
// handle, and with it whatever the test made inside.
func NewNS(tb testing.TB) netns.NsHandle {
	tb.Helper()
	ns, err := netnsx.NewUnnamed()
	if err != nil {
		tb.Fatalf("new netns: %v", err)
	}
	tb.Cleanup(func() { ns.Close() })
	return ns
}

// Netlink returns a netlink handle in ns, closed at cleanup.
func Netlink(tb testing.TB, ns netns.NsHandle) *netlink.Handle {
	tb.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		tb.Fatalf("netlink handle: %v", err)
	}
	tb.Cleanup(h.Close)
	return h
}

// End is one end of a veth pair: the link's name and its addresses.
type End struct {
	Name  string
	Addrs []netip.Prefix
}

// VethPair is two throwaway namespaces, A and B, joined by a veth pair.
type VethPair struct {
	A, B   netns.NsHandle
	HA, HB *netlink.Handle // netlink handles in A and B
}

// NewVethPair builds two namespaces (NewNS) and a veth pair between them,
// a in A and b in B, brings lo and both ends up with their addresses, and
// waits until both ends are operationally up and each end's IPv6
// addresses have joined their solicited-node groups. Everything goes away
// with the namespaces at cleanup.
func NewVethPair(tb testing.TB, a, b End) *VethPair {
	tb.Helper()
	v := &VethPair{A: NewNS(tb), B: NewNS(tb)}
	v.HA, v.HB = Netlink(tb, v.A), Netlink(tb, v.B)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a.Name}, PeerName: b.Name, PeerNamespace: netlink.NsFd(int(v.B))}
	if err := v.HA.LinkAdd(veth); err != nil {
		tb.Fatalf("add veth %s/%s: %v", a.Name, b.Name, err)
	}
	setupLink(tb, v.HA, a)
	setupLink(tb, v.HB, b)
	waitOperUp(tb, v.HA, a.Name)
	waitOperUp(tb, v.HB, b.Name)
	for _, end := range []struct {
		ns netns.NsHandle
		End
	}{{v.A, a}, {v.B, b}} {
		for _, p := range end.Addrs {
			if p.Addr().Is6() {
				waitSolicitedNode(tb, end.ns, end.Name, p.Addr())
			}
		}
	}
	return v
}

// setupLink brings lo and e up, with e's addresses. IFA_F_NODAD: an IPv6
// address is usable at once instead of tentative for about a second
// (duplicate address detection).
func setupLink(tb testing.TB, h *netlink.Handle, e End) {
	tb.Helper()
	for _, name := range []string{"lo", e.Name} {
		link, err := h.LinkByName(name)
		if err != nil {
			tb.Fatalf("link %s: %v", name, err)
		}
		if name == e.Name {
			for _, p := range e.Addrs {
				a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Flags: unix.IFA_F_NODAD}
				if err := h.AddrAdd(link, a); err != nil {
					tb.Fatalf("add %s to %s: %v", p, name, err)
				}
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			tb.Fatalf("%s up: %v", name, err)
		}
	}
}

// waitOperUp waits until name is operationally up (a veth end is up only
// once its peer is): a SYN sent earlier is sometimes lost.
func waitOperUp(tb testing.TB, h *netlink.Handle, name string) {
	tb.Helper()
	var state netlink.LinkOperState
	err := Poll(5*time.Second, func() (bool, error) {
		link, err := h.LinkByName(name)
		if err != nil {
			return false, err
		}
		state = link.Attrs().OperState
		return state == netlink.OperUp, nil
	})
	if err != nil {
		tb.Fatalf("link %s: %v (operstate %v)", name, err, state)
	}
}

// waitSolicitedNode waits until ifname has joined the solicited-node
// multicast group of addr. The kernel joins it from the addrconf work queue
// some time after the link comes up, even for IFA_F_NODAD addresses; a
// neighbour solicitation that arrives earlier is dropped and the sender only
// retries a second later, which shows as a retransmitted SYN or a probe
// that times out.
func waitSolicitedNode(tb testing.TB, ns netns.NsHandle, ifname string, addr netip.Addr) {
	tb.Helper()
	a := addr.As16()
	group := fmt.Sprintf("ff0200000000000000000001ff%02x%02x%02x", a[13], a[14], a[15])
	err := Poll(5*time.Second, func() (joined bool, err error) {
		err = netnsx.Do(ns, func() error {
			// thread-self, not self: /proc/self/net shows the namespace of
			// the process's main thread.
			b, err := os.ReadFile("/proc/thread-self/net/igmp6")
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) >= 3 && f[1] == ifname && f[2] == group {
					joined = true
				}
			}
			return err
		})
		return joined, err
	})
	if err != nil {
		tb.Fatalf("%s joining %s (solicited-node group of %s): %v", ifname, group, addr, err)
	}
}

// Poll calls cond every 5 ms until it is true, it fails, or limit passes.
func Poll(limit time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not after %v", limit)
		case <-tick.C:
		}
	}
}

// WriteSysctl writes /proc/sys/<name> from a thread inside ns (net.*
// sysctls follow the namespace of the thread that opens them) and reads
// it back.
func WriteSysctl(tb testing.TB, ns netns.NsHandle, name, val string) {
	tb.Helper()
	if err := netnsx.Do(ns, func() error { return os.WriteFile("/proc/sys/"+name, []byte(val), 0) }); err != nil {
		tb.Fatalf("sysctl %s=%s: %v", name, val, err)
	}
	if got := ReadSysctl(tb, ns, name); got != val {
		tb.Fatalf("sysctl %s=%s: read back %q", name, val, got)
	}
}

// ReadSysctl reads /proc/sys/<name> from a thread inside ns, without the
// trailing newline.
func ReadSysctl(tb testing.TB, ns netns.NsHandle, name string) string {
	tb.Helper()
	var b []byte
	err := netnsx.Do(ns, func() (err error) {
		b, err = os.ReadFile("/proc/sys/" + name)
		return err
	})
	if err != nil {
		tb.Fatalf("sysctl %s: %v", name, err)
	}
	return strings.TrimSpace(string(b))
}

// FastOpenListenConfig is a ListenConfig whose listeners have TCP_FASTOPEN
// set to qlen; with qlen 0 it sets nothing.
func FastOpenListenConfig(qlen int) net.ListenConfig {
	return net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		if qlen == 0 {
			return nil
		}
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN, qlen)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("setsockopt TCP_FASTOPEN: %w", serr)
		}
		return nil
	}}
}
