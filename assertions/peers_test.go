package assertions

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/probe"
	"github.com/tfolab/tfolab/observation"
)

// The peers' matchers, judged on synthetic observations both ways.

func TestServedFile(t *testing.T) {
	body := []byte("0123456789")
	ok := []byte("HTTP/1.1 200 OK\r\ncontent-length: 10\r\ndate: x\r\n\r\n0123456789")
	for _, tc := range []struct {
		name, resp, evidence string
		pass                 bool
	}{
		{"intact", string(ok), "", true},
		{"one byte changed", strings.Replace(string(ok), "0123456789", "0123456780", 1), "first difference at byte 9", false},
		{"cut short", "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234", "body cut after 5 bytes", false},
		{"not found", "HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nno!", "HTTP 404", false},
		{"not HTTP", "GET / HTTP/1.1\r\n", "not an HTTP response", false},
	} {
		o := observation.New("served", 4)
		o.Conns = []observation.Conn{{Response: []byte(tc.resp)}}
		pass, detail := ServedFile(body).check(o, 0)
		if pass != tc.pass || !strings.Contains(detail, tc.evidence) {
			t.Errorf("%s: pass=%t %q, want pass=%t with %q", tc.name, pass, detail, tc.pass, tc.evidence)
		}
	}
	o := observation.New("served", 4)
	o.Conns = []observation.Conn{{Error: "context deadline exceeded", Stalled: true}}
	if pass, detail := ServedFile(body).check(o, 0); pass || !strings.Contains(detail, "stalled") {
		t.Errorf("a stalled connection: pass=%t %q", pass, detail)
	}
}

// frame builds an Ethernet/IPv4/TCP frame with the given options and
// decodes it as the lab's capture does.
func frame(t *testing.T, at time.Duration, src, dst netip.AddrPort, flags capture.TCPFlags, opts ...layers.TCPOption) capture.Packet {
	t.Helper()
	tcp := &layers.TCP{Seq: 100, Window: 64240, SYN: flags.Has(capture.FlagSYN), ACK: flags.Has(capture.FlagACK), Options: opts}
	if tcp.ACK {
		tcp.Ack = 101
	}
	b := labtest.TCPFrame(t, src, dst, tcp, nil)
	p, ok, err := capture.Decode(b, gopacket.CaptureInfo{Timestamp: t0.Add(at), CaptureLength: len(b), Length: len(b)})
	if err != nil || !ok {
		t.Fatalf("decode: ok=%t %v", ok, err)
	}
	return p
}

var (
	optMSS    = layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}}
	optReq    = layers.TCPOption{OptionType: 34, OptionLength: 2}
	optCookie = layers.TCPOption{OptionType: 34, OptionLength: 10, OptionData: []byte{1, 2, 3, 4, 5, 6, 7, 8}}
	optExpReq = layers.TCPOption{OptionType: 254, OptionLength: 4, OptionData: binary.BigEndian.AppendUint16(nil, 0xF989)}
)

// dissectorObservation has, in order: a cookie request, its SYN-ACK with
// a cookie, an ACK, an experimental (254) request, a plain SYN-ACK.
func dissectorObservation(t *testing.T) *observation.Observation {
	o := observation.New("dissect", 4)
	c := cli(40000)
	o.Links["client/to-router"] = &observation.Link{Node: "client", Interface: "to-router", Packets: []capture.Packet{
		frame(t, 0, c, srv, capture.FlagSYN, optMSS, optReq),
		frame(t, time.Millisecond, srv, c, capture.FlagSYN|capture.FlagACK, optMSS, optCookie),
		frame(t, 2*time.Millisecond, c, srv, capture.FlagACK),
		frame(t, time.Second, cli(40001), srv, capture.FlagSYN, optMSS, optExpReq),
		frame(t, time.Second+time.Millisecond, srv, cli(40001), capture.FlagSYN|capture.FlagACK, optMSS),
	}}
	return o
}

func TestOption34SYNs(t *testing.T) {
	o := dissectorObservation(t)
	if got := Option34SYNs(o.Links["client/to-router"].Packets); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("Option34SYNs = %v, want [1 2]: kind 34 on the SYN and the SYN-ACK, not the experimental 254", got)
	}
}

// pcapFrames counts the frames of a pcap file.
func pcapFrames(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			return n, nil
		}
		n++
	}
}

func TestDissectorAgrees(t *testing.T) {
	fixed := func(frames ...int) Dissector {
		return func(context.Context, string) ([]int, error) { return frames, nil }
	}
	o := dissectorObservation(t)
	if pass, detail := DissectorAgrees("fake", "f", fixed(1, 2)).check(o); !pass {
		t.Errorf("a dissector that agrees is rejected: %s", detail)
	}
	pass, detail := DissectorAgrees("fake", "f", fixed(1, 2, 4)).check(o)
	if pass || !strings.Contains(detail, "only the dissector: 4") {
		t.Errorf("a dissector that also lists the 254 SYN: pass=%t %q", pass, detail)
	}
	pass, detail = DissectorAgrees("fake", "f", fixed(1)).check(o)
	if pass || !strings.Contains(detail, "only the lab:       2") {
		t.Errorf("a dissector that misses the SYN-ACK: pass=%t %q", pass, detail)
	}
	// The dissector reads a pcap of exactly the link's frames, in order.
	var frames int
	count := func(_ context.Context, path string) ([]int, error) {
		var err error
		frames, err = pcapFrames(path)
		return []int{1, 2}, err
	}
	if pass, detail := DissectorAgrees("counting", "f", count).check(o); !pass || frames != 5 {
		t.Errorf("the pcap had %d frames, want 5 (pass=%t %q)", frames, pass, detail)
	}
	noFrames := dissectorObservation(t)
	noFrames.Links["client/to-router"].Packets[0].Frame = nil
	if pass, detail := DissectorAgrees("fake", "f", fixed(1, 2)).check(noFrames); pass || !strings.Contains(detail, "no raw frame") {
		t.Errorf("packets without frames: pass=%t %q", pass, detail)
	}
	if pass, detail := DissectorAgrees("fake", "f", fixed()).check(observation.New("empty", 4)); pass || !strings.Contains(detail, "nothing to compare") {
		t.Errorf("no packets at all: pass=%t %q", pass, detail)
	}
}

// backendObservation: a proxy on the client node made two plain
// connections to the backend service.
func backendObservation() *observation.Observation {
	o := observation.New("backend", 4)
	b0, b1 := cli(41000), cli(41001)
	plainSyn := func(at time.Duration, from netip.AddrPort) capture.Packet { return syn(at, from, nil, 0) }
	data := func(at time.Duration, from, to netip.AddrPort, n int) capture.Packet {
		return capture.Packet{Time: t0.Add(at), Src: from, Dst: to, Flags: capture.FlagACK | capture.FlagPSH, Length: n}
	}
	o.Links["client/to-router"] = &observation.Link{Node: "client", Interface: "to-router", Packets: []capture.Packet{
		plainSyn(0, b0), synack(time.Millisecond, b0, nil, 101), data(2*time.Millisecond, b0, srv, 73), data(3*time.Millisecond, srv, b0, 3100),
		plainSyn(time.Second, b1), synack(time.Second+time.Millisecond, b1, nil, 101), data(time.Second+2*time.Millisecond, b1, srv, 73),
		data(time.Second+3*time.Millisecond, srv, b1, 3100),
	}}
	o.Links["server/to-router"] = &observation.Link{Node: "server", Interface: "to-router", Packets: []capture.Packet{
		plainSyn(0, b0), plainSyn(time.Second, b1),
	}}
	o.Services = []observation.Service{
		{Name: "backend", Node: "server", Addr: srv, Accepted: []observation.Accepted{{Remote: b0}, {Remote: b1}}},
		{Name: "proxy", Node: "client", Addr: netip.MustParseAddrPort("10.34.1.2:7080")},
	}
	o.Conns = []observation.Conn{{Client: "front", Local: cli(50000), Remote: netip.MustParseAddrPort("10.34.1.2:7080")}}
	o.Middleboxes = []observation.Middlebox{{Name: StrayGuard, Node: "client", Rules: []observation.RuleHits{{Rule: "iptables -A OUTPUT -p udp -j DROP"}}}}
	o.Host.Tools = map[string]string{"haproxy": "2.6.12-1+deb12u4"}
	return o
}

func finding() obsMatcher {
	return EveryBackend("backend", 2,
		Dialogue(AtClient, ClientSYN().WithoutFastOpen().WithoutPayload(), ServerSYNACK().WithoutFastOpen().AckingSYNOnly(), ClientData()),
		Dialogue(AtServer, ClientSYN().WithoutFastOpen().WithoutPayload()),
		ServerAcceptedSynData(false),
		FirstByteAfterSynRetransmissions(0))
}

func TestEveryBackend(t *testing.T) {
	o := backendObservation()
	conns, err := BackendConns(o, "backend")
	if err != nil || len(conns) != 2 {
		t.Fatalf("BackendConns = %v, %v", conns, err)
	}
	if c := conns[1]; c.Local != cli(41001) || c.ClientLink != "client/to-router" || c.ServerLink != "server/to-router" ||
		c.Node != "client" || c.Connected != time.Millisecond || c.FirstByte != 3*time.Millisecond {
		t.Errorf("backend connection 1 = %+v", c)
	}
	if pass, detail := finding().check(o); !pass {
		t.Errorf("plain backend connections rejected: %s", detail)
	}
	withTFO := backendObservation()
	withTFO.Links["client/to-router"].Packets[4].FastOpen = &capture.FastOpenOption{}
	if pass, detail := finding().check(withTFO); pass || !strings.Contains(detail, "backend connection 1") || !strings.Contains(detail, "has a TFO option") {
		t.Errorf("a backend cookie request: pass=%t %q", pass, detail)
	}
	withData := backendObservation()
	withData.Links["server/to-router"].Packets[0].Length = 73
	if pass, detail := finding().check(withData); pass || !strings.Contains(detail, "payload 73 bytes") {
		t.Errorf("data in a backend SYN: pass=%t %q", pass, detail)
	}
	// A retransmitted SYN (same ISN) is the same connection.
	retrans := backendObservation()
	l := retrans.Links["server/to-router"]
	l.Packets = append(l.Packets, syn(2*time.Second, cli(41001), nil, 0))
	if pass, detail := EveryBackend("backend", 2).check(retrans); !pass {
		t.Errorf("a retransmitted SYN counted as a connection: %s", detail)
	}
	if pass, detail := EveryBackend("backend", 3).check(o); pass || !strings.Contains(detail, "2 backend connections to backend in the captures, want 3") {
		t.Errorf("a missing backend connection: pass=%t %q", pass, detail)
	}
}

func TestProbesAgree(t *testing.T) {
	o := cookieThenData()
	lab := probe.Result{Answered: true, SupportsTFO: true, Cookie: cookie, Reason: "lab"}
	scapy := probe.Result{Answered: true, SupportsTFO: true, Cookie: cookie, Reason: "scapy"}
	o.Probes = []probe.Result{lab, scapy}
	if pass, detail := ProbesAgree(true).check(o); !pass {
		t.Errorf("agreeing probes rejected: %s", detail)
	}
	for _, tc := range []struct {
		name     string
		breakIt  func(o *observation.Observation)
		want     bool
		evidence string
	}{
		{"scapy sees no TFO", func(o *observation.Observation) { o.Probes[1].SupportsTFO = false }, true, "a probe disagrees"},
		{"another cookie", func(o *observation.Observation) { o.Probes[1].Cookie = []byte{9, 9, 9, 9} }, true, "different cookies"},
		{"only one probe", func(o *observation.Observation) { o.Probes = o.Probes[:1] }, true, "1 probes"},
		{"the connection got another cookie", func(o *observation.Observation) {
			o.Links["client/to-router"].Packets[1].FastOpen = &capture.FastOpenOption{Cookie: []byte{7, 7, 7, 7}}
		}, true, "was offered cookie 07070707"},
		{"probes say TFO, want none", func(*observation.Observation) {}, false, "a probe disagrees"},
	} {
		o := cookieThenData()
		o.Probes = []probe.Result{lab, scapy}
		tc.breakIt(o)
		if pass, detail := ProbesAgree(tc.want).check(o); pass || !strings.Contains(detail, tc.evidence) {
			t.Errorf("%s: pass=%t %q, want %q", tc.name, pass, detail, tc.evidence)
		}
	}
}

func TestNoStrayTraffic(t *testing.T) {
	if pass, detail := NoStrayTraffic("client").check(backendObservation()); !pass {
		t.Errorf("a quiet proxy rejected: %s", detail)
	}
	dns := backendObservation()
	dns.Middleboxes[0].Rules[0].Packets = 2
	if pass, detail := NoStrayTraffic("client").check(dns); pass || !strings.Contains(detail, "2 datagram(s) dropped") {
		t.Errorf("DNS queries: pass=%t %q", pass, detail)
	}
	elsewhere := backendObservation()
	l := elsewhere.Links["client/to-router"]
	out := syn(5*time.Second, cli(42000), nil, 0)
	out.Dst = netip.MustParseAddrPort("10.34.2.9:443")
	l.Packets = append(l.Packets, out)
	if pass, detail := NoStrayTraffic("client").check(elsewhere); pass || !strings.Contains(detail, "10.34.2.9.443") {
		t.Errorf("a SYN to no service: pass=%t %q", pass, detail)
	}
	unguarded := backendObservation()
	unguarded.Middleboxes = nil
	if pass, detail := NoStrayTraffic("client").check(unguarded); pass || !strings.Contains(detail, "no stray-guard") {
		t.Errorf("no guard: pass=%t %q", pass, detail)
	}
}

func TestToolVersion(t *testing.T) {
	o := backendObservation()
	if pass, detail := ToolVersion("haproxy", "2.6.").check(o); !pass {
		t.Errorf("haproxy 2.6.12 rejected: %s", detail)
	}
	o.Host.Tools["haproxy"] = "3.4.0"
	if pass, detail := ToolVersion("haproxy", "2.6.").check(o); pass || !strings.Contains(detail, "measure this version") {
		t.Errorf("haproxy 3.4: pass=%t %q", pass, detail)
	}
	delete(o.Host.Tools, "haproxy")
	if pass, detail := ToolVersion("haproxy", "2.6.").check(o); pass || !strings.Contains(detail, "records no haproxy version") {
		t.Errorf("no version: pass=%t %q", pass, detail)
	}
}
