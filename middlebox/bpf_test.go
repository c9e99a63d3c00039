package middlebox

import (
	"net"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/labtest"
	"golang.org/x/net/bpf"
)

type seg struct {
	syn, ack, fin bool
	payload       int
	tcpOpts       []layers.TCPOption
	ipOpts        []layers.IPv4Option
	fragOffset    uint16
}

// packet builds an IP packet without link layer, as xt_bpf sees it.
func packet(t *testing.T, f lab.Family, s seg) []byte {
	t.Helper()
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 7413, Seq: 1000, Ack: 0, SYN: s.syn, ACK: s.ack, FIN: s.fin, Window: 65535, Options: s.tcpOpts}
	if s.ack {
		tcp.Ack = 5000
	}
	var ip gopacket.SerializableLayer
	if f == lab.IPv6 {
		ip6 := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, HopLimit: 64,
			SrcIP: net.ParseIP("fd34:1::2"), DstIP: net.ParseIP("fd34:2::2")}
		_ = tcp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	} else {
		ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
			SrcIP: net.IPv4(10, 34, 1, 2), DstIP: net.IPv4(10, 34, 2, 2), Options: s.ipOpts, FragOffset: s.fragOffset}
		_ = tcp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	}
	return labtest.Serialize(t, ip, tcp, gopacket.Payload(make([]byte, s.payload)))
}

func runBPF(t *testing.T, prog []bpf.Instruction, pkt []byte) bool {
	t.Helper()
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatal(err)
	}
	return n != 0
}

var (
	tfoCookie = layers.TCPOption{OptionType: 34, OptionLength: 10, OptionData: []byte{1, 2, 3, 4, 5, 6, 7, 8}}
	// 20 bytes of options: doff 10.
	opts20 = []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}
	// Router alert: 4 bytes, IHL 6.
	routerAlert = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
)

func TestSynDataProgram(t *testing.T) {
	cases := []struct {
		name string
		s    seg
		want bool
	}{
		{"SYN+10 bytes", seg{syn: true, payload: 10}, true},
		{"SYN+cookie+10 bytes", seg{syn: true, payload: 10, tcpOpts: []layers.TCPOption{tfoCookie}}, true},
		{"SYN+1 byte", seg{syn: true, payload: 1}, true},
		{"SYN without payload", seg{syn: true}, false},
		{"SYN with cookie request, no payload", seg{syn: true, tcpOpts: []layers.TCPOption{{OptionType: 34, OptionLength: 2}}}, false},
		{"SYN with doff 10, no payload", seg{syn: true, tcpOpts: opts20}, false},
		{"SYN with doff 10 + 10 bytes", seg{syn: true, tcpOpts: opts20, payload: 10}, true},
		{"SYN-ACK with payload", seg{syn: true, ack: true, payload: 10}, false},
		{"data ACK", seg{ack: true, payload: 10}, false},
		{"bare ACK", seg{ack: true}, false},
		{"FIN", seg{ack: true, fin: true}, false},
	}
	for _, f := range []lab.Family{lab.IPv4, lab.IPv6} {
		prog := TCPPayloadProgram(f, flagSYN|flagACK, flagSYN)
		for _, tc := range cases {
			t.Run(f.String()+"/"+tc.name, func(t *testing.T) {
				pkt := packet(t, f, tc.s)
				if got := runBPF(t, prog, pkt); got != tc.want {
					t.Errorf("match = %v, want %v (packet % x)", got, tc.want, pkt)
				}
			})
		}
	}
}

func TestSynDataProgramIPv4Options(t *testing.T) {
	prog := TCPPayloadProgram(lab.IPv4, flagSYN|flagACK, flagSYN)
	for _, tc := range []struct {
		payload int
		want    bool
	}{{0, false}, {1, true}, {10, true}} {
		pkt := packet(t, lab.IPv4, seg{syn: true, payload: tc.payload, ipOpts: routerAlert, tcpOpts: opts20})
		if ihl, doff := pkt[0]&0x0f, pkt[24+12]>>4; ihl != 6 || doff != 10 {
			t.Fatalf("built IHL %d doff %d, want 6 and 10", ihl, doff)
		}
		if got := runBPF(t, prog, pkt); got != tc.want {
			t.Errorf("IHL 6, doff 10, payload %d: match = %v, want %v", tc.payload, got, tc.want)
		}
	}
}

func TestSynDataProgramRejectsOtherHeaders(t *testing.T) {
	prog4 := TCPPayloadProgram(lab.IPv4, flagSYN|flagACK, flagSYN)
	frag := packet(t, lab.IPv4, seg{syn: true, payload: 10, fragOffset: 100})
	if runBPF(t, prog4, frag) {
		t.Error("non-first IPv4 fragment matched")
	}
	udp := packet(t, lab.IPv4, seg{syn: true, payload: 10})
	udp[9] = 17
	if runBPF(t, prog4, udp) {
		t.Error("IPv4 protocol 17 matched")
	}
	prog6 := TCPPayloadProgram(lab.IPv6, flagSYN|flagACK, flagSYN)
	ext := packet(t, lab.IPv6, seg{syn: true, payload: 10})
	ext[6] = 0 // hop-by-hop: the TCP header is not at offset 40
	if runBPF(t, prog6, ext) {
		t.Error("IPv6 with next header 0 matched")
	}
}

func TestDataProgram(t *testing.T) {
	for _, f := range []lab.Family{lab.IPv4, lab.IPv6} {
		prog := TCPPayloadProgram(f, flagSYN, 0)
		for _, tc := range []struct {
			name string
			s    seg
			want bool
		}{
			{"data ACK", seg{ack: true, payload: 100}, true},
			{"data+FIN", seg{ack: true, fin: true, payload: 5}, true},
			{"bare ACK", seg{ack: true}, false},
			{"bare FIN", seg{ack: true, fin: true}, false},
			{"SYN+data", seg{syn: true, payload: 10}, false},
			{"SYN-ACK+data", seg{syn: true, ack: true, payload: 10}, false},
		} {
			if got := runBPF(t, prog, packet(t, f, tc.s)); got != tc.want {
				t.Errorf("%s/%s: match = %v, want %v", f, tc.name, got, tc.want)
			}
		}
	}
}

func TestXTBPFBytecodeFormat(t *testing.T) {
	got, err := XTBPFBytecode([]bpf.Instruction{bpf.LoadAbsolute{Off: 9, Size: 1}, bpf.RetConstant{Val: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if got != "2,48 0 0 9,6 0 0 1" {
		t.Errorf("got %q", got)
	}
	if _, err := XTBPFBytecode([]bpf.Instruction{bpf.LoadAbsolute{Off: 9, Size: 3}}); err == nil {
		t.Error("invalid instruction assembled")
	}
	if !strings.Contains(BPFListing(TCPPayloadProgram(lab.IPv4, flagSYN|flagACK, flagSYN)), "ldx 4*([0]&0xf)") {
		t.Error("listing lacks the IHL load")
	}
}
