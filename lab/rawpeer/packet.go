package rawpeer

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"

	"github.com/tfolab/tfolab/lab/capture"
)

// window is the receive window every segment advertises. The SYN-ACK
// carries no window-scale option, so the client does not scale either.
const window = 65535

// segment is one TCP segment the peer sends, before framing.
type segment struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.AddrPort
	flags          capture.TCPFlags
	seq, ack       uint32
	// mss, if not 0, adds an MSS option (SYN-ACKs only).
	mss uint16
	// fastOpen, if not nil, adds a TFO option carrying fastOpen.Cookie, in
	// the kind 34 form or the experimental 254/0xF989 form.
	fastOpen *capture.FastOpenOption
	payload  []byte
}

// frame serializes s as an Ethernet frame with correct IP and TCP
// checksums and lengths.
func (s segment) frame() ([]byte, error) {
	src, dst := s.src.Addr().Unmap(), s.dst.Addr().Unmap()
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("segment %s > %s: mixed address families", s.src, s.dst)
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(s.src.Port()),
		DstPort: layers.TCPPort(s.dst.Port()),
		Seq:     s.seq,
		Ack:     s.ack,
		FIN:     s.flags.Has(capture.FlagFIN),
		SYN:     s.flags.Has(capture.FlagSYN),
		RST:     s.flags.Has(capture.FlagRST),
		PSH:     s.flags.Has(capture.FlagPSH),
		ACK:     s.flags.Has(capture.FlagACK),
		Window:  window,
		Options: s.options(),
	}
	eth := &layers.Ethernet{SrcMAC: s.srcMAC, DstMAC: s.dstMAC}
	var ip gopacket.NetworkLayer
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip = &layers.IPv4{
			Version:  4,
			IHL:      5,
			TTL:      64,
			Flags:    layers.IPv4DontFragment,
			Protocol: layers.IPProtocolTCP,
			SrcIP:    src.AsSlice(),
			DstIP:    dst.AsSlice(),
		}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{
			Version:    6,
			HopLimit:   64,
			NextHeader: layers.IPProtocolTCP,
			SrcIP:      src.AsSlice(),
			DstIP:      dst.AsSlice(),
		}
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip.(gopacket.SerializableLayer), tcp, gopacket.Payload(s.payload))
	if err != nil {
		return nil, fmt.Errorf("serialize segment %s > %s: %w", s.src, s.dst, err)
	}
	return buf.Bytes(), nil
}

// options lays out the MSS and TFO options the way Linux does: every option
// 32-bit aligned with leading NOPs, so no end-of-list padding is needed.
func (s segment) options() []layers.TCPOption {
	var opts []layers.TCPOption
	if s.mss != 0 {
		opts = append(opts, layers.TCPOption{
			OptionType: layers.TCPOptionKindMSS, OptionLength: 4,
			OptionData: binary.BigEndian.AppendUint16(nil, s.mss),
		})
	}
	if s.fastOpen != nil {
		o := layers.TCPOption{OptionType: capture.OptionKindFastOpen}
		if s.fastOpen.Experimental {
			o.OptionType = capture.OptionKindExperimental
			o.OptionData = binary.BigEndian.AppendUint16(nil, capture.ExperimentalMagicFastOpen)
		}
		o.OptionData = append(o.OptionData, s.fastOpen.Cookie...)
		o.OptionLength = uint8(2 + len(o.OptionData))
		for i := 0; i < (4-int(o.OptionLength)%4)%4; i++ {
			opts = append(opts, layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1})
		}
		opts = append(opts, o)
	}
	return opts
}

// Offsets into an untagged Ethernet frame, for the receive filter.
const (
	offEtherType = 12
	offIPv4Proto = 14 + 9
	offIPv4Frag  = 14 + 6
	offIPv4      = 14
	offIPv6Next  = 14 + 6
	offIPv6DPort = 14 + 40 + 2
)

// receiveFilter is a classic BPF program accepting TCP segments to port
// over IPv4 (any header length, first fragments only) or IPv6 (TCP right
// after the fixed header). Addresses are checked in user space.
func receiveFilter(port uint16) ([]bpf.RawInstruction, error) {
	// Skips count from the next instruction; the index in each comment is
	// the jump target.
	prog := []bpf.Instruction{
		/*  0 */ bpf.LoadAbsolute{Off: offEtherType, Size: 2},
		/*  1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipFalse: 7}, // not IPv4 -> 9
		/*  2 */ bpf.LoadAbsolute{Off: offIPv4Proto, Size: 1},
		/*  3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipFalse: 10}, // not TCP -> 14
		/*  4 */ bpf.LoadAbsolute{Off: offIPv4Frag, Size: 2},
		/*  5 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 8}, // later fragment -> 14
		/*  6 */ bpf.LoadMemShift{Off: offIPv4}, // X = IHL*4
		/*  7 */ bpf.LoadIndirect{Off: offIPv4 + 2, Size: 2}, // TCP destination port
		/*  8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(port), SkipTrue: 6, SkipFalse: 5}, // -> 15 or 14
		/*  9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x86dd, SkipFalse: 4}, // neither -> 14
		/* 10 */ bpf.LoadAbsolute{Off: offIPv6Next, Size: 1},
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipFalse: 2}, // not TCP -> 14
		/* 12 */ bpf.LoadAbsolute{Off: offIPv6DPort, Size: 2},
		/* 13 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(port), SkipTrue: 1}, // -> 15 or 14
		/* 14 */ bpf.RetConstant{Val: 0},
		/* 15 */ bpf.RetConstant{Val: 1 << 18},
	}
	return bpf.Assemble(prog)
}
