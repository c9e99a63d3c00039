package capture

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tfolab/tfolab/lab/labtest"
)

var (
	// 07:03:45.442747 local time, so String's clock reads as in the example.
	stamp  = time.Date(2025, 3, 4, 7, 3, 45, 442747000, time.Local)
	cookie = []byte{0x2c, 0xc5, 0x08, 0x6d, 0xe4, 0x02, 0xd8, 0x6a}
)

func ci(frame []byte) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: stamp, CaptureLength: len(frame), Length: len(frame)}
}

// synWithCookie is the SYN from the package example: MSS, SACK-permitted,
// timestamps, window scale and a TFO cookie, carrying 19 bytes of data.
func synWithCookie() *layers.TCP {
	return &layers.TCP{
		Seq: 3248579141, SYN: true, Window: 29200,
		Options: []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionData: []byte{0x05, 0xb4}},
			{OptionType: layers.TCPOptionKindSACKPermitted},
			{OptionType: layers.TCPOptionKindTimestamps, OptionData: make([]byte, 8)},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindWindowScale, OptionData: []byte{7}},
			{OptionType: OptionKindFastOpen, OptionData: cookie},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindNop},
		},
	}
}

var payload19 = []byte("GET / HTTP/1.0\r\n\r\n!")

func TestDecodeSYNWithCookie(t *testing.T) {
	const optText = "options [mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 7,tfo cookie 2cc5086de402d86a,nop,nop], length 19"
	for _, tt := range []struct {
		name     string
		src, dst netip.AddrPort
		want     string
	}{
		{"IPv4", netip.MustParseAddrPort("10.34.1.2:40000"), netip.MustParseAddrPort("10.34.2.2:7000"),
			"07:03:45.442747 10.34.1.2.40000 > 10.34.2.2.7000: Flags [S], seq 3248579141:3248579160, win 29200, " + optText},
		{"IPv6", netip.MustParseAddrPort("[fd34:1::2]:40000"), netip.MustParseAddrPort("[fd34:2::2]:7000"),
			"07:03:45.442747 fd34:1::2.40000 > fd34:2::2.7000: Flags [S], seq 3248579141:3248579160, win 29200, " + optText},
	} {
		t.Run(tt.name, func(t *testing.T) {
			frame := labtest.TCPFrame(t, tt.src, tt.dst, synWithCookie(), payload19)
			p, ok, err := Decode(frame, ci(frame))
			if err != nil || !ok {
				t.Fatalf("Decode = ok %v, err %v", ok, err)
			}
			if p.Src != tt.src || p.Dst != tt.dst {
				t.Errorf("addresses %v > %v, want %v > %v", p.Src, p.Dst, tt.src, tt.dst)
			}
			if p.Flags != FlagSYN || !p.IsSYN() || p.IsSYNACK() || p.IsACK() || p.IsFIN() || p.IsRST() {
				t.Errorf("flags %v: IsSYN %v IsSYNACK %v", p.Flags, p.IsSYN(), p.IsSYNACK())
			}
			if p.Seq != 3248579141 || p.Ack != 0 || p.Window != 29200 {
				t.Errorf("seq %d ack %d win %d", p.Seq, p.Ack, p.Window)
			}
			if !bytes.Equal(p.Payload, payload19) || p.Length != 19 || !p.HasPayload() {
				t.Errorf("payload %q (length %d)", p.Payload, p.Length)
			}
			if p.FastOpen == nil || p.FastOpen.Experimental || !bytes.Equal(p.FastOpen.Cookie, cookie) || p.FastOpenErr != nil {
				t.Errorf("FastOpen = %+v, err %v", p.FastOpen, p.FastOpenErr)
			}
			if len(p.Options) != 8 || p.Options[5].OptionType != OptionKindFastOpen || p.Options[5].OptionLength != 10 {
				t.Errorf("options %v", p.Options)
			}
			if !p.Time.Equal(stamp) {
				t.Errorf("time %v, want %v", p.Time, stamp)
			}
			if !bytes.Equal(p.Frame, frame) {
				t.Error("Frame differs from the input")
			}
			if got := p.String(); got != tt.want {
				t.Errorf("String()\n got %q\nwant %q", got, tt.want)
			}
			// Decode copies: scribbling on the input must not show.
			for i := range frame {
				frame[i] = 0
			}
			if !bytes.Equal(p.Payload, payload19) || p.Frame[12] == 0 {
				t.Error("packet aliases the caller's frame")
			}
		})
	}
}

func TestDecodeStrings(t *testing.T) {
	cli := netip.MustParseAddrPort("10.34.251.1:40000")
	srv := netip.MustParseAddrPort("10.34.251.2:7000")
	ts := []layers.TCPOption{
		{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindTimestamps, OptionData: []byte{0, 0, 0, 5, 0, 0, 0, 9}},
	}
	for _, tt := range []struct {
		name     string
		src, dst netip.AddrPort
		tcp      *layers.TCP
		payload  []byte
		want     string
	}{
		{"syn-ack with cookie", srv, cli, &layers.TCP{Seq: 100, Ack: 3248579161, SYN: true, ACK: true, Window: 65160,
			Options: []layers.TCPOption{
				{OptionType: layers.TCPOptionKindMSS, OptionData: []byte{0x05, 0xb4}},
				{OptionType: OptionKindFastOpen, OptionData: cookie[:4]},
				{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			}}, nil,
			"Flags [S.], seq 100, ack 3248579161, win 65160, options [mss 1460,tfo cookie 2cc5086d,nop,nop], length 0"},
		{"cookie request, experimental", cli, srv, &layers.TCP{Seq: 7, SYN: true, Window: 64240,
			Options: []layers.TCPOption{{OptionType: OptionKindExperimental, OptionData: []byte{0xf9, 0x89}}}}, nil,
			"Flags [S], seq 7, win 64240, options [exp-tfo cookiereq], length 0"},
		{"other experiment", cli, srv, &layers.TCP{Seq: 7, SYN: true, Window: 64240,
			Options: []layers.TCPOption{{OptionType: OptionKindExperimental, OptionData: []byte{0x12, 0x34}}}}, nil,
			"Flags [S], seq 7, win 64240, options [exp-1234], length 0"},
		{"pure ack", cli, srv, &layers.TCP{Seq: 1, Ack: 101, ACK: true, Window: 502, Options: ts}, nil,
			"Flags [.], ack 101, win 502, options [nop,nop,TS val 5 ecr 9], length 0"},
		{"push", cli, srv, &layers.TCP{Seq: 1, Ack: 101, ACK: true, PSH: true, Window: 502}, []byte("hello"),
			"Flags [P.], seq 1:6, ack 101, win 502, length 5"},
		{"fin", cli, srv, &layers.TCP{Seq: 6, Ack: 101, ACK: true, FIN: true, Window: 502}, nil,
			"Flags [F.], seq 6, ack 101, win 502, length 0"},
		{"rst", srv, cli, &layers.TCP{Seq: 9, RST: true}, nil, "Flags [R], seq 9, win 0, length 0"},
		{"rst-ack", srv, cli, &layers.TCP{Seq: 9, Ack: 3, RST: true, ACK: true}, nil, "Flags [R.], seq 9, ack 3, win 0, length 0"},
		{"urgent, no flags of note", cli, srv, &layers.TCP{Seq: 1, URG: true, Urgent: 3}, []byte("abc"),
			"Flags [U], seq 1:4, win 0, urg 3, length 3"},
		{"no flags", cli, srv, &layers.TCP{Seq: 1}, nil, "Flags [none], win 0, length 0"},
		{"sack and unknown", cli, srv, &layers.TCP{Seq: 1, Ack: 2, ACK: true, Options: []layers.TCPOption{
			{OptionType: layers.TCPOptionKindSACK, OptionData: []byte{0, 0, 0, 10, 0, 0, 0, 20}},
			{OptionType: 99, OptionData: []byte{0xab}},
			{OptionType: layers.TCPOptionKindEndList},
		}}, nil, "Flags [.], ack 2, win 0, options [sack 1 {10:20},unknown-99 0xab,eol], length 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			frame := labtest.TCPFrame(t, tt.src, tt.dst, tt.tcp, tt.payload)
			p, ok, err := Decode(frame, ci(frame))
			if err != nil || !ok {
				t.Fatalf("Decode = ok %v, err %v", ok, err)
			}
			want := "07:03:45.442747 " + hostPort(tt.src) + " > " + hostPort(tt.dst) + ": " + tt.want
			if got := p.String(); got != want {
				t.Errorf("String()\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestDecodeMalformedFastOpen(t *testing.T) {
	tcp := &layers.TCP{Seq: 1, SYN: true, Options: []layers.TCPOption{
		{OptionType: OptionKindFastOpen, OptionData: []byte{1, 2, 3}},
	}}
	frame := labtest.TCPFrame(t, netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), tcp, nil)
	p, ok, err := Decode(frame, ci(frame))
	if err != nil || !ok {
		t.Fatalf("Decode = ok %v, err %v; a bad TFO option must not hide the segment", ok, err)
	}
	if p.FastOpen != nil || !errors.Is(p.FastOpenErr, ErrMalformedFastOpen) {
		t.Errorf("FastOpen = %+v, FastOpenErr = %v", p.FastOpen, p.FastOpenErr)
	}
	if s := p.String(); !strings.Contains(s, "options [tfo (invalid),eol]") {
		t.Errorf("String() = %q", s)
	}
}

func TestDecodeNonTCP(t *testing.T) {
	udp := &layers.UDP{SrcPort: 53, DstPort: 5353}
	ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	if err := udp.SetNetworkLayerForChecksum(ip4); err != nil {
		t.Fatal(err)
	}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6,
		ProtAddressSize: 4, Operation: layers.ARPRequest, SourceHwAddress: labtest.MACA, SourceProtAddress: []byte{10, 0, 0, 1},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 0, 0, 2}}
	icmp6 := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: net.ParseIP("fe80::1"), DstIP: net.ParseIP("ff02::1")}
	frames := map[string][]byte{
		"udp": labtest.Serialize(t, &layers.Ethernet{SrcMAC: labtest.MACA, DstMAC: labtest.MACB, EthernetType: layers.EthernetTypeIPv4},
			ip4, udp, gopacket.Payload("dns")),
		"arp": labtest.Serialize(t, &layers.Ethernet{SrcMAC: labtest.MACA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}, arp),
		"icmpv6": labtest.Serialize(t, &layers.Ethernet{SrcMAC: labtest.MACA, DstMAC: labtest.MACB, EthernetType: layers.EthernetTypeIPv6},
			icmp6, gopacket.Payload{0x80, 0, 0, 0}),
		"empty": {},
	}
	for name, frame := range frames {
		p, ok, err := Decode(frame, ci(frame))
		if ok || err != nil {
			t.Errorf("%s: Decode = %v, ok %v, err %v; want ok=false, nil error", name, p, ok, err)
		}
	}
}

func TestDecodeTruncated(t *testing.T) {
	src, dst := netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2")
	frame := labtest.TCPFrame(t, src, dst, synWithCookie(), payload19)

	// The snap length cut the payload: what is there decodes, Length tells the rest.
	cut := frame[:len(frame)-5]
	c := gopacket.CaptureInfo{Timestamp: stamp, CaptureLength: len(cut), Length: len(frame)}
	p, ok, err := Decode(cut, c)
	if err != nil || !ok {
		t.Fatalf("payload cut: Decode = ok %v, err %v", ok, err)
	}
	if len(p.Payload) != 14 || p.Length != 19 || !strings.HasSuffix(p.String(), "seq 3248579141:3248579160, win 29200, options [mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 7,tfo cookie 2cc5086de402d86a,nop,nop], length 19") {
		t.Errorf("payload cut: %d payload bytes, Length %d, %q", len(p.Payload), p.Length, p.String())
	}

	// Cut inside the TCP header: the IP header promised TCP, so that is an error.
	cut = frame[:14+20+10]
	if _, ok, err := Decode(cut, ci(cut)); ok || err == nil {
		t.Errorf("header cut: Decode = ok %v, err %v; want an error", ok, err)
	}
}

func TestDecodeIgnoresEthernetPadding(t *testing.T) {
	tcp := &layers.TCP{Seq: 1, Ack: 2, ACK: true, Window: 10}
	frame := labtest.TCPFrame(t, netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), tcp, nil)
	// 54 bytes of headers; gopacket pads the frame to the 60-byte Ethernet
	// minimum, as a NIC does on the wire.
	if len(frame) != 60 {
		t.Fatalf("frame is %d bytes, want 60", len(frame))
	}
	p, ok, err := Decode(frame, ci(frame))
	if err != nil || !ok {
		t.Fatalf("Decode = ok %v, err %v", ok, err)
	}
	if p.Length != 0 || len(p.Payload) != 0 || !p.IsPureACK() {
		t.Errorf("padding taken as payload: %q, Length %d", p.Payload, p.Length)
	}
}

func TestTCPFlagsString(t *testing.T) {
	for f, want := range map[TCPFlags]string{
		FlagSYN: "S", FlagSYN | FlagACK: "S.", FlagACK: ".", FlagPSH | FlagACK: "P.", FlagFIN | FlagACK: "F.",
		FlagRST: "R", FlagRST | FlagACK: "R.", FlagFIN | FlagPSH | FlagACK: "FP.", FlagSYN | FlagECE | FlagCWR: "SEW", 0: "none",
	} {
		if got := f.String(); got != want {
			t.Errorf("TCPFlags(%#x).String() = %q, want %q", uint16(f), got, want)
		}
	}
}

// TestDecodeIPv6ExtensionHeader puts a destination-options header between
// IPv6 and TCP, and cuts the frame, to check where TCP is found and how the
// announced length is worked out.
func TestDecodeIPv6ExtensionHeader(t *testing.T) {
	tcp := synWithCookie()
	tcp.SrcPort, tcp.DstPort = 40000, 7000
	buf := gopacket.NewSerializeBuffer() // checksum left 0: nobody checks it
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, tcp, gopacket.Payload(payload19)); err != nil {
		t.Fatal(err)
	}
	seg := buf.Bytes()
	destOpts := []byte{byte(layers.IPProtocolTCP), 0, 1, 4, 0, 0, 0, 0} // 8 bytes: PadN
	frame := labtest.Serialize(t,
		&layers.Ethernet{SrcMAC: labtest.MACA, DstMAC: labtest.MACB, EthernetType: layers.EthernetTypeIPv6},
		&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Destination,
			SrcIP: net.ParseIP("fd34:1::2"), DstIP: net.ParseIP("fd34:2::2")},
		gopacket.Payload(append(destOpts, seg...)))
	want := "07:03:45.442747 fd34:1::2.40000 > fd34:2::2.7000: Flags [S], seq 3248579141:3248579160, win 29200, " +
		"options [mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 7,tfo cookie 2cc5086de402d86a,nop,nop], length 19"
	for _, cut := range []int{0, 7} {
		f := frame[:len(frame)-cut]
		p, ok, err := Decode(f, ci(f))
		if err != nil || !ok {
			t.Fatalf("cut %d: Decode = ok %v, err %v", cut, ok, err)
		}
		if got := p.String(); got != want || len(p.Payload) != 19-cut || p.FastOpen == nil {
			t.Errorf("cut %d: %d payload bytes, FastOpen %v\n got %q\nwant %q", cut, len(p.Payload), p.FastOpen, got, want)
		}
	}
}

// Frames written to a pcap file, and read back by tcpdump.

// sampleFrames is a handshake-like mix of IPv4 and IPv6 frames plus an ARP
// frame, each a millisecond apart.
func sampleFrames(t *testing.T) []frame {
	t.Helper()
	cli4, srv4 := netip.MustParseAddrPort("10.34.1.2:40000"), netip.MustParseAddrPort("10.34.2.2:7000")
	cli6, srv6 := netip.MustParseAddrPort("[fd34:1::2]:40000"), netip.MustParseAddrPort("[fd34:2::2]:7000")
	raw := [][]byte{
		labtest.TCPFrame(t, cli4, srv4, synWithCookie(), payload19),
		labtest.TCPFrame(t, srv4, cli4, &layers.TCP{Seq: 100, Ack: 3248579161, SYN: true, ACK: true, Window: 65160,
			Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionData: []byte{0x05, 0xb4}}}}, nil),
		labtest.TCPFrame(t, cli6, srv6, synWithCookie(), payload19),
		labtest.TCPFrame(t, cli6, srv6, &layers.TCP{Seq: 3248579161, Ack: 101, ACK: true, PSH: true, Window: 502}, []byte("hello")),
		labtest.Serialize(t, &layers.Ethernet{SrcMAC: labtest.MACA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
			&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: layers.ARPRequest, SourceHwAddress: labtest.MACA, SourceProtAddress: []byte{10, 34, 1, 2},
				DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 34, 1, 1}}),
	}
	frames := make([]frame, len(raw))
	for i, r := range raw {
		frames[i] = frame{data: r, ci: gopacket.CaptureInfo{
			Timestamp: stamp.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(r), Length: len(r)}}
	}
	return frames
}

func TestWritePcapRoundTrip(t *testing.T) {
	frames := sampleFrames(t)
	c := &Capture{ifname: "test0", snapLen: DefaultSnapLen, frames: frames}
	path := filepath.Join(t.TempDir(), "round.pcap")
	if err := c.WritePcap(path); err != nil {
		t.Fatal(err)
	}
	r := labtest.PcapReader(t, path)
	if r.LinkType() != layers.LinkTypeEthernet || r.Snaplen() != DefaultSnapLen {
		t.Errorf("link type %v, snaplen %d", r.LinkType(), r.Snaplen())
	}
	for i := 0; ; i++ {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			if i != len(frames) {
				t.Errorf("read %d frames, wrote %d", i, len(frames))
			}
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if i >= len(frames) {
			t.Fatalf("extra frame %d", i)
		}
		if !bytes.Equal(data, frames[i].data) {
			t.Errorf("frame %d differs", i)
		}
		// Classic pcap keeps microseconds.
		if want := frames[i].ci.Timestamp.Truncate(time.Microsecond); !ci.Timestamp.Equal(want) {
			t.Errorf("frame %d at %v, want %v", i, ci.Timestamp, want)
		}
		if ci.Length != len(frames[i].data) {
			t.Errorf("frame %d original length %d", i, ci.Length)
		}
	}
}

func TestWritePcapBadPath(t *testing.T) {
	c := &Capture{ifname: "test0", snapLen: DefaultSnapLen}
	if err := c.WritePcap(filepath.Join(t.TempDir(), "missing", "x.pcap")); err == nil {
		t.Error("WritePcap into a missing directory succeeded")
	}
}

// TestStringMatchesTcpdump feeds the sample frames through the real tcpdump
// and compares its lines with Packet.String, after removing the differences
// String documents: tcpdump's "IP "/"IP6 " prefix and its double space in
// "tfo  cookie".
func TestStringMatchesTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump not installed")
	}
	frames := sampleFrames(t)
	path := filepath.Join(t.TempDir(), "sample.pcap")
	if err := writePcap(path, DefaultSnapLen, frames); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tcpdump, "-n", "-S", "-r", path, "tcp").Output()
	if err != nil {
		t.Fatalf("tcpdump -r: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var want []string
	for _, fr := range frames {
		if p, ok, err := Decode(fr.data, fr.ci); ok && err == nil {
			want = append(want, p.String())
		}
	}
	if len(lines) != len(want) {
		t.Fatalf("tcpdump printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, l := range lines {
		l = strings.Replace(l, " IP ", " ", 1)
		l = strings.Replace(l, " IP6 ", " ", 1)
		l = strings.ReplaceAll(l, "tfo  cookie", "tfo cookie")
		if l != want[i] {
			t.Errorf("line %d\ntcpdump %q\nString  %q", i, l, want[i])
		}
	}
}
