package rawpeer

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/labtest"
)

var (
	serverMAC = labtest.MACB
	clientMAC = labtest.MACA
	server4   = netip.MustParseAddrPort("10.34.1.2:7000")
	client4   = netip.MustParseAddrPort("10.34.1.1:40000")
	server6   = netip.MustParseAddrPort("[fd34:1::2]:7000")
	client6   = netip.MustParseAddrPort("[fd34:1::1]:40000")
	testData  = []byte("hello from the SYN-ACK\n")
	cookie8   = []byte{0xc0, 0x01, 0xc0, 0x0c, 0x1e, 0x00, 0x00, 0x01}
)

// checksumOK verifies the TCP checksum of an IPv4 or IPv6 packet from
// scratch (RFC 793 / RFC 8200 pseudo-header), independently of gopacket.
func checksumOK(t *testing.T, ip []byte) bool {
	t.Helper()
	var pseudo, seg []byte
	switch ip[0] >> 4 {
	case 4:
		ihl := int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		seg = ip[ihl:total]
		pseudo = append(append(append([]byte{}, ip[12:20]...), 0, 6), byte(len(seg)>>8), byte(len(seg)))
	case 6:
		seg = ip[40 : 40+int(binary.BigEndian.Uint16(ip[4:]))]
		pseudo = append(append([]byte{}, ip[8:40]...), 0, 0, byte(len(seg)>>8), byte(len(seg)), 0, 0, 0, 6)
	default:
		t.Fatalf("not an IP packet: % x", ip[:1])
	}
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(pseudo)
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func TestSynAckFrame(t *testing.T) {
	for _, tc := range []struct {
		name         string
		src, dst     netip.AddrPort
		experimental bool
		wantOpts     []layers.TCPOptionKind
	}{
		{"ipv4", server4, client4, false, []layers.TCPOptionKind{2, 1, 1, 34}},
		{"ipv6", server6, client6, false, []layers.TCPOptionKind{2, 1, 1, 34}},
		{"ipv4-experimental", server4, client4, true, []layers.TCPOptionKind{2, 254}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := segment{
				srcMAC: serverMAC, dstMAC: clientMAC, src: tc.src, dst: tc.dst,
				flags: capture.FlagSYN | capture.FlagACK, seq: 1000, ack: 5001, mss: 1460,
				fastOpen: &capture.FastOpenOption{Experimental: tc.experimental, Cookie: cookie8},
				payload:  testData,
			}
			frame, err := s.frame()
			if err != nil {
				t.Fatal(err)
			}
			pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
			if el := pkt.ErrorLayer(); el != nil {
				t.Fatalf("decode: %v", el.Error())
			}
			eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if !bytes.Equal(eth.SrcMAC, serverMAC) || !bytes.Equal(eth.DstMAC, clientMAC) {
				t.Errorf("MACs %s > %s", eth.SrcMAC, eth.DstMAC)
			}
			tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp == nil {
				t.Fatal("no TCP layer")
			}
			if !tcp.SYN || !tcp.ACK || tcp.FIN || tcp.RST || tcp.PSH {
				t.Errorf("flags SYN=%t ACK=%t FIN=%t RST=%t PSH=%t, want SYN|ACK", tcp.SYN, tcp.ACK, tcp.FIN, tcp.RST, tcp.PSH)
			}
			if tcp.Seq != 1000 || tcp.Ack != 5001 || tcp.Window != window {
				t.Errorf("seq %d ack %d win %d", tcp.Seq, tcp.Ack, tcp.Window)
			}
			if !bytes.Equal(tcp.Payload, testData) {
				t.Errorf("payload %q, want %q", tcp.Payload, testData)
			}
			var kinds []layers.TCPOptionKind
			for _, o := range tcp.Options {
				kinds = append(kinds, o.OptionType)
			}
			if len(kinds) != len(tc.wantOpts) {
				t.Fatalf("options %v, want kinds %v", tcp.Options, tc.wantOpts)
			}
			for i := range kinds {
				if kinds[i] != tc.wantOpts[i] {
					t.Fatalf("options %v, want kinds %v", tcp.Options, tc.wantOpts)
				}
			}
			if mss := binary.BigEndian.Uint16(tcp.Options[0].OptionData); mss != 1460 {
				t.Errorf("MSS %d", mss)
			}
			if len(tcp.Contents)%4 != 0 || int(tcp.DataOffset)*4 != len(tcp.Contents) {
				t.Errorf("TCP header %d bytes, data offset %d", len(tcp.Contents), tcp.DataOffset)
			}
			ip := pkt.NetworkLayer()
			if !checksumOK(t, append(append([]byte{}, ip.LayerContents()...), ip.LayerPayload()...)) {
				t.Errorf("TCP checksum %#04x is wrong", tcp.Checksum)
			}
			if v4, ok := ip.(*layers.IPv4); ok {
				// gopacket verifies nothing on decode; recompute the header sum.
				h := append([]byte{}, v4.Contents...)
				var sum uint32
				for i := 0; i < len(h); i += 2 {
					sum += uint32(h[i])<<8 | uint32(h[i+1])
				}
				for sum>>16 != 0 {
					sum = sum&0xffff + sum>>16
				}
				if sum != 0xffff {
					t.Errorf("IPv4 header checksum %#04x is wrong", v4.Checksum)
				}
				if int(v4.Length) != len(v4.Contents)+len(v4.Payload) || v4.TTL != 64 || v4.Protocol != layers.IPProtocolTCP {
					t.Errorf("IPv4 header: length %d ttl %d proto %d", v4.Length, v4.TTL, v4.Protocol)
				}
			}

			// The lab's own decoder sees the same thing, cookie included.
			p, ok, err := capture.Decode(frame, gopacket.CaptureInfo{})
			if !ok || err != nil {
				t.Fatalf("capture.Decode: ok=%t err=%v", ok, err)
			}
			if p.Src != tc.src || p.Dst != tc.dst || !p.IsSYNACK() || p.Length != len(testData) {
				t.Errorf("capture.Decode: %s", p)
			}
			if p.FastOpen == nil || p.FastOpen.Experimental != tc.experimental || !bytes.Equal(p.FastOpen.Cookie, cookie8) || p.FastOpenErr != nil {
				t.Errorf("TFO option %v (err %v), want cookie %x experimental %t", p.FastOpen, p.FastOpenErr, cookie8, tc.experimental)
			}
		})
	}
}

func TestDataFINFrame(t *testing.T) {
	s := segment{srcMAC: serverMAC, dstMAC: clientMAC, src: server6, dst: client6,
		flags: capture.FlagACK | capture.FlagPSH | capture.FlagFIN, seq: 1, ack: 2, payload: []byte("x")}
	frame, err := s.frame()
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := capture.Decode(frame, gopacket.CaptureInfo{})
	if !ok || err != nil {
		t.Fatalf("decode: ok=%t err=%v", ok, err)
	}
	if p.Flags != capture.FlagACK|capture.FlagPSH|capture.FlagFIN || len(p.Options) != 0 || p.FastOpen != nil || string(p.Payload) != "x" {
		t.Errorf("got %s", p)
	}
	if !checksumOK(t, frame[14:]) {
		t.Error("TCP checksum is wrong")
	}
	if _, err := (segment{src: server4, dst: client6}).frame(); err == nil {
		t.Error("mixed families: no error")
	}
}

func TestReceiveFilter(t *testing.T) {
	raw, err := receiveFilter(7000)
	if err != nil {
		t.Fatal(err)
	}
	vm := labtest.BPF(t, raw)
	tcpFrame := func(src, dst netip.AddrPort, ipOptions bool) []byte {
		t.Helper()
		f, err := segment{srcMAC: clientMAC, dstMAC: serverMAC, src: src, dst: dst, flags: capture.FlagSYN}.frame()
		if err != nil {
			t.Fatal(err)
		}
		if ipOptions { // rebuild with a 24-byte IPv4 header: the port moves
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
				SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice(),
				Options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}}
			tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), SYN: true}
			_ = tcp.SetNetworkLayerForChecksum(ip)
			f = labtest.Serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: serverMAC, EthernetType: layers.EthernetTypeIPv4}, ip, tcp)
			if f[14]&0xf != 6 {
				t.Fatalf("IHL %d, want 6", f[14]&0xf)
			}
		}
		return f
	}
	udp := func() []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: client4.Addr().AsSlice(), DstIP: server4.Addr().AsSlice()}
		u := &layers.UDP{SrcPort: 7000, DstPort: 7000}
		_ = u.SetNetworkLayerForChecksum(ip)
		return labtest.Serialize(t, &layers.Ethernet{SrcMAC: clientMAC, DstMAC: serverMAC, EthernetType: layers.EthernetTypeIPv4}, ip, u)
	}
	other4 := netip.AddrPortFrom(server4.Addr(), 7001)
	other6 := netip.AddrPortFrom(server6.Addr(), 7001)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"ipv4 to port", tcpFrame(client4, server4, false), true},
		{"ipv4 with options to port", tcpFrame(client4, server4, true), true},
		{"ipv4 other port", tcpFrame(client4, other4, false), false},
		{"ipv4 with options other port", tcpFrame(client4, other4, true), false},
		{"ipv4 from port", tcpFrame(server4, client4, false), false},
		{"ipv6 to port", tcpFrame(client6, server6, false), true},
		{"ipv6 other port", tcpFrame(client6, other6, false), false},
		{"ipv6 from port", tcpFrame(server6, client6, false), false},
		{"udp to port", udp(), false},
		{"arp", append(append(append([]byte{}, serverMAC...), clientMAC...), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1), false},
	} {
		labtest.Accepts(t, vm, tc.name, tc.frame, tc.want)
	}
}
