package labtest

import (
	"net/netip"
	"os"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/net/bpf"
)

// Serialize builds a packet from ls, fixing lengths and checksums, and
// returns a copy of its bytes.
func Serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// TCPFrame builds an Ethernet frame (MACA to MACB) of IPv4 or IPv6 (TTL
// 64) and tcp, from src to dst (it sets tcp's ports), carrying payload.
func TCPFrame(tb testing.TB, src, dst netip.AddrPort, tcp *layers.TCP, payload []byte) []byte {
	tb.Helper()
	tcp.SrcPort = layers.TCPPort(src.Port())
	tcp.DstPort = layers.TCPPort(dst.Port())
	eth := &layers.Ethernet{SrcMAC: MACA, DstMAC: MACB}
	var ip gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	if src.Addr().Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		ip, ipl = v4, v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		ip, ipl = v6, v6
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	return Serialize(tb, eth, ipl, tcp, gopacket.Payload(payload))
}

// BPF loads the classic BPF program raw into x/net/bpf's VM, which runs
// the same instructions the kernel does.
func BPF(tb testing.TB, raw []bpf.RawInstruction) *bpf.VM {
	tb.Helper()
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		tb.Fatal("the filter does not disassemble")
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		tb.Fatalf("NewVM: %v", err)
	}
	return vm
}

// Accepts runs frame through vm and returns what the program returned,
// failing tb (the check called name) when the VM fails, or when it
// accepts the frame (returns more than 0) and want is false, or the
// other way round.
func Accepts(tb testing.TB, vm *bpf.VM, name string, frame []byte, want bool) int {
	tb.Helper()
	n, err := vm.Run(frame)
	if err != nil {
		tb.Errorf("%s: VM: %v", name, err)
		return 0
	}
	if got := n > 0; got != want {
		tb.Errorf("%s: accepted = %v (returned %d), want %v", name, got, n, want)
	}
	return n
}

// PcapReader opens the pcap file at path, closed at cleanup.
func PcapReader(tb testing.TB, path string) *pcapgo.Reader {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	r, err := pcapgo.NewReader(f)
	if err != nil {
		tb.Fatalf("pcapgo.NewReader: %v", err)
	}
	return r
}
