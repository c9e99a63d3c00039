package capture

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tfolab/tfolab/lab/labtest"
)

// TestDefaultFilter runs the default program in x/net/bpf's VM, which
// implements the same classic BPF the kernel runs.
func TestDefaultFilter(t *testing.T) {
	raw, err := DefaultFilter(DefaultSnapLen)
	if err != nil {
		t.Fatal(err)
	}
	vm := labtest.BPF(t, raw)

	v4 := func(proto layers.IPProtocol, fragOffset uint16) *layers.IPv4 {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, FragOffset: fragOffset,
			SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	}
	v6 := func(next layers.IPProtocol) *layers.IPv6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next,
			SrcIP: net.ParseIP("fd34::1"), DstIP: net.ParseIP("fd34::2")}
	}
	eth := func(et layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: labtest.MACA, DstMAC: labtest.MACB, EthernetType: et}
	}
	tcpHdr := gopacket.Payload(make([]byte, 20))
	fragHdr := func(next byte) gopacket.Payload {
		return gopacket.Payload(append([]byte{next, 0, 0, 0, 0, 0, 0, 1}, tcpHdr...))
	}

	for _, tt := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"tcp4", labtest.TCPFrame(t, netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), &layers.TCP{SYN: true}, nil), true},
		{"tcp6", labtest.TCPFrame(t, netip.MustParseAddrPort("[fd34::1]:1"), netip.MustParseAddrPort("[fd34::2]:2"), &layers.TCP{SYN: true}, nil), true},
		{"tcp4 non-first fragment", labtest.Serialize(t, eth(layers.EthernetTypeIPv4), v4(layers.IPProtocolTCP, 100), tcpHdr), false},
		{"tcp6 in fragment header", labtest.Serialize(t, eth(layers.EthernetTypeIPv6), v6(layers.IPProtocolIPv6Fragment), fragHdr(6)), true},
		{"udp6 in fragment header", labtest.Serialize(t, eth(layers.EthernetTypeIPv6), v6(layers.IPProtocolIPv6Fragment), fragHdr(17)), false},
		{"udp4", labtest.Serialize(t, eth(layers.EthernetTypeIPv4), v4(layers.IPProtocolUDP, 0), gopacket.Payload(make([]byte, 8))), false},
		{"icmp6", labtest.Serialize(t, eth(layers.EthernetTypeIPv6), v6(layers.IPProtocolICMPv6), gopacket.Payload(make([]byte, 8))), false},
		{"arp", labtest.Serialize(t, eth(layers.EthernetTypeARP), gopacket.Payload(make([]byte, 28))), false},
		{"runt", []byte{1, 2, 3}, false},
	} {
		n := labtest.Accepts(t, vm, tt.name, tt.frame, tt.want)
		if n > 0 && n != DefaultSnapLen { // the kernel caps this at the frame length
			t.Errorf("%s: returns %d, want the snap length", tt.name, n)
		}
	}
}

func TestDefaultFilterSnapLen(t *testing.T) {
	raw, err := DefaultFilter(40)
	if err != nil {
		t.Fatal(err)
	}
	vm := labtest.BPF(t, raw)
	frame := labtest.TCPFrame(t, netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), &layers.TCP{SYN: true}, payload19)
	if n, err := vm.Run(frame); err != nil || n != 40 {
		t.Errorf("Run = %d, %v; want 40", n, err)
	}
}
