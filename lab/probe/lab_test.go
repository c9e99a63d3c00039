package probe

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tfolab/tfolab/lab/netnsx"
)

// This file is the root-only test lab: two anonymous namespaces joined by a
// veth pair c0 <-> s0, never linked to the root namespace. It copies the few
// lines it needs instead of importing the lab and topology packages.

// family is one address plan on the veth pair.
type family struct {
	name           string
	client, server netip.Addr
	nobody         netip.Addr // on the link's subnet, assigned to no one
	prefix         int
	iptables       string
}

var (
	ipv4 = family{"IPv4", netip.MustParseAddr("10.34.1.1"), netip.MustParseAddr("10.34.1.2"), netip.MustParseAddr("10.34.1.99"), 24, "iptables"}
	ipv6 = family{"IPv6", netip.MustParseAddr("fd34:1::1"), netip.MustParseAddr("fd34:1::2"), netip.MustParseAddr("fd34:1::99"), 64, "ip6tables"}
)

// bothFamilies runs f as one subtest per family, each on a fresh pair.
func bothFamilies(t *testing.T, serverTFO int, f func(t *testing.T, p *pair)) {
	t.Helper()
	needRoot(t)
	for _, fam := range []family{ipv4, ipv6} {
		t.Run(fam.name, func(t *testing.T) { f(t, newPair(t, fam, serverTFO)) })
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veth links and raw sockets")
	}
}

func needIptables(t *testing.T, fam family) {
	t.Helper()
	if _, err := exec.LookPath(fam.iptables); err != nil {
		t.Skipf("%s not installed (run `make deps`): %v", fam.iptables, err)
	}
}

// pair is a client and a server namespace on one veth link.
type pair struct {
	fam            family
	client, server netns.NsHandle
}

func (p *pair) crun(f func() error) error { return netnsx.Do(p.client, f) }
func (p *pair) srun(f func() error) error { return netnsx.Do(p.server, f) }

// newPair builds the namespaces, links and addresses, and sets
// net.ipv4.tcp_fastopen in the server namespace (a new namespace starts
// at 1, client only). Everything goes away with the namespaces at cleanup.
func newPair(t *testing.T, fam family, serverTFO int) *pair {
	t.Helper()
	p := &pair{fam: fam, client: newNS(t), server: newNS(t)}
	hc, hs := newHandle(t, p.client), newHandle(t, p.server)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "c0"}, PeerName: "s0", PeerNamespace: netlink.NsFd(int(p.server))}
	if err := hc.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	setupLink(t, hc, "c0", netip.PrefixFrom(fam.client, fam.prefix))
	setupLink(t, hs, "s0", netip.PrefixFrom(fam.server, fam.prefix))
	waitOperUp(t, hc, "c0")
	waitOperUp(t, hs, "s0")
	if fam.client.Is6() {
		waitSolicitedNode(t, p.crun, "c0", fam.client)
		waitSolicitedNode(t, p.srun, "s0", fam.server)
	}
	writeSysctl(t, p.srun, "net/ipv4/tcp_fastopen", strconv.Itoa(serverTFO))
	return p
}

func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	ns, err := netnsx.NewUnnamed()
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func newHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// setupLink brings lo and name up with addr. IFA_F_NODAD: an IPv6 address
// is usable at once instead of after duplicate address detection.
func setupLink(t *testing.T, h *netlink.Handle, name string, addr netip.Prefix) {
	t.Helper()
	for _, n := range []string{"lo", name} {
		link, err := h.LinkByName(n)
		if err != nil {
			t.Fatalf("link %s: %v", n, err)
		}
		if n == name {
			a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}, Flags: unix.IFA_F_NODAD}
			if err := h.AddrAdd(link, a); err != nil {
				t.Fatalf("add %s to %s: %v", addr, n, err)
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			t.Fatalf("%s up: %v", n, err)
		}
	}
}

// waitOperUp waits until name is up: a SYN sent earlier is sometimes lost.
func waitOperUp(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	err := poll(5*time.Second, func() (bool, error) {
		link, err := h.LinkByName(name)
		if err != nil {
			return false, err
		}
		return link.Attrs().OperState == netlink.OperUp, nil
	})
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
}

// waitSolicitedNode waits until ifname has joined the solicited-node
// multicast group of addr. The kernel joins it from a work queue some time
// after the link comes up, even for IFA_F_NODAD addresses; a neighbour
// solicitation that arrives earlier is dropped and only retried a second
// later, which would cost the probe its whole timeout.
func waitSolicitedNode(t *testing.T, run func(func() error) error, ifname string, addr netip.Addr) {
	t.Helper()
	a := addr.As16()
	group := fmt.Sprintf("ff0200000000000000000001ff%02x%02x%02x", a[13], a[14], a[15])
	err := poll(5*time.Second, func() (joined bool, err error) {
		err = run(func() error {
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
		t.Fatalf("%s joining %s (solicited-node group of %s): %v", ifname, group, addr, err)
	}
}

// poll calls cond every 5 ms until it is true, it fails, or limit passes.
func poll(limit time.Duration, cond func() (bool, error)) error {
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

// writeSysctl writes /proc/sys/<name> from a thread inside the namespace:
// net.* sysctls follow the opening thread's namespace.
func writeSysctl(t *testing.T, run func(func() error) error, name, val string) {
	t.Helper()
	if err := run(func() error { return os.WriteFile("/proc/sys/"+name, []byte(val), 0) }); err != nil {
		t.Fatalf("sysctl %s=%s: %v", name, val, err)
	}
}

// listen opens a plain TCP listener on the server address, with
// TCP_FASTOPEN set to qlen if qlen > 0. Nothing accepts: no probe completes
// a handshake.
func (p *pair) listen(t *testing.T, qlen int) netip.AddrPort {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		if qlen == 0 {
			return nil
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN, qlen)
		}); err != nil {
			return err
		}
		return serr
	}}
	// Go listens with MPTCP by default (since 1.24) where the kernel has
	// it. An MPTCP listener answers a plain TCP SYN too, but drops the
	// timestamp option from a SYN-ACK that carries a TFO cookie, to make
	// room for MP_CAPABLE (RFC 8684 §B.1): not the server under test.
	lc.SetMultipathTCP(false)
	var ln net.Listener
	err := p.srun(func() (err error) {
		ln, err = lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(p.fam.server, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// iptables runs iptables (or ip6tables) with args inside a namespace; the
// child process inherits the locked thread's namespace. The rules go away
// with the namespace.
func (p *pair) iptables(t *testing.T, run func(func() error) error, args ...string) string {
	t.Helper()
	var out []byte
	err := run(func() (err error) {
		out, err = exec.Command(p.fam.iptables, append([]string{"-w"}, args...)...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", p.fam.iptables, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// probe runs Probe (or, with reset false, the probe that leaves the
// half-open connection) from the client namespace and logs the result.
func (p *pair) probe(t *testing.T, dst netip.AddrPort, opts Options, reset bool) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := probe(ctx, p.crun, p.fam.client, dst, opts, reset)
	if err != nil {
		t.Fatalf("probe %s: %v (result %v)", dst, err, res)
	}
	t.Logf("%v (syns %d, from %s)", res, res.SYNs, res.Source)
	return res
}

// halfOpen lists the connections in SYN-RECV (state 03) between server and
// client in the server namespace, from /proc/thread-self/net/tcp or tcp6
// (thread-self: /proc/self/net follows the main thread's namespace). A
// request socket, which a SYN creates on a listener, shows up there too.
func (p *pair) halfOpen(server, client netip.AddrPort) ([]string, error) {
	file := "/proc/thread-self/net/tcp"
	if p.fam.server.Is6() {
		file += "6"
	}
	var found []string
	err := p.srun(func() error {
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 4 || f[3] != "03" {
				continue
			}
			if portHex(f[1]) == server.Port() && portHex(f[2]) == client.Port() {
				found = append(found, sc.Text())
			}
		}
		return sc.Err()
	})
	return found, err
}

func portHex(addr string) uint16 {
	_, h, _ := strings.Cut(addr, ":")
	v, _ := strconv.ParseUint(h, 16, 16)
	return uint16(v)
}

// assertNoHalfOpen waits, bounded, for the server to drop the probe's
// half-open connection: the RSTs may still be in flight when Probe returns.
func (p *pair) assertNoHalfOpen(t *testing.T, res Result) {
	t.Helper()
	var last []string
	err := poll(2*time.Second, func() (bool, error) {
		var err error
		last, err = p.halfOpen(res.Target, res.Source)
		return len(last) == 0, err
	})
	if err != nil {
		t.Errorf("server still holds the probe's half-open connection %s > %s: %v\n%s", res.Source, res.Target, err, strings.Join(last, "\n"))
	}
}

// counters reads the TCP counters (Tcp.* from snmp, TcpExt.* from
// netstat) inside a namespace; they count both families.
func counters(t *testing.T, run func(func() error) error) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	err := run(func() error {
		for _, file := range []string{"/proc/thread-self/net/snmp", "/proc/thread-self/net/netstat"} {
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			lines := strings.Split(string(b), "\n")
			for i := 0; i+1 < len(lines); i += 2 {
				names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
				if len(names) != len(values) || len(names) == 0 {
					return fmt.Errorf("%s: line %d: %d names, %d values", file, i+1, len(names), len(values))
				}
				group := strings.TrimSuffix(names[0], ":")
				for j := 1; j < len(names); j++ {
					v, _ := strconv.ParseInt(values[j], 10, 64)
					m[group+"."+names[j]] = v
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	return m
}
