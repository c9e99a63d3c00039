package tfo

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/netnsx"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Sysctl values of net.ipv4.tcp_fastopen.
const (
	tfoClient         = 0x1
	tfoServer         = 0x2
	tfoClientNoCookie = 0x4   // client sends data in SYN without a cookie
	tfoServerNoCookie = 0x200 // server accepts data in SYN without a cookie
	tfoServerNoSockop = 0x400 // listeners are TFO-enabled without setsockopt
)

var (
	clientV4 = netip.MustParseAddr("10.34.252.1")
	serverV4 = netip.MustParseAddr("10.34.252.2")
	nobodyV4 = netip.MustParseAddr("10.34.252.99")
	clientV6 = netip.MustParseAddr("fd34:252::1")
	serverV6 = netip.MustParseAddr("fd34:252::2")
	nobodyV6 = netip.MustParseAddr("fd34:252::99")
)

// lab is two throwaway namespaces joined by a veth pair c0 <-> s0.
type lab struct {
	client, server netns.NsHandle
	crun, srun     Runner
}

// needRoot skips t unless it runs as root.
func needRoot(t *testing.T) {
	t.Helper()
	labtest.NeedRoot(t, "creates network namespaces and veth links")
}

// newLab builds the namespaces and sets net.ipv4.tcp_fastopen in each. It
// never touches the root namespace.
func newLab(t *testing.T, clientTFO, serverTFO int) *lab {
	t.Helper()
	needRoot(t)
	v := labtest.NewVethPair(t,
		labtest.End{Name: "c0", Addrs: []netip.Prefix{netip.PrefixFrom(clientV4, 24), netip.PrefixFrom(clientV6, 64)}},
		labtest.End{Name: "s0", Addrs: []netip.Prefix{netip.PrefixFrom(serverV4, 24), netip.PrefixFrom(serverV6, 64)}})
	l := &lab{client: v.A, server: v.B}
	l.crun = func(f func() error) error { return netnsx.Do(l.client, f) }
	l.srun = func(f func() error) error { return netnsx.Do(l.server, f) }
	labtest.WriteSysctl(t, l.client, "net/ipv4/tcp_fastopen", strconv.Itoa(clientTFO))
	labtest.WriteSysctl(t, l.server, "net/ipv4/tcp_fastopen", strconv.Itoa(serverTFO))
	return l
}

func (l *lab) listen(t *testing.T, addr netip.Addr, opts ServerOptions) *Server {
	t.Helper()
	opts.Addr = netip.AddrPortFrom(addr, 0)
	opts.Run = l.srun
	s, err := Listen(opts)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return s
}

// dial connects to an IPv4 addr from the client namespace, without TFO.
func (l *lab) dial(t *testing.T, addr netip.AddrPort) net.Conn {
	t.Helper()
	var c net.Conn
	if err := l.crun(func() (err error) {
		c, err = net.Dial("tcp4", addr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// keyed listens on serverV4 with a TFO queue of 16 and key k (nil: the
// namespace's key).
func (l *lab) keyed(t *testing.T, k *Key) *Server {
	t.Helper()
	return l.listen(t, serverV4, ServerOptions{FastOpenQueue: 16, Key: k})
}

func (l *lab) request(t *testing.T, mode Mode, remote netip.AddrPort, payload string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := Request(ctx, DialOptions{Mode: mode, Run: l.crun}, remote, []byte(payload))
	t.Logf("%-7s -> %-22s syn_data=%-5v client_fail=%-36q retrans=%d rtt=%-8v connected=%-10v first_byte=%-10v done=%-10v err=%v",
		mode, remote, r.SynData, r.ClientFail, r.TotalRetrans, r.RTT, r.Connected, r.FirstByte, r.Done, r.Err)
	return r
}

// checkOK asserts a successful echo exchange with the given TFO verdict.
func checkOK(t *testing.T, r Result, local netip.Addr, payload string, synData bool, fail ClientFail) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("request: %v", r.Err)
	}
	if string(r.Response) != payload {
		t.Errorf("response %q, want %q", r.Response, payload)
	}
	if string(r.Request) != payload {
		t.Errorf("Result.Request %q, want %q", r.Request, payload)
	}
	if r.SynData != synData {
		t.Errorf("SynData = %v, want %v", r.SynData, synData)
	}
	if r.ClientFail != fail {
		t.Errorf("ClientFail = %v, want %v", r.ClientFail, fail)
	}
	if r.Stalled {
		t.Errorf("Stalled on success")
	}
	if r.Local.Addr() != local || r.Local.Port() == 0 {
		t.Errorf("Local = %v, want %v:<port>", r.Local, local)
	}
	if r.Start.IsZero() || r.Connected <= 0 || r.FirstByte < r.Connected || r.Done < r.FirstByte {
		t.Errorf("timings out of order: connected=%v first_byte=%v done=%v", r.Connected, r.FirstByte, r.Done)
	}
	if r.RTT <= 0 {
		t.Errorf("RTT = %v, want > 0", r.RTT)
	}
	// On a clean veth nothing is lost, but when the server does not take
	// the SYN's data the kernel retransmits it right after the SYN-ACK
	// (tcp_rcv_fastopen_synack), which counts as one retransmission.
	wantRetrans := uint32(0)
	if fail == ClientFailDataNotAcked {
		wantRetrans = 1
	}
	if r.TotalRetrans != wantRetrans {
		t.Errorf("TotalRetrans = %d, want %d", r.TotalRetrans, wantRetrans)
	}
}

// step is one request of a sequence and the TFO verdict it must get (fail
// left out: ClientFailUnspec).
type step struct {
	mode    Mode
	to      netip.AddrPort
	synData bool
	fail    ClientFail
}

// requests makes the requests of steps in order from local, each with
// payload p, and checks each with checkOK (request logs each one).
func (l *lab) requests(t *testing.T, local netip.Addr, p string, steps ...step) {
	t.Helper()
	for _, st := range steps {
		checkOK(t, l.request(t, st.mode, st.to, p), local, p, st.synData, st.fail)
	}
}

func checkAccepted(t *testing.T, s *Server, client netip.Addr, payload string, want ...bool) {
	t.Helper()
	acc := s.Accepted()
	if len(acc) != len(want) {
		t.Fatalf("server saw %d connections, want %d", len(acc), len(want))
	}
	for i, a := range acc {
		if a.Err != nil {
			t.Errorf("accepted[%d]: %v", i, a.Err)
		}
		if a.SynData != want[i] {
			t.Errorf("accepted[%d].SynData = %v, want %v", i, a.SynData, want[i])
		}
		if string(a.Request) != payload {
			t.Errorf("accepted[%d].Request = %q, want %q", i, a.Request, payload)
		}
		if a.Remote.Addr() != client {
			t.Errorf("accepted[%d].Remote = %v, want %v", i, a.Remote, client)
		}
	}
}

type family struct {
	name                   string
	client, server, nobody netip.Addr
}

var families = []family{
	{"v4", clientV4, serverV4, nobodyV4},
	{"v6", clientV6, serverV6, nobodyV6},
}

// forModes runs f as parallel subtests for each mode and address family,
// each with its own lab (the client's cookie cache is per namespace).
func forModes(t *testing.T, modes []Mode, f func(t *testing.T, m Mode, fam family)) {
	for _, m := range modes {
		for _, fam := range families {
			t.Run(m.String()+"/"+fam.name, func(t *testing.T) {
				needRoot(t)
				t.Parallel()
				f(t, m, fam)
			})
		}
	}
}

var tfoModes = []Mode{ModeSendto, ModeConnect}

// thisMode in a step of TestRequestSequences stands for the subtest's mode.
const thisMode Mode = -1

// TestRequestSequences gives each mode and address family of a case a lab
// of its own with the case's sysctls and one listener (TCP_FASTOPEN 16),
// makes the case's requests to it in order, each with its TFO verdict, and
// checks what the server accepted.
func TestRequestSequences(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		modes                []Mode
		clientTFO, serverTFO int
		payload              string
		steps                []step // to: the listener
		accepted             []bool
	}{
		{"cookie then SYN data", tfoModes, tfoClient, tfoServer, "hello tfo\n", []step{
			// No cookie yet: the SYN only asked for one, and the kernel says so.
			{mode: thisMode, fail: ClientFailNoCookie},
			{mode: thisMode, synData: true},
			{mode: thisMode, synData: true},
		}, []bool{false, true, true}},
		// More than fits in a SYN: sendto/write return a partial count and
		// the rest goes out after the handshake.
		{"large payload, partial SYN data", tfoModes, tfoClient, tfoServer, strings.Repeat("0123456789abcdef", 1000) + "\n", []step{ // 16001 bytes
			{mode: thisMode, fail: ClientFailNoCookie},
			{mode: thisMode, synData: true},
		}, []bool{false, true}},
		{"plain never SYN data", []Mode{ModePlain}, tfoClient, tfoServer, "plain\n", []step{
			{mode: ModePlain},
			// Even with a cookie cached for the server, plain connects stay plain.
			{mode: ModeSendto, fail: ClientFailNoCookie},
			{mode: ModePlain},
			{mode: ModeSendto, synData: true},
			{mode: ModePlain},
		}, []bool{false, false, false, true, false}},
		// Client 0x5 sends data in the SYN without a cookie; server 0x202
		// takes it.
		{"no-cookie mode", tfoModes, tfoClient | tfoClientNoCookie, tfoClient | tfoServer | tfoServerNoCookie, "no cookie needed\n", []step{
			{mode: thisMode, synData: true},
			{mode: thisMode, synData: true},
		}, []bool{true, true}},
		// Server sysctl 1: the listener has a TFO queue but the namespace
		// does not serve TFO, so no cookie is ever handed out.
		{"server TFO off", tfoModes, tfoClient, tfoClient, "tfo off\n", []step{
			{mode: thisMode, fail: ClientFailNoCookie},
			{mode: thisMode, fail: ClientFailNoCookie},
			{mode: thisMode, fail: ClientFailNoCookie},
		}, []bool{false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forModes(t, tc.modes, func(t *testing.T, m Mode, fam family) {
				l := newLab(t, tc.clientTFO, tc.serverTFO)
				s := l.listen(t, fam.server, ServerOptions{FastOpenQueue: 16})
				steps := slices.Clone(tc.steps)
				for i := range steps {
					steps[i].to = s.Addr()
					if steps[i].mode == thisMode {
						steps[i].mode = m
					}
				}
				l.requests(t, fam.client, tc.payload, steps...)
				checkAccepted(t, s, fam.client, tc.payload, tc.accepted...)
			})
		})
	}
}

func TestClientTFOOff(t *testing.T) {
	// Client sysctl 0: the TFO modes fail with EOPNOTSUPP, plain still works.
	needRoot(t)
	l := newLab(t, 0, tfoServer)
	s := l.listen(t, serverV4, ServerOptions{FastOpenQueue: 16})
	for _, m := range tfoModes {
		r := l.request(t, m, s.Addr(), "x\n")
		if !errors.Is(r.Err, unix.EOPNOTSUPP) || r.Stalled {
			t.Errorf("%s with client TFO off: err %v, want EOPNOTSUPP", m, r.Err)
		}
	}
	checkOK(t, l.request(t, ModePlain, s.Addr(), "x\n"), clientV4, "x\n", false, ClientFailUnspec)
}

func TestListenerQueue(t *testing.T) {
	needRoot(t)
	const p = "queue\n"
	t.Run("sysctl 2 without TCP_FASTOPEN", func(t *testing.T) {
		l := newLab(t, tfoClient, tfoServer)
		s := l.listen(t, serverV4, ServerOptions{})
		for range 2 {
			checkOK(t, l.request(t, ModeSendto, s.Addr(), p), clientV4, p, false, ClientFailNoCookie)
		}
	})
	t.Run("sysctl 0x402 without TCP_FASTOPEN", func(t *testing.T) {
		l := newLab(t, tfoClient, tfoServer|tfoServerNoSockop)
		s := l.listen(t, serverV4, ServerOptions{})
		checkOK(t, l.request(t, ModeSendto, s.Addr(), p), clientV4, p, false, ClientFailNoCookie)
		checkOK(t, l.request(t, ModeSendto, s.Addr(), p), clientV4, p, true, ClientFailUnspec)
	})
}

func TestReply(t *testing.T) {
	needRoot(t)
	l := newLab(t, tfoClient, tfoServer)
	s := l.listen(t, serverV4, ServerOptions{FastOpenQueue: 16, Reply: []byte("HTTP/1.0 200 OK\r\n\r\nfixed")})
	r := l.request(t, ModeConnect, s.Addr(), "GET / HTTP/1.0\n")
	if r.Err != nil || string(r.Response) != "HTTP/1.0 200 OK\r\n\r\nfixed" {
		t.Fatalf("response %q, err %v", r.Response, r.Err)
	}
}

// stallSlack is how late Request may return after its context expires.
const stallSlack = 50 * time.Millisecond

func TestStalled(t *testing.T) {
	const timeout = 300 * time.Millisecond
	// attempt runs one request with a 300 ms deadline. It measures when
	// Request returned both from the start and from the moment a bystander
	// goroutine saw the context expire: on a loaded VM the runtime's own
	// timers can fire hundreds of milliseconds late, which says nothing
	// about this package.
	type outcome struct {
		r       Result
		elapsed time.Duration // start -> Request returned
		after   time.Duration // ctx expiry seen -> Request returned
		expiry  time.Duration // start -> ctx expiry seen by a bystander
	}
	attempt := func(l *lab, m Mode, remote netip.AddrPort) outcome {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		seen := make(chan time.Time, 1)
		go func() { <-ctx.Done(); seen <- time.Now() }()
		start := time.Now()
		r := Request(ctx, DialOptions{Mode: m, Run: l.crun}, remote, []byte("anyone?\n"))
		end := time.Now()
		expired := <-seen
		return outcome{r, end.Sub(start), end.Sub(expired), expired.Sub(start)}
	}
	// run checks the result and retries the timing bound a few times, so
	// that one scheduling hiccup of a busy machine does not fail the test;
	// a real hang fails every attempt.
	run := func(t *testing.T, l *lab, m Mode, remote netip.AddrPort) Result {
		t.Helper()
		var o outcome
		for i := range 3 {
			o = attempt(l, m, remote)
			t.Logf("%s attempt %d: returned after %v (context expiry seen at %v, returned %v after it), client_fail=%v, err: %v",
				m, i+1, o.elapsed.Round(time.Millisecond), o.expiry.Round(time.Millisecond),
				o.after.Round(time.Millisecond), o.r.ClientFail, o.r.Err)
			if !o.r.Stalled {
				t.Fatalf("Stalled = false")
			}
			if !errors.Is(o.r.Err, context.DeadlineExceeded) {
				t.Fatalf("err %v does not wrap context.DeadlineExceeded", o.r.Err)
			}
			if o.elapsed < timeout-5*time.Millisecond {
				t.Fatalf("returned after %v, before the %v deadline", o.elapsed, timeout)
			}
			if o.elapsed > timeout+2*time.Second {
				t.Fatalf("returned after %v with a %v deadline", o.elapsed, timeout)
			}
			if o.elapsed <= timeout+stallSlack {
				return o.r
			}
			// Late overall: acceptable only if the runtime itself noticed
			// the expiry late (a starved VM) and Request followed promptly.
			if o.expiry > timeout+stallSlack/2 && o.after <= stallSlack {
				t.Logf("the runtime saw the %v deadline only at %v (machine overloaded); Request returned %v after that",
					timeout, o.expiry.Round(time.Millisecond), o.after.Round(time.Millisecond))
				return o.r
			}
		}
		t.Errorf("returned %v after start and %v after the context expired (deadline %v, slack %v) on every attempt",
			o.elapsed, o.after, timeout, stallSlack)
		return o.r
	}
	// Nobody owns the address: ARP/ND never resolves and the SYN goes nowhere.
	forModes(t, []Mode{ModeSendto, ModeConnect, ModePlain}, func(t *testing.T, m Mode, fam family) {
		l := newLab(t, tfoClient, tfoServer)
		r := run(t, l, m, netip.AddrPortFrom(fam.nobody, 80))
		if r.Connected != 0 || r.Response != nil {
			t.Errorf("stalled handshake reported Connected=%v Response=%q", r.Connected, r.Response)
		}
		if !strings.Contains(r.Err.Error(), "handshake") {
			t.Errorf("err %q does not name the handshake", r.Err)
		}
	})
	// A listener that never accepts or answers: the handshake completes in
	// the kernel, the client then waits for a reply that never comes.
	t.Run("silent server", func(t *testing.T) {
		needRoot(t)
		t.Parallel()
		l := newLab(t, tfoClient, tfoServer)
		var ln net.Listener
		if err := l.srun(func() (err error) {
			ln, err = net.Listen("tcp4", netip.AddrPortFrom(serverV4, 0).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		remote := ln.Addr().(*net.TCPAddr).AddrPort()
		for _, m := range []Mode{ModeSendto, ModeConnect, ModePlain} {
			r := run(t, l, m, netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()))
			if r.Connected == 0 || !strings.Contains(r.Err.Error(), "read") {
				t.Errorf("%s: want a stall in read after connecting; connected=%v err=%v", m, r.Connected, r.Err)
			}
		}
	})
}

func TestCanceled(t *testing.T) {
	needRoot(t)
	l := newLab(t, tfoClient, tfoServer)
	// Cancel 100 ms into a handshake that never completes; Request must
	// return promptly after cancel() (measured from the call itself, since
	// a loaded machine may run the timer late). Retried against scheduling
	// hiccups; a real hang fails every attempt.
	var lag time.Duration
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		canceledAt := make(chan time.Time, 1)
		time.AfterFunc(100*time.Millisecond, func() { canceledAt <- time.Now(); cancel() })
		r := Request(ctx, DialOptions{Mode: ModeSendto, Run: l.crun}, netip.AddrPortFrom(nobodyV4, 80), []byte("x\n"))
		end := time.Now()
		lag = end.Sub(<-canceledAt)
		t.Logf("attempt %d: returned %v after cancel(): %v", i+1, lag.Round(time.Millisecond), r.Err)
		if !errors.Is(r.Err, context.Canceled) || r.Stalled {
			t.Fatalf("err %v stalled %v, want context.Canceled and not stalled", r.Err, r.Stalled)
		}
		if lag <= stallSlack {
			break
		}
	}
	if lag > stallSlack {
		t.Errorf("Request returned %v after cancel() on every attempt", lag)
	}
	// Already done before starting.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Request(ctx, DialOptions{Mode: ModePlain, Run: l.crun}, netip.AddrPortFrom(serverV4, 80), []byte("x\n"))
	if !errors.Is(r.Err, context.Canceled) || !r.Start.IsZero() {
		t.Errorf("pre-canceled: err %v, start %v", r.Err, r.Start)
	}
}

func TestRefused(t *testing.T) {
	needRoot(t)
	l := newLab(t, tfoClient, tfoServer)
	for _, m := range []Mode{ModeSendto, ModeConnect, ModePlain} {
		r := l.request(t, m, netip.AddrPortFrom(serverV4, 9), "x\n")
		if !errors.Is(r.Err, unix.ECONNREFUSED) || r.Stalled {
			t.Errorf("%s: err %v, want ECONNREFUSED", m, r.Err)
		}
	}
}

func TestPerListenerKey(t *testing.T) {
	needRoot(t)
	l := newLab(t, tfoClient, tfoServer)
	k1, err := RandomKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := RandomKey()
	k3, _ := RandomKey()
	a, b := l.keyed(t, &k1), l.keyed(t, &k2)
	const p = "key\n"

	l.requests(t, clientV4, p,
		// The client caches one cookie per destination address (not port).
		step{ModeSendto, a.Addr(), false, ClientFailNoCookie},
		step{ModeSendto, a.Addr(), true, ClientFailUnspec},
		// A's cookie is not valid for B: the data is not acknowledged...
		step{ModeSendto, b.Addr(), false, ClientFailDataNotAcked},
		// ...but B's SYN-ACK carried B's own cookie, which now works for B...
		step{ModeConnect, b.Addr(), true, ClientFailUnspec},
		// ...and not for A.
		step{ModeConnect, a.Addr(), false, ClientFailDataNotAcked})
	checkAccepted(t, a, clientV4, p, false, true, false)
	checkAccepted(t, b, clientV4, p, false, true)

	// Key rotation: a listener whose backup key is k1 still accepts the k1
	// cookie now cached (A just handed it out again).
	c := l.keyed(t, &Key{Primary: k3.Primary, Backup: &k1.Primary})
	checkOK(t, l.request(t, ModeSendto, c.Addr(), p), clientV4, p, true, ClientFailUnspec)
	checkAccepted(t, c, clientV4, p, true)
}

func TestSysctlKeyByteOrder(t *testing.T) {
	// A Key parsed from the sysctl's text makes the same cookies as the
	// namespace key set through the sysctl; the byte-swapped reading does not.
	needRoot(t)
	l := newLab(t, tfoClient, tfoServer)
	const text = "00112233-44556677-8899aabb-ccddeeff"
	labtest.WriteSysctl(t, l.server, "net/ipv4/tcp_fastopen_key", text)
	parsed, err := ParseKey(text)
	if err != nil {
		t.Fatal(err)
	}
	var swapped Key
	for i := range swapped.Primary {
		swapped.Primary[i] = byte(i*0x11) & 0xff
	}
	if swapped.Primary == parsed.Primary {
		t.Fatal("test keys are equal")
	}
	ns, same, other := l.keyed(t, nil), l.keyed(t, &parsed), l.keyed(t, &swapped)
	const p = "order\n"
	l.requests(t, clientV4, p,
		step{ModeSendto, ns.Addr(), false, ClientFailNoCookie},
		step{ModeSendto, same.Addr(), true, ClientFailUnspec},
		step{ModeSendto, other.Addr(), false, ClientFailDataNotAcked})

	// The sysctl prints back what ParseKey/String produce.
	if g := labtest.ReadSysctl(t, l.server, "net/ipv4/tcp_fastopen_key"); g != parsed.String() {
		t.Errorf("sysctl reads %q, Key.String() = %q", g, parsed.String())
	}
}

func TestSysctlIsPerNamespace(t *testing.T) {
	needRoot(t)
	read := func() string {
		b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_fastopen")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	before := read()
	val := tfoClient | tfoServer | tfoServerNoCookie
	if strconv.Itoa(val) == before {
		val = tfoServer
	}
	l := newLab(t, val, val)
	if inside := labtest.ReadSysctl(t, l.client, "net/ipv4/tcp_fastopen"); inside != strconv.Itoa(val) {
		t.Errorf("inside the lab: %q, want %d", inside, val)
	}
	if after := read(); after != before {
		t.Errorf("root namespace tcp_fastopen changed from %s to %s", before, after)
	}
}

func TestParseTCPInfoMatchesKernel(t *testing.T) {
	// Cross-check the hand-decoded offsets against x/sys's struct on a real,
	// quiescent socket.
	needRoot(t)
	l := newLab(t, tfoClient, tfoServer)
	s := l.listen(t, serverV4, ServerOptions{FastOpenQueue: 16})
	for range 2 {
		c := l.dial(t, s.Addr())
		if _, err := c.Write([]byte("x\n")); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := buf.ReadFrom(c); err != nil {
			t.Fatal(err)
		}
		rc, _ := c.(*net.TCPConn).SyscallConn()
		rc.Control(func(fd uintptr) {
			ti, err := readTCPInfo(fd)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if err != nil {
				t.Fatal(err)
			}
			if ti.State != ref.State || ti.Options != ref.Options ||
				ti.RTT != time.Duration(ref.Rtt)*time.Microsecond || ti.TotalRetrans != ref.Total_retrans {
				t.Errorf("parseTCPInfo %+v disagrees with unix.TCPInfo state=%d options=%#x rtt=%d total_retrans=%d",
					ti, ref.State, ref.Options, ref.Rtt, ref.Total_retrans)
			}
		})
		c.Close()
	}
	if acc := s.Accepted(); len(acc) != 2 || acc[0].SynData || acc[1].SynData {
		t.Errorf("net.Dial is a plain connect, yet accepted %+v", acc)
	}
}

func TestConcurrent(t *testing.T) {
	needRoot(t)
	l := newLab(t, tfoClient, tfoServer)
	s := l.listen(t, serverV6, ServerOptions{FastOpenQueue: 256})
	const p = "many\n"
	checkOK(t, l.request(t, ModeSendto, s.Addr(), p), clientV6, p, false, ClientFailNoCookie)
	const n = 64
	var wg sync.WaitGroup
	results := make([]Result, n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			results[i] = Request(ctx, DialOptions{Mode: tfoModes[i%2], Run: l.crun}, s.Addr(), []byte(p))
		})
	}
	wg.Wait()
	syn := 0
	for i, r := range results {
		if r.Err != nil || string(r.Response) != p {
			t.Errorf("request %d: %q, %v", i, r.Response, r.Err)
		}
		if r.SynData {
			syn++
		}
	}
	t.Logf("%d/%d concurrent requests had SYN data", syn, n)
	if syn != n {
		t.Errorf("only %d/%d concurrent requests had SYN data", syn, n)
	}
	if got := len(s.Accepted()); got != n+1 {
		t.Errorf("server recorded %d connections, want %d", got, n+1)
	}
}

func TestServerClose(t *testing.T) {
	// Close interrupts a connection that never sends its line.
	needRoot(t)
	l := newLab(t, tfoClient, tfoServer)
	s, err := Listen(ServerOptions{Addr: netip.AddrPortFrom(serverV4, 0), Run: l.srun, FastOpenQueue: 16})
	if err != nil {
		t.Fatal(err)
	}
	c := l.dial(t, s.Addr())
	defer c.Close()
	c.Write([]byte("no newline"))
	// Wait until the server has the connection.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server never tracked the connection")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Close took %v", el)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	acc := s.Accepted()
	// The server may or may not have read the bytes before Close.
	if len(acc) != 1 || acc[0].Err == nil || !strings.HasPrefix("no newline", string(acc[0].Request)) {
		t.Errorf("accepted %+v", acc)
	}
}

// TestKernelBehaviour pins down the raw syscall behaviour the client is
// built on, so a kernel that changes it is noticed here first.
func TestKernelBehaviour(t *testing.T) {
	needRoot(t)
	l := newLab(t, tfoClient, tfoServer)
	s := l.listen(t, serverV4, ServerOptions{FastOpenQueue: 16})
	sa := &unix.SockaddrInet4{Port: int(s.Addr().Port()), Addr: serverV4.As4()}
	payload := []byte("raw\n")

	socket := func(domain int, fastopenConnect bool) int {
		t.Helper()
		var fd int
		if err := l.crun(func() (err error) {
			fd, err = unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if fastopenConnect {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1); err != nil {
				t.Fatal(err)
			}
		}
		return fd
	}
	// finish waits for the handshake, sends what is left and drains the reply.
	finish := func(fd int, rest []byte) {
		t.Helper()
		defer unix.Close(fd)
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if n, err := unix.Poll(pfd, 5000); n != 1 || err != nil {
			t.Fatalf("poll: %d %v", n, err)
		}
		if len(rest) > 0 {
			if _, err := unix.Write(fd, rest); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		buf := make([]byte, 64)
		for {
			pfd[0].Events = unix.POLLIN
			if n, err := unix.Poll(pfd, 5000); n != 1 || err != nil {
				t.Fatalf("poll: %d %v", n, err)
			}
			n, err := unix.Read(fd, buf)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if n == 0 {
				return
			}
		}
	}

	// sendto(MSG_FASTOPEN) without a cookie: SYN with a cookie request, no
	// data taken, EINPROGRESS.
	fd := socket(unix.AF_INET, false)
	n, err := unix.SendmsgN(fd, payload, nil, sa, unix.MSG_FASTOPEN)
	t.Logf("sendto, no cookie: n=%d err=%v", n, err)
	if !errors.Is(err, unix.EINPROGRESS) {
		t.Errorf("sendto without cookie: n=%d err=%v, want EINPROGRESS", n, err)
	}
	// (The state may already be ESTABLISHED: a veth round trip is faster
	// than the next syscall.)
	ti, _ := readTCPInfo(uintptr(fd))
	if ti.ClientFail != ClientFailNoCookie {
		t.Errorf("after sendto without cookie: client_fail %v", ti.ClientFail)
	}
	finish(fd, payload)

	// With the cookie: the payload is queued into the SYN and counted.
	fd = socket(unix.AF_INET, false)
	n, err = unix.SendmsgN(fd, payload, nil, sa, unix.MSG_FASTOPEN)
	t.Logf("sendto, cookie: n=%d err=%v", n, err)
	if err != nil || n != len(payload) {
		t.Errorf("sendto with cookie: n=%d err=%v, want %d", n, err, len(payload))
	}
	finish(fd, payload[max(n, 0):])

	// TCP_FASTOPEN_CONNECT with the cookie cached: connect() returns 0 at
	// once without sending anything; the socket polls writable in SYN-SENT.
	fd = socket(unix.AF_INET, true)
	err = unix.Connect(fd, sa)
	ti, _ = readTCPInfo(uintptr(fd))
	t.Logf("connect, TCP_FASTOPEN_CONNECT, cookie: err=%v state=%d", err, ti.State)
	if err != nil || ti.State != tcpSynSent {
		t.Errorf("TCP_FASTOPEN_CONNECT with cookie: err=%v state=%d, want nil in SYN-SENT", err, ti.State)
	}
	n, err = unix.Write(fd, payload)
	t.Logf("first write after deferred connect: n=%d err=%v", n, err)
	if err != nil || n != len(payload) {
		t.Errorf("first write: n=%d err=%v", n, err)
	}
	finish(fd, payload[max(n, 0):])
	if acc := s.Accepted(); len(acc) != 3 || acc[0].SynData || !acc[1].SynData || !acc[2].SynData {
		t.Errorf("accepted %+v", acc)
	}

	// TCP_FASTOPEN_CONNECT without a cookie (fresh destination): connect()
	// sends a SYN with a cookie request and returns EINPROGRESS.
	s6 := l.listen(t, serverV6, ServerOptions{FastOpenQueue: 16})
	fd6 := socket(unix.AF_INET6, true)
	err = unix.Connect(fd6, &unix.SockaddrInet6{Port: int(s6.Addr().Port()), Addr: serverV6.As16()})
	ti, _ = readTCPInfo(uintptr(fd6))
	t.Logf("connect, TCP_FASTOPEN_CONNECT, no cookie: err=%v state=%d client_fail=%v", err, ti.State, ti.ClientFail)
	if !errors.Is(err, unix.EINPROGRESS) || ti.ClientFail != ClientFailNoCookie {
		t.Errorf("TCP_FASTOPEN_CONNECT without cookie: err=%v client_fail=%v, want EINPROGRESS, no cookie", err, ti.ClientFail)
	}
	finish(fd6, payload)

	// A listener's TCP_FASTOPEN_KEY set before listen() survives listen().
	k, _ := RandomKey()
	var lfd int
	if err := l.srun(func() (err error) {
		lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	if err := unix.SetsockoptString(lfd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_KEY, string(k.bytes())); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: serverV4.As4()}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 8); err != nil {
		t.Fatal(err)
	}
	var kb [32]byte
	got, err := getsockoptBytes(uintptr(lfd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN_KEY, kb[:])
	if err != nil || !bytes.Equal(got, k.bytes()) {
		t.Errorf("key after listen: % x, %v; want % x", got, err, k.bytes())
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	needRoot(t)
	l := newLab(t, tfoClient, tfoServer)
	before := runtime.NumGoroutine()
	s, err := Listen(ServerOptions{Addr: netip.AddrPortFrom(serverV4, 0), Run: l.srun, FastOpenQueue: 16})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []Mode{ModeSendto, ModeConnect, ModePlain} {
		if r := l.request(t, m, s.Addr(), "leak?\n"); r.Err != nil {
			t.Fatal(r.Err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		r := Request(ctx, DialOptions{Mode: m, Run: l.crun}, netip.AddrPortFrom(nobodyV4, 80), []byte("x\n"))
		cancel()
		if !r.Stalled {
			t.Fatalf("want a stall, got %v", r.Err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
