package probe

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server values of net.ipv4.tcp_fastopen.
const (
	tfoClientOnly = 0x1 // a new namespace's default: server TFO off
	tfoServer     = 0x2
)

const (
	cookieReqd = "TcpExt.TCPFastOpenCookieReqd"
	outRsts    = "Tcp.OutRsts"
)

// TestProbeTFOServer: a Linux server with TFO on (sysctl 2, TCP_FASTOPEN on
// the listener) answers either form of cookie request with an 8-byte
// cookie in the same form, the same cookie every time for one client
// address. The client kernel RSTs every SYN-ACK itself, reserved source
// port or not, and the server keeps no half-open connection.
func TestProbeTFOServer(t *testing.T) {
	bothFamilies(t, tfoServer, func(t *testing.T, p *pair) {
		dst := p.listen(t, 16)
		var first HexBytes
		for i, exp := range []bool{false, false, true} {
			cb, sb := counters(t, p.crun), counters(t, p.srun)
			res := p.probe(t, dst, Options{Experimental: exp}, true)
			want := "SYN-ACK carries option 34 with an 8-byte cookie"
			if exp {
				want = "SYN-ACK carries option 254/0xF989 (experimental TFO) with an 8-byte cookie"
			}
			if !res.Answered || res.RST || !res.SupportsTFO || res.Experimental != exp || len(res.Cookie) != 8 || res.Reason != want || res.SYNs != 1 {
				t.Errorf("probe %d: got %+v, want a SYN-ACK with an 8-byte cookie (%q)", i, res, want)
			}
			if first == nil {
				first = res.Cookie
			} else if !bytes.Equal(res.Cookie, first) {
				t.Errorf("probe %d: cookie %x, want the first probe's %x (same client address)", i, res.Cookie, first)
			}
			if res.Source.Addr() != p.fam.client || res.Source.Port() == 0 || res.Target != dst || res.RTT <= 0 {
				t.Errorf("probe %d: source %s, target %s, rtt %v", i, res.Source, res.Target, res.RTT)
			}
			p.assertNoHalfOpen(t, res)
			ca, sa := counters(t, p.crun), counters(t, p.srun)
			if d := sa[cookieReqd] - sb[cookieReqd]; d != 1 {
				t.Errorf("probe %d: server %s %+d, want +1", i, cookieReqd, d)
			}
			// The probe's own RST goes through the raw socket and is not
			// counted: OutRsts counts the kernel's answer to the SYN-ACK.
			if d := ca[outRsts] - cb[outRsts]; d != 1 {
				t.Errorf("probe %d: client %s %+d, want +1 (the kernel's RST to the SYN-ACK)", i, outRsts, d)
			}
		}
	})
}

// TestProbeServerTFOOff: with the server bit off in net.ipv4.tcp_fastopen
// the listener's TCP_FASTOPEN is accepted but inert; the SYN-ACK carries
// no option 34.
func TestProbeServerTFOOff(t *testing.T) {
	bothFamilies(t, tfoClientOnly, func(t *testing.T, p *pair) {
		dst := p.listen(t, 16)
		res := p.probe(t, dst, Options{}, true)
		want := "SYN-ACK without option 34: TFO off or the option was stripped on the way"
		if !res.Answered || res.RST || res.SupportsTFO || res.Cookie != nil || res.Reason != want {
			t.Errorf("got %+v, want a SYN-ACK without option 34 (%q)", res, want)
		}
		p.assertNoHalfOpen(t, res)
	})
}

// TestProbeOptionStripped: a middlebox in front of a TFO server (here the
// server namespace's own PREROUTING) replaces options 34 and 254 in the
// SYN with NOPs; the server never sees a cookie request and answers
// without a cookie.
func TestProbeOptionStripped(t *testing.T) {
	bothFamilies(t, tfoServer, func(t *testing.T, p *pair) {
		needIptables(t, p.fam)
		dst := p.listen(t, 16)
		p.iptables(t, p.srun, "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "--dport", strconv.Itoa(int(dst.Port())),
			"-j", "TCPOPTSTRIP", "--strip-options", "34,254")
		for _, exp := range []bool{false, true} {
			sb := counters(t, p.srun)
			res := p.probe(t, dst, Options{Experimental: exp}, true)
			want := "SYN-ACK without option 34: TFO off or the option was stripped on the way"
			if exp {
				want = "SYN-ACK without option 254/0xF989: TFO off or the option was stripped on the way"
			}
			if !res.Answered || res.RST || res.SupportsTFO || res.Reason != want {
				t.Errorf("experimental %t: got %+v, want a SYN-ACK without a TFO option (%q)", exp, res, want)
			}
			if d := counters(t, p.srun)[cookieReqd] - sb[cookieReqd]; d != 0 {
				t.Errorf("experimental %t: server %s %+d, want 0 (the request never arrived)", exp, cookieReqd, d)
			}
			p.assertNoHalfOpen(t, res)
		}
	})
}

// TestProbeClosedPort: nothing listens; the server kernel answers RST+ACK.
func TestProbeClosedPort(t *testing.T) {
	bothFamilies(t, tfoServer, func(t *testing.T, p *pair) {
		res := p.probe(t, netip.AddrPortFrom(p.fam.server, 9), Options{}, true)
		if !res.Answered || !res.RST || res.SupportsTFO || res.Reason != "RST: port closed" {
			t.Errorf("got %+v, want RST: port closed", res)
		}
	})
}

// TestProbeNoAnswer: a target no one answers for (an unassigned address on
// the link: neighbour resolution fails) costs the timeout per SYN, from
// Options or from the context's deadline, and is not an error.
func TestProbeNoAnswer(t *testing.T) {
	bothFamilies(t, tfoServer, func(t *testing.T, p *pair) {
		dst := netip.AddrPortFrom(p.fam.nobody, 80)
		t.Run("options", func(t *testing.T) {
			start := time.Now()
			res := p.probe(t, dst, Options{Timeout: 150 * time.Millisecond, Retries: 1}, true)
			if res.Answered || res.SYNs != 2 || res.Reason != "no answer within 300ms to 2 SYNs" {
				t.Errorf("got %+v, want no answer to 2 SYNs within 300ms", res)
			}
			if el := time.Since(start); el < 300*time.Millisecond || el > 900*time.Millisecond {
				t.Errorf("took %v, want about 300ms", el)
			}
		})
		t.Run("context", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			res, err := Probe(ctx, p.crun, p.fam.client, dst, Options{Retries: 3})
			el := time.Since(start)
			t.Logf("%v after %v", res, el)
			if err != nil || res.Answered || res.SYNs != 1 || !strings.HasPrefix(res.Reason, "no answer within ") {
				t.Errorf("got %+v, %v; want no answer and no error", res, err)
			}
			if el > 900*time.Millisecond {
				t.Errorf("took %v, want the context's 200ms", el)
			}
		})
		t.Run("canceled", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			stop := time.AfterFunc(100*time.Millisecond, cancel)
			defer stop.Stop()
			res, err := Probe(ctx, p.crun, p.fam.client, dst, Options{Timeout: 5 * time.Second})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("got %+v, %v; want an error wrapping context.Canceled", res, err)
			}
		})
	})
}

// TestProbeICMPReject: a firewall that rejects the SYN with an ICMP error
// shows up as the error's reason, not as silence until the timeout.
func TestProbeICMPReject(t *testing.T) {
	bothFamilies(t, tfoServer, func(t *testing.T, p *pair) {
		needIptables(t, p.fam)
		dst := p.listen(t, 16)
		// The kernel maps the ICMP error to an errno: "communication
		// administratively prohibited" is EHOSTUNREACH for IPv4 and EACCES
		// for IPv6.
		with, errno := "icmp-admin-prohibited", "(EHOSTUNREACH)"
		if p.fam.server.Is6() {
			with, errno = "icmp6-adm-prohibited", "(EACCES)"
		}
		p.iptables(t, p.srun, "-A", "INPUT", "-p", "tcp", "--dport", strconv.Itoa(int(dst.Port())), "-j", "REJECT", "--reject-with", with)
		res := p.probe(t, dst, Options{Timeout: 2 * time.Second}, true)
		if res.Answered || !strings.HasPrefix(res.Reason, "ICMP error instead of an answer: ") ||
			!strings.HasSuffix(res.Reason, errno) || res.RTT != 0 {
			t.Errorf("got %+v, want an ICMP error %s", res, errno)
		}
	})
}

// TestProbeOwnRSTRemovesHalfOpen: when the client kernel's RST never
// leaves (a firewall drops RSTs that no user socket sent, the setup of a
// port scanner), the probe's own RST is what clears the server's SYN-RECV;
// without it the server keeps the half-open connection and retransmits.
func TestProbeOwnRSTRemovesHalfOpen(t *testing.T) {
	bothFamilies(t, tfoServer, func(t *testing.T, p *pair) {
		needIptables(t, p.fam)
		dst := p.listen(t, 16)
		// The kernel sends its RSTs from a per-namespace control socket that
		// has no file, so "! --uid-owner 0" matches them and not the probe's
		// raw socket, which belongs to root.
		p.iptables(t, p.crun, "-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-m", "owner", "!", "--uid-owner", "0", "-j", "DROP")

		res := p.probe(t, dst, Options{}, false)
		if !res.SupportsTFO {
			t.Fatalf("control probe: got %+v, want a cookie", res)
		}
		if open, err := p.halfOpen(res.Target, res.Source); err != nil || len(open) != 1 {
			t.Fatalf("control probe without the probe's RST, kernel RST dropped: %d half-open entries (%v), want 1: the check cannot see the difference", len(open), err)
		}
		dropped := dropCount(t, p)
		if dropped < 1 {
			t.Fatalf("the rule dropped %d RSTs, want at least the kernel's one", dropped)
		}

		res = p.probe(t, dst, Options{}, true)
		if !res.SupportsTFO {
			t.Errorf("got %+v, want a cookie", res)
		}
		p.assertNoHalfOpen(t, res)
		if d := dropCount(t, p) - dropped; d < 1 {
			t.Errorf("the rule dropped %d more RSTs, want the kernel's", d)
		}
	})
}

// dropCount is the packet counter of the one rule in the client's OUTPUT
// chain, from "iptables -v -S", which prints counters as "-c packets bytes".
func dropCount(t *testing.T, p *pair) int64 {
	t.Helper()
	out := p.iptables(t, p.crun, "-v", "-S", "OUTPUT")
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "-A OUTPUT ") {
			continue
		}
		if m := regexp.MustCompile(` -c (\d+) \d+`).FindStringSubmatch(line); m != nil {
			n, err := strconv.ParseInt(m[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no counted rule in the client's OUTPUT chain:\n%s", out)
	return 0
}

// TestProbeSourcePort: a chosen source port is used, and one another
// socket holds is a local error.
func TestProbeSourcePort(t *testing.T) {
	bothFamilies(t, tfoServer, func(t *testing.T, p *pair) {
		dst := p.listen(t, 16)
		res := p.probe(t, dst, Options{SrcPort: 40404}, true)
		if res.Source != netip.AddrPortFrom(p.fam.client, 40404) || !res.SupportsTFO {
			t.Errorf("got %+v, want a cookie for source port 40404", res)
		}
		p.assertNoHalfOpen(t, res)

		var ln net.Listener
		if err := p.crun(func() (err error) {
			ln, err = net.Listen("tcp", netip.AddrPortFrom(p.fam.client, 40405).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		res, err := Probe(context.Background(), p.crun, p.fam.client, dst, Options{SrcPort: 40405})
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("port in use: got %+v, %v; want EADDRINUSE", res, err)
		}
	})
}

// TestProbeSourceFromRoute: with no source address the route picks it.
func TestProbeSourceFromRoute(t *testing.T) {
	bothFamilies(t, tfoServer, func(t *testing.T, p *pair) {
		dst := p.listen(t, 16)
		res, err := Probe(context.Background(), p.crun, netip.Addr{}, dst, Options{})
		if err != nil || res.Source.Addr() != p.fam.client || !res.SupportsTFO {
			t.Errorf("got %+v, %v; want a cookie, sent from %s", res, err, p.fam.client)
		}
		p.assertNoHalfOpen(t, res)
	})
}
