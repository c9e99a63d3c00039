package observation

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket/layers"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/tcpmetrics"
	"github.com/tfolab/tfolab/lab/tfo"
)

// sample is a small but complete observation: every field set, packets
// with frames, a malformed TFO option, a failed connection.
func sample() *Observation {
	t0 := time.Date(2026, 12, 1, 20, 0, 0, 123456789, time.UTC)
	cli := netip.MustParseAddrPort("10.34.1.2:40000")
	srv := netip.MustParseAddrPort("10.34.2.2:7000")
	frame := bytes.Repeat([]byte{0xab}, 74)
	o := New("baseline/routed/ipv4/sendto/cookie-then-data", lab.IPv4)
	o.Host = Host{Kernel: "6.18.0", LabVersion: "test", Tools: map[string]string{"iptables": "1.8.9"}}
	o.Started, o.Elapsed = t0, 3*time.Millisecond
	o.Node("client").Sysctls = map[string]string{"net.ipv4.tcp_fastopen": "1"}
	o.Node("client").Counters = lab.Counters{lab.TCPFastOpenActive: 1}
	o.Node("client").Metrics = []tcpmetrics.Entry{{Dst: srv.Addr(), FastOpenCookie: []byte{1, 2, 3, 4, 5, 6, 7, 8}, FastOpenMSS: 1460, Values: map[string]uint32{"rtt_us": 800}}}
	o.Node("server").Counters = lab.Counters{lab.TCPFastOpenPassive: 1, lab.TCPFastOpenCookieReqd: 1}
	o.Services = []Service{{Name: "service", Node: "server", Kind: "listener", Addr: srv,
		Accepted: []Accepted{{Remote: cli, Request: []byte("GET /\n"), SynData: true, Time: t0.Add(time.Millisecond)}}}}
	o.Conns = []Conn{
		{Client: "client", Node: "client", Service: "service", Label: "detect", Round: 2, Mode: "sendto", Local: cli, Remote: srv,
			Request: []byte("GET /\n"), Response: []byte("GET /\n"), SynData: true, ClientFail: tfo.ClientFailUnspec,
			Start: t0, Connected: 80 * time.Microsecond, FirstByte: 200 * time.Microsecond, Done: 300 * time.Microsecond,
			ClientLink: "client/to-router", ServerLink: "server/to-router"},
		{Client: "client", Node: "client", Mode: "plain", Local: cli, Remote: srv, Error: "connect: connection refused", Errno: "ECONNREFUSED", Stalled: true, Start: t0.Add(time.Second)},
	}
	o.Links["client/to-router"] = &Link{Node: "client", Interface: "to-router", Dropped: 2, Packets: []capture.Packet{
		{Time: t0, Link: "client/to-router", Src: cli, Dst: srv, Flags: capture.FlagSYN, Seq: 7, Window: 64240, Length: 6, Payload: []byte("GET /\n"),
			Options:  []layers.TCPOption{{OptionType: 34, OptionLength: 10, OptionData: []byte{1, 2, 3, 4, 5, 6, 7, 8}}},
			FastOpen: &capture.FastOpenOption{Cookie: []byte{1, 2, 3, 4, 5, 6, 7, 8}}, Frame: frame},
		{Time: t0.Add(time.Millisecond), Link: "client/to-router", Src: srv, Dst: cli, Flags: capture.FlagSYN | capture.FlagACK, Seq: 9, Ack: 14,
			FastOpenErr: capture.ErrMalformedFastOpen, Frame: frame[:60]},
	}}
	o.Links["server/to-router"] = &Link{Node: "server", Interface: "to-router"}
	o.Middleboxes = []Middlebox{{Name: "drop-syn-data", Node: "router", Family: lab.IPv4, Rules: []RuleHits{{Rule: "iptables -t filter -A FORWARD -j DROP", Line: 3, Packets: 2}}}}
	o.SynSchedule = lab.NewSynSchedule(6, 4)
	o.Marks = []Mark{{Name: MarkDetection, Round: 1, At: t0.Add(3 * time.Second), Conns: 1}}
	return o
}

// equalOpts compares times by instant and errors by text: what JSON keeps.
var equalOpts = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
	cmp.Comparer(func(a, b error) bool { return (a == nil) == (b == nil) && (a == nil || a.Error() == b.Error()) }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

func TestJSONRoundTrip(t *testing.T) {
	dir := t.TempDir()
	o := sample()
	if _, err := o.Write(dir); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(o, got, equalOpts); d != "" {
		t.Fatalf("read back differs (-wrote +read):\n%s", d)
	}
	// Frames come back from the pcap beside the JSON.
	if !bytes.Equal(got.Links["client/to-router"].Packets[0].Frame, o.Links["client/to-router"].Packets[0].Frame) {
		t.Error("frames not restored from the pcap")
	}
	// A second write of what was read is byte-identical.
	var a, b bytes.Buffer
	if err := o.Encode(&a); err != nil {
		t.Fatal(err)
	}
	if err := got.Encode(&b); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Error("JSON of the read-back observation differs from the original's")
	}
}

func TestDecodeRefusesOtherSchema(t *testing.T) {
	if _, err := Decode(bytes.NewReader([]byte(`{"schema": 99}`))); err == nil {
		t.Fatal("schema 99 accepted")
	}
}

func TestConnPacketsSplitsReusedTuple(t *testing.T) {
	o := sample()
	o.Conns[1].ClientLink = "client/to-router"
	// Conn 1 starts a second after conn 0 on the same 4-tuple: the packets
	// before its start belong to conn 0.
	if n := len(o.ConnPackets(0, ClientSide)); n != 2 {
		t.Errorf("conn 0: %d packets, want 2", n)
	}
	if n := len(o.ConnPackets(1, ClientSide)); n != 0 {
		t.Errorf("conn 1: %d packets, want 0", n)
	}
	if n := len(o.ConnPackets(0, ServerSide)); n != 0 {
		t.Errorf("conn 0 server side: %d packets, want 0", n)
	}
}
