package rawpeer_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/rawpeer"
	"github.com/tfolab/tfolab/lab/rules"
	"github.com/tfolab/tfolab/lab/tcpmetrics"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/topology"
)

const port = 7000

var (
	synAckData = []byte("hello from the SYN-ACK\n")
	cookie     = []byte{0xc0, 0x01, 0xc0, 0x0c, 0x1e, 0x00, 0x00, 0x01}
	request    = []byte("GET / (tfolab rawpeer)\n")
)

// env is one lab with the peer answering on the server.
type env struct {
	fam            topology.Family
	client, server *lab.Namespace
	remote         netip.AddrPort
	peer           *rawpeer.Peer
	capture        *capture.Capture
	rst            []rules.Rule
}

// conn is what one client connection left behind, from every angle.
type conn struct {
	res     tfo.Result
	rec     rawpeer.ConnRecord
	delta   lab.Counters
	metrics tcpmetrics.Entry
	cached  bool
}

func (c conn) String() string {
	return fmt.Sprintf("app: err %v, response %q, syn_data %t, client_fail %s, total_retrans %d, connected %v, first byte %v\npeer: %scounters: %s\ntcp_metrics: %v (found %t)",
		c.res.Err, c.res.Response, c.res.SynData, c.res.ClientFail, c.res.TotalRetrans, c.res.Connected, c.res.FirstByte,
		c.rec, c.delta.Table(lab.TCPFastOpenActive, lab.TCPFastOpenActiveFail, lab.TCPSynRetrans, "Tcp.RetransSegs"),
		c.metrics, c.cached)
}

func setup(t *testing.T, ctx context.Context, spec topology.Spec, fam topology.Family, ackSynData bool) *env {
	t.Helper()
	l := labtest.Lab(t)
	topo, err := topology.Build(ctx, l, spec)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{fam: fam, client: topo.Namespace(topology.Client), server: topo.Namespace(topology.Server)}
	if err := e.client.SetSysctls(map[string]string{"net.ipv4.tcp_fastopen": "1"}); err != nil {
		t.Fatal(err)
	}
	srv, err := topo.Addr(topology.Server, fam)
	if err != nil {
		t.Fatal(err)
	}
	e.remote = netip.AddrPortFrom(srv, port)
	iface := func(role string) string {
		t.Helper()
		peer, err := topo.Neighbor(role)
		if err != nil {
			t.Fatal(err)
		}
		name, err := topo.Interface(role, peer)
		if err != nil {
			t.Fatal(err)
		}
		return name
	}
	e.rst = []rules.Rule{rawpeer.SuppressKernelRST(port)}
	if err := rules.Apply(l, e.server, fam, e.rst); err != nil {
		t.Fatal(err)
	}
	e.peer, err = rawpeer.Start(ctx, rawpeer.Options{
		Addr: e.remote, Run: e.server.Runner(), Interface: iface(topology.Server),
		SynAckData: synAckData, Cookie: cookie, AckSynData: ackSynData,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // runs before the lab's teardown (LIFO)
		if err := e.peer.Close(); err != nil {
			t.Errorf("peer: %v", err)
		}
	})
	e.capture, err = capture.Start(e.client.Handle(), iface(topology.Client), capture.Options{Link: "client"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.capture.Stop(); err != nil {
			t.Errorf("capture: %v", err)
		}
		if t.Failed() {
			var b strings.Builder
			for _, p := range e.capture.Packets() {
				b.WriteString(p.String() + "\n")
			}
			t.Logf("client link:\n%s", b.String())
		}
	})
	return e
}

// dial runs connection i and waits until the peer has seen it close.
func (e *env) dial(t *testing.T, ctx context.Context, i int, mode tfo.Mode) conn {
	t.Helper()
	before, err := e.client.Counters()
	if err != nil {
		t.Fatal(err)
	}
	var c conn
	c.res = tfo.Request(ctx, tfo.DialOptions{Mode: mode, Run: tfo.Runner(e.client.Runner())}, e.remote, request)
	recs, err := e.peer.Wait(ctx, func(r []rawpeer.ConnRecord) bool { return len(r) > i && r[i].Closed })
	if err != nil || len(recs) != i+1 {
		t.Fatalf("connection %d (%s): peer: %v; %d records:\n%v\napp: %+v", i, mode, err, len(recs), recs, c.res)
	}
	c.rec = recs[i]
	after, err := e.client.Counters()
	if err != nil {
		t.Fatal(err)
	}
	c.delta = after.Sub(before)
	if c.metrics, c.cached, err = tcpmetrics.Get(e.client.Handle(), e.remote.Addr()); err != nil {
		t.Fatal(err)
	}
	t.Logf("connection %d (%s):\n%s", i, mode, c)
	return c
}

// check collects failed expectations of one connection, so a failure shows
// all of them next to the evidence.
type check struct {
	t    *testing.T
	name string
	c    conn
	errs []string
}

func (k *check) expect(ok bool, format string, args ...any) {
	if !ok {
		k.errs = append(k.errs, fmt.Sprintf(format, args...))
	}
}

func (k *check) counter(name string, want int64) {
	got, ok := k.c.delta.Get(name)
	k.expect(ok && got == want, "client counter %s: got %+d (exported %t), want %+d", name, got, ok, want)
}

func (k *check) done() {
	k.t.Helper()
	if len(k.errs) > 0 {
		k.t.Errorf("%s: %d expectations failed:\n  %s\nevidence:\n%s", k.name, len(k.errs), strings.Join(k.errs, "\n  "), k.c)
	}
}

// appReadSynAckData: the application read exactly the SYN-ACK's payload,
// once, then EOF (the peer sends nothing else).
func (k *check) appReadSynAckData() {
	k.expect(k.c.res.Err == nil, "request failed: %v", k.c.res.Err)
	k.expect(bytes.Equal(k.c.res.Response, synAckData), "app read %q, want the SYN-ACK payload %q once", k.c.res.Response, synAckData)
	k.expect(bytes.Equal(k.c.rec.Received, request), "peer received %q, want the request %q", k.c.rec.Received, request)
}

// firstAfterSynAck is the client's first segment after its SYN.
func (k *check) firstAfterSynAck() rawpeer.Segment {
	if len(k.c.rec.Segments) < 2 {
		k.expect(false, "client sent %d segments", len(k.c.rec.Segments))
		return rawpeer.Segment{}
	}
	return k.c.rec.Segments[1]
}

// TestLinuxClientWithSynAckData records what a Linux TFO client does with
// data in the SYN-ACK: connection 0 asks for a cookie (no data in the SYN),
// connection 1 uses the cached cookie and puts its request in the SYN,
// connection 2 is a plain connect() as a control. The peer acknowledges the
// SYN's data only in the "syn-data-acked" variants.
func TestLinuxClientWithSynAckData(t *testing.T) {
	labtest.NeedRoot(t, "builds lab namespaces, runs iptables and opens AF_PACKET sockets in them")
	// IPv4 over Direct, IPv6 through a router: both families and both
	// topologies, in 8 labs rather than 16. Sequential on purpose: many
	// labs built and torn down at once on a small VM starve the peer (and
	// the client) for hundreds of milliseconds.
	for _, ft := range []struct {
		fam  topology.Family
		spec topology.Spec
	}{{topology.IPv4, topology.Direct()}, {topology.IPv6, topology.Routed()}} {
		for _, mode := range []tfo.Mode{tfo.ModeSendto, tfo.ModeConnect} {
			for _, ackSynData := range []bool{false, true} {
				variant := "syn-data-unacked"
				if ackSynData {
					variant = "syn-data-acked"
				}
				t.Run(fmt.Sprintf("%s/%s/%s/%s", ft.spec.Name, ft.fam, mode, variant), func(t *testing.T) {
					run(t, ft.spec, ft.fam, mode, ackSynData)
				})
			}
		}
	}
}

func run(t *testing.T, spec topology.Spec, fam topology.Family, mode tfo.Mode, ackSynData bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	e := setup(t, ctx, spec, fam, ackSynData)
	dataLen := len(synAckData)

	// Connection 0: cookie request, no data in the SYN. The SYN-ACK carries
	// the cookie and 23 bytes.
	c0 := e.dial(t, ctx, 0, mode)
	k := &check{t: t, name: "connection 0 (cookie request)", c: c0}
	k.expect(c0.rec.CookieRequest && c0.rec.CookieSent && len(c0.rec.SynPayload) == 0 && c0.rec.SYNs == 1,
		"SYN: want one cookie request without data, answered with the cookie")
	k.expect(c0.rec.HandshakeAckedData() == dataLen, "handshake ACK covers %d bytes of the SYN-ACK payload, want all %d", c0.rec.HandshakeAckedData(), dataLen)
	s0 := k.firstAfterSynAck()
	k.expect(s0.Flags == capture.FlagACK && s0.Len == 0, "first segment after the SYN-ACK is [%s] len %d, want a pure ACK", s0.Flags, s0.Len)
	k.expect(!c0.rec.PayloadResent, "peer had to resend its payload")
	k.appReadSynAckData()
	// The kernel sets TCPI_OPT_SYN_DATA whenever it queued SYN-ACK data
	// (syn_data_acked), although this SYN carried none.
	k.expect(c0.res.SynData, "tcpi_options SYN_DATA not set")
	k.expect(c0.res.ClientFail == tfo.ClientFailNoCookie, "client_fail %s, want %s", c0.res.ClientFail, tfo.ClientFailNoCookie)
	k.expect(c0.res.TotalRetrans == 0, "total_retrans %d, want 0", c0.res.TotalRetrans)
	k.counter(lab.TCPFastOpenActive, 0)
	k.counter(lab.TCPFastOpenActiveFail, 0)
	k.counter(lab.TCPSynRetrans, 0)
	k.expect(c0.cached && bytes.Equal(c0.metrics.FastOpenCookie, cookie), "tcp_metrics cookie %x (entry found %t), want %x", c0.metrics.FastOpenCookie, c0.cached, cookie)
	k.done()

	// Connection 1: the cached cookie and the request in the SYN.
	c1 := e.dial(t, ctx, 1, mode)
	k = &check{t: t, name: "connection 1 (cookie + SYN data)", c: c1}
	k.expect(bytes.Equal(c1.rec.Cookie, cookie) && bytes.Equal(c1.rec.SynPayload, request) && !c1.rec.CookieSent && c1.rec.SYNs == 1,
		"SYN: want one SYN with cookie %x and the request", cookie)
	k.appReadSynAckData()
	k.counter(lab.TCPSynRetrans, 0)
	k.expect(c1.cached && bytes.Equal(c1.metrics.FastOpenCookie, cookie) && c1.metrics.FastOpenSynDrops == 0,
		"tcp_metrics: cookie %x syn drops %d, want cookie %x kept, no drops", c1.metrics.FastOpenCookie, c1.metrics.FastOpenSynDrops, cookie)
	s := k.firstAfterSynAck()
	if !ackSynData {
		// The SYN-ACK acks ISN+1 only. The client drops the SYN-ACK's
		// payload (acks ServerISN+1), sends no pure ACK, and resends its
		// SYN data at once (timed on the wire below); the peer then resends
		// its payload, which the client takes.
		k.expect(c1.rec.HandshakeAckedData() == 0, "handshake ACK covers %d bytes of the SYN-ACK payload, want 0 (dropped)", c1.rec.HandshakeAckedData())
		k.expect(s.Flags == capture.FlagACK|capture.FlagPSH && s.Seq == c1.rec.ClientISN+1 && s.Ack == c1.rec.ServerISN+1 && s.Len == len(request),
			"first segment after the SYN-ACK is [%s] seq +%d ack +%d len %d, want [P.] with the SYN data again at ISN+1, ack +1",
			s.Flags, s.Seq-c1.rec.ClientISN, s.Ack-c1.rec.ServerISN, s.Len)
		k.expect(c1.rec.PayloadResent && c1.rec.SynAckDataAcked, "payload resent %t, then acked %t: want both", c1.rec.PayloadResent, c1.rec.SynAckDataAcked)
		k.expect(!c1.res.SynData, "tcpi_options SYN_DATA set")
		k.expect(c1.res.ClientFail == tfo.ClientFailDataNotAcked, "client_fail %s, want %s", c1.res.ClientFail, tfo.ClientFailDataNotAcked)
		k.expect(c1.res.TotalRetrans == 1, "total_retrans %d, want 1", c1.res.TotalRetrans)
		k.counter(lab.TCPFastOpenActive, 0)
		k.counter(lab.TCPFastOpenActiveFail, 1)
	} else {
		// The SYN-ACK acks the SYN data: TFO succeeded, the payload is
		// queued and acknowledged in the handshake ACK.
		k.expect(c1.rec.HandshakeAckedData() == dataLen, "handshake ACK covers %d bytes of the SYN-ACK payload, want all %d", c1.rec.HandshakeAckedData(), dataLen)
		k.expect(s.Flags == capture.FlagACK && s.Len == 0 && s.Seq == c1.rec.ClientISN+1+uint32(len(request)),
			"first segment after the SYN-ACK is [%s] seq +%d len %d, want a pure ACK after the SYN data", s.Flags, s.Seq-c1.rec.ClientISN, s.Len)
		k.expect(!c1.rec.PayloadResent, "peer had to resend its payload")
		k.expect(c1.res.SynData, "tcpi_options SYN_DATA not set")
		k.expect(c1.res.ClientFail == tfo.ClientFailUnspec, "client_fail %s, want %s", c1.res.ClientFail, tfo.ClientFailUnspec)
		k.expect(c1.res.TotalRetrans == 0, "total_retrans %d, want 0", c1.res.TotalRetrans)
		k.counter(lab.TCPFastOpenActive, 1)
		k.counter(lab.TCPFastOpenActiveFail, 0)
	}
	k.done()

	// Connection 2, control: a plain connect() never looks at SYN-ACK data.
	c2 := e.dial(t, ctx, 2, tfo.ModePlain)
	k = &check{t: t, name: "connection 2 (plain connect)", c: c2}
	k.expect(!c2.rec.CookieRequest && c2.rec.Cookie == nil && len(c2.rec.SynPayload) == 0, "SYN carries a TFO option or data")
	k.expect(c2.rec.HandshakeAckedData() == 0, "handshake ACK covers %d bytes of the SYN-ACK payload, want 0 (dropped)", c2.rec.HandshakeAckedData())
	s2 := k.firstAfterSynAck()
	k.expect(s2.Flags == capture.FlagACK && s2.Len == 0 && s2.Ack == c2.rec.ServerISN+1,
		"first segment after the SYN-ACK is [%s] ack +%d len %d, want a pure ACK of ISN+1", s2.Flags, s2.Ack-c2.rec.ServerISN, s2.Len)
	k.expect(c2.rec.PayloadResent, "peer did not resend its payload")
	k.appReadSynAckData()
	k.expect(!c2.res.SynData && c2.res.ClientFail == tfo.ClientFailUnspec, "syn_data %t client_fail %s, want false/unspec", c2.res.SynData, c2.res.ClientFail)
	k.counter(lab.TCPFastOpenActive, 0)
	k.counter(lab.TCPFastOpenActiveFail, 0)
	k.done()

	// The wire, as the client saw it: three SYN-ACKs, each with the payload
	// (the first with the cookie), and no RST from the server: the kernel's
	// RSTs were sent and dropped in the server namespace.
	if err := e.capture.Stop(); err != nil {
		t.Fatal(err)
	}
	var synAcks, rsts int
	var synAckTime, resendTime time.Time // connection 1 (kernel timestamps)
	for _, p := range e.capture.Packets() {
		if p.Src.Port() == c1.rec.Client.Port() && p.Dst == e.remote && p.Seq == c1.rec.ClientISN+1 && p.Length > 0 && resendTime.IsZero() {
			resendTime = p.Time
		}
		switch {
		case p.IsRST() && p.Src == e.remote:
			rsts++
		case p.IsSYNACK():
			synAcks++
			if p.Dst.Port() == c1.rec.Client.Port() {
				synAckTime = p.Time
			}
			if p.Length != dataLen {
				t.Errorf("client link: SYN-ACK with %d bytes, want %d: %s", p.Length, dataLen, p)
			}
			if wantCookie := synAcks == 1; (p.FastOpen != nil) != wantCookie || (wantCookie && !bytes.Equal(p.FastOpen.Cookie, cookie)) {
				t.Errorf("client link: SYN-ACK %d TFO option %v, want cookie: %t", synAcks, p.FastOpen, wantCookie)
			}
		}
	}
	if synAcks != 3 || rsts != 0 {
		t.Errorf("client link: %d SYN-ACKs and %d RSTs from the server, want 3 and 0", synAcks, rsts)
	}
	// Without AckSynData the client resends its SYN data as soon as the
	// SYN-ACK arrives (while processing it), not on a timer: anything under
	// TCP_RTO_MIN (200 ms) cannot be a timeout. Measured: 5-15 µs.
	if !ackSynData {
		gap := resendTime.Sub(synAckTime)
		if synAckTime.IsZero() || resendTime.IsZero() || gap < 0 || gap >= 200*time.Millisecond {
			t.Errorf("client link: connection 1 SYN-ACK at %v, SYN data resent at %v (gap %v): want a resend within 200 ms",
				synAckTime, resendTime, gap)
		} else {
			t.Logf("connection 1: SYN data resent %v after the SYN-ACK reached the client", gap)
		}
	}
	dropped, err := rules.Counters(e.server, e.fam, e.rst)
	if err != nil {
		t.Fatal(err)
	}
	if dropped[0] == 0 {
		t.Errorf("the RST-suppression rule dropped nothing: did the server kernel see the client's segments?")
	}
}
