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
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/netnsx"
)

// This file is the root-only test lab: two anonymous namespaces joined by a
// veth pair c0 <-> s0 (labtest.NewVethPair), never linked to the root
// namespace: no lab or topology.

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
	labtest.NeedRoot(t, "creates network namespaces, veth links and raw sockets")
	for _, fam := range []family{ipv4, ipv6} {
		t.Run(fam.name, func(t *testing.T) { f(t, newPair(t, fam, serverTFO)) })
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
	v := labtest.NewVethPair(t, labtest.End{Name: "c0", Addrs: []netip.Prefix{netip.PrefixFrom(fam.client, fam.prefix)}},
		labtest.End{Name: "s0", Addrs: []netip.Prefix{netip.PrefixFrom(fam.server, fam.prefix)}})
	p := &pair{fam: fam, client: v.A, server: v.B}
	labtest.WriteSysctl(t, p.server, "net/ipv4/tcp_fastopen", strconv.Itoa(serverTFO))
	return p
}

// listen opens a plain TCP listener on the server address, with
// TCP_FASTOPEN set to qlen if qlen > 0. Nothing accepts: no probe completes
// a handshake.
func (p *pair) listen(t *testing.T, qlen int) netip.AddrPort {
	t.Helper()
	lc := labtest.FastOpenListenConfig(qlen)
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
	err := labtest.Poll(2*time.Second, func() (bool, error) {
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
