package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// TCPFlags is the set of TCP header flags, laid out as on the wire (the low
// 9 bits of the data-offset/flags word).
type TCPFlags uint16

// The TCP flags.
const (
	FlagFIN TCPFlags = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
	FlagECE
	FlagCWR
	FlagAE // accurate ECN, formerly NS
)

// flagLetters follows tcpdump's tcp_flag_values table, in its order.
var flagLetters = []struct {
	f TCPFlags
	s string
}{
	{FlagFIN, "F"}, {FlagSYN, "S"}, {FlagRST, "R"}, {FlagPSH, "P"}, {FlagACK, "."},
	{FlagURG, "U"}, {FlagECE, "E"}, {FlagCWR, "W"}, {FlagAE, "e"},
}

// String renders the flags as tcpdump does between "Flags [" and "]":
// "S", "S.", ".", "P.", "F.", "R", "R."; "none" when no flag is set.
func (f TCPFlags) String() string {
	var b strings.Builder
	for _, l := range flagLetters {
		if f&l.f != 0 {
			b.WriteString(l.s)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// Has reports whether every flag in want is set.
func (f TCPFlags) Has(want TCPFlags) bool { return f&want == want }

// Packet is one captured TCP segment, decoded.
type Packet struct {
	// Time is the capture timestamp (see Capture for where it comes from).
	Time time.Time
	// Link is the label from Options.Link; empty for Decode.
	Link     string
	Src, Dst netip.AddrPort
	Flags    TCPFlags
	Seq, Ack uint32
	Window   uint16
	Urgent   uint16
	// Payload is the TCP payload that was captured, copied out of the frame.
	Payload []byte
	// Length is the TCP payload length the IP header announces; it exceeds
	// len(Payload) only when the snap length cut the frame.
	Length int
	// Options are the TCP options as gopacket decoded them, with their data
	// copied.
	Options []layers.TCPOption
	// FastOpen is the TFO option (kind 34, or 254 with magic 0xF989); nil
	// when the segment carries none or it is malformed.
	FastOpen *FastOpenOption
	// FastOpenErr is set, wrapping ErrMalformedFastOpen, when a TFO option is
	// present but malformed. The segment itself still decoded fine.
	FastOpenErr error
	// Frame is the raw Ethernet frame as captured.
	Frame []byte
}

// IsSYN reports an initial SYN (SYN without ACK).
func (p Packet) IsSYN() bool { return p.Flags&(FlagSYN|FlagACK) == FlagSYN }

// IsSYNACK reports a SYN-ACK.
func (p Packet) IsSYNACK() bool { return p.Flags.Has(FlagSYN | FlagACK) }

// IsFIN reports a segment with FIN set.
func (p Packet) IsFIN() bool { return p.Flags.Has(FlagFIN) }

// IsRST reports a segment with RST set.
func (p Packet) IsRST() bool { return p.Flags.Has(FlagRST) }

// IsACK reports a segment with ACK set.
func (p Packet) IsACK() bool { return p.Flags.Has(FlagACK) }

// IsPureACK reports an ACK that carries nothing else: no data, no SYN, FIN or RST.
func (p Packet) IsPureACK() bool {
	return p.IsACK() && p.Length == 0 && p.Flags&(FlagSYN|FlagFIN|FlagRST) == 0
}

// HasPayload reports whether the segment carries data.
func (p Packet) HasPayload() bool { return p.Length > 0 }

// Decode turns an Ethernet frame into a Packet. ok is false, with a nil
// error, for frames that do not carry TCP over IPv4 or IPv6 (ARP, UDP,
// non-first fragments). The error is non-nil only when an IP header announces
// TCP but the TCP header cannot be decoded (for example cut by the snap
// length). A malformed TFO option is not an error here: the Packet reports it
// in FastOpenErr. The frame is copied, so the caller may reuse it.
func Decode(frame []byte, ci gopacket.CaptureInfo) (Packet, bool, error) {
	return decode(bytes.Clone(frame), ci, "")
}

// decode is Decode without the copy: frame must not change afterwards,
// because Packet.Frame keeps it.
func decode(frame []byte, ci gopacket.CaptureInfo, link string) (Packet, bool, error) {
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true})
	// gopacket adds a TCP layer whenever the layer below announces TCP, even
	// one it failed to fill. Take the layer below (IPv4, IPv6 or an IPv6
	// extension header) and decode TCP from its payload here, so that a
	// header cut short is an error and failures in application layers
	// gopacket may stack on top are no concern.
	var ip, prev, carrier gopacket.Layer // ip: the innermost IP layer below TCP
	for _, l := range pkt.Layers() {
		switch l.(type) {
		case *layers.IPv4, *layers.IPv6:
			ip = l
		case *layers.TCP:
			carrier = prev
		}
		if carrier != nil {
			break
		}
		prev = l
	}
	if carrier == nil || ip == nil {
		return Packet{}, false, nil
	}
	tcp := &layers.TCP{}
	if err := tcp.DecodeFromBytes(carrier.LayerPayload(), gopacket.NilDecodeFeedback); err != nil {
		return Packet{}, false, fmt.Errorf("decode TCP header in %d-byte frame: %w", len(frame), err)
	}

	p := Packet{
		Time:   ci.Timestamp,
		Link:   link,
		Flags:  tcpFlags(tcp),
		Seq:    tcp.Seq,
		Ack:    tcp.Ack,
		Window: tcp.Window,
		Urgent: tcp.Urgent,
		Frame:  frame,
	}
	var ipHeaderStart, ipLen int // ipLen counts from ipHeaderStart; 0 = unknown
	switch ip := ip.(type) {
	case *layers.IPv4:
		src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
		p.Src = netip.AddrPortFrom(src, uint16(tcp.SrcPort))
		p.Dst = netip.AddrPortFrom(dst, uint16(tcp.DstPort))
		ipHeaderStart, ipLen = offsetIn(frame, ip.Contents), int(ip.Length)
	case *layers.IPv6:
		src, _ := netip.AddrFromSlice(ip.SrcIP.To16())
		dst, _ := netip.AddrFromSlice(ip.DstIP.To16())
		p.Src = netip.AddrPortFrom(src, uint16(tcp.SrcPort))
		p.Dst = netip.AddrPortFrom(dst, uint16(tcp.DstPort))
		if ip.Length != 0 { // 0 means a jumbogram: leave it to the captured length
			ipHeaderStart, ipLen = offsetIn(frame, ip.Contents), 40+int(ip.Length)
		}
	}
	p.Payload = bytes.Clone(tcp.Payload)
	p.Length = len(tcp.Payload)
	// The announced length tells what the snap length cut off. The TCP
	// header's offset comes from slice capacities, valid because NoCopy
	// decoding slices everything out of frame.
	if tcpStart := offsetIn(frame, tcp.Contents); ipLen > 0 && ipHeaderStart >= 0 && tcpStart >= ipHeaderStart {
		if n := ipLen - (tcpStart - ipHeaderStart) - len(tcp.Contents); n > p.Length {
			p.Length = n
		}
	}

	p.Options = make([]layers.TCPOption, len(tcp.Options))
	for i, o := range tcp.Options {
		o.OptionData = bytes.Clone(o.OptionData)
		p.Options[i] = o
	}
	p.FastOpen, p.FastOpenErr = ParseFastOpen(p.Options)
	return p, true, nil
}

// offsetIn returns where sub starts inside frame, or -1 if it is not a
// subslice of it.
func offsetIn(frame, sub []byte) int {
	off := cap(frame) - cap(sub)
	if off < 0 || off > len(frame) {
		return -1
	}
	return off
}

func tcpFlags(t *layers.TCP) TCPFlags {
	var f TCPFlags
	for _, b := range []struct {
		set  bool
		flag TCPFlags
	}{
		{t.FIN, FlagFIN}, {t.SYN, FlagSYN}, {t.RST, FlagRST}, {t.PSH, FlagPSH}, {t.ACK, FlagACK},
		{t.URG, FlagURG}, {t.ECE, FlagECE}, {t.CWR, FlagCWR}, {t.NS, FlagAE},
	} {
		if b.set {
			f |= b.flag
		}
	}
	return f
}

// String renders the packet as one line in the style of `tcpdump -n -S`
// (absolute sequence numbers, no "IP"/"IP6" prefix), in local time, e.g.
//
//	07:03:45.442747 10.34.1.2.40000 > 10.34.2.2.7000: Flags [S], seq 3248579141:3248579160, win 29200, options [mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 7,tfo cookie 2cc5086de402d86a,nop,nop], length 19
func (p Packet) String() string {
	var b strings.Builder
	b.WriteString(p.Time.Format("15:04:05.000000"))
	fmt.Fprintf(&b, " %s > %s: Flags [%s]", hostPort(p.Src), hostPort(p.Dst), p.Flags)
	if p.Length > 0 || p.Flags&(FlagSYN|FlagFIN|FlagRST) != 0 {
		fmt.Fprintf(&b, ", seq %d", p.Seq)
		if p.Length > 0 {
			fmt.Fprintf(&b, ":%d", p.Seq+uint32(p.Length))
		}
	}
	if p.IsACK() {
		fmt.Fprintf(&b, ", ack %d", p.Ack)
	}
	fmt.Fprintf(&b, ", win %d", p.Window)
	if p.Flags.Has(FlagURG) {
		fmt.Fprintf(&b, ", urg %d", p.Urgent)
	}
	if len(p.Options) > 0 {
		b.WriteString(", options [")
		for i, o := range p.Options {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(optionString(o))
		}
		b.WriteByte(']')
	}
	fmt.Fprintf(&b, ", length %d", p.Length)
	return b.String()
}

// hostPort prints an address and port as tcpdump does: "10.0.0.1.80",
// "fd34:1::2.40000".
func hostPort(ap netip.AddrPort) string {
	return ap.Addr().String() + "." + strconv.Itoa(int(ap.Port()))
}

// optionString renders one option as tcpdump's option printer does (with
// -S, so SACK blocks are absolute).
func optionString(o layers.TCPOption) string {
	d := o.OptionData
	// fixed renders an option whose data has a fixed size, flagging a
	// mismatch the way tcpdump does.
	fixed := func(name string, size int, body func() string) string {
		if len(d) != size {
			return fmt.Sprintf("%s[len %d]", name, len(d)+2)
		}
		return name + body()
	}
	switch o.OptionType {
	case layers.TCPOptionKindEndList:
		return "eol"
	case layers.TCPOptionKindNop:
		return "nop"
	case layers.TCPOptionKindMSS:
		return fixed("mss", 2, func() string { return fmt.Sprintf(" %d", binary.BigEndian.Uint16(d)) })
	case layers.TCPOptionKindWindowScale:
		return fixed("wscale", 1, func() string { return fmt.Sprintf(" %d", d[0]) })
	case layers.TCPOptionKindSACKPermitted:
		return "sackOK"
	case layers.TCPOptionKindSACK:
		if len(d)%8 != 0 {
			return "sack invalid sack"
		}
		s := fmt.Sprintf("sack %d ", len(d)/8)
		for i := 0; i < len(d); i += 8 {
			s += fmt.Sprintf("{%d:%d}", binary.BigEndian.Uint32(d[i:]), binary.BigEndian.Uint32(d[i+4:]))
		}
		return s
	case layers.TCPOptionKindTimestamps:
		return fixed("TS", 8, func() string {
			return fmt.Sprintf(" val %d ecr %d", binary.BigEndian.Uint32(d), binary.BigEndian.Uint32(d[4:]))
		})
	case 6, 7, 11, 12, 13: // echo, echoreply, cc, ccnew, ccecho: one 32-bit value
		name := map[layers.TCPOptionKind]string{6: "echo", 7: "echoreply", 11: "cc", 12: "ccnew", 13: ""}[o.OptionType]
		return fixed(name, 4, func() string { return fmt.Sprintf(" %d", binary.BigEndian.Uint32(d)) })
	case 19:
		return fixed("md5", 16, func() string { return fmt.Sprintf(" %x", d) })
	case 20:
		return fixed("scps", 2, func() string { return fmt.Sprintf(" cap %02x id %d", d[0], d[1]) })
	case 28:
		return fixed("uto", 2, func() string {
			v := binary.BigEndian.Uint16(d)
			secs := uint(v >> 1)
			if v&1 != 0 {
				secs *= 60
			}
			return fmt.Sprintf(" 0x%x %d", v, secs)
		})
	case 29:
		if len(d) < 2 {
			return "tcp-ao (invalid)"
		}
		s := fmt.Sprintf("tcp-ao keyid %d rnextkeyid %d", d[0], d[1])
		if len(d) > 2 {
			s += fmt.Sprintf(" mac 0x%x", d[2:])
		}
		return s
	case OptionKindFastOpen, OptionKindExperimental:
		fo, err := ParseFastOpen([]layers.TCPOption{o})
		switch {
		case err != nil && o.OptionType == OptionKindFastOpen:
			return "tfo (invalid)"
		case err != nil:
			return "exp-tfo (invalid)"
		case fo != nil:
			return fo.String()
		case len(d) < 2:
			return "exp[bad opt]"
		default: // kind 254 of another experiment
			return fmt.Sprintf("exp-%04x", binary.BigEndian.Uint16(d))
		}
	}
	name := fmt.Sprintf("unknown-%d", uint8(o.OptionType))
	if o.OptionType == layers.TCPOptionKindMultipathTCP {
		name = "mptcp" // tcpdump decodes MPTCP in depth; raw bytes are enough here
	}
	if len(d) > 0 {
		return fmt.Sprintf("%s 0x%x", name, d)
	}
	return name
}
