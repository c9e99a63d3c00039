package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/tfolab/tfolab/lab/capture"
)

// SYN fields that imitate Linux, so a server treats the probe like any
// Linux client: the receive window of a Linux SYN (44 × MSS 1460), the
// window scale that the default tcp_rmem gives (a larger rmem gives more:
// 10 on the lab's VM), and the usual MSS per family on Ethernet.
const (
	synWindow   = 64240
	synWScale   = 7
	defaultMSS4 = 1460
	defaultMSS6 = 1440
)

// synParams is everything a probe SYN depends on.
type synParams struct {
	local, remote netip.AddrPort
	isn           uint32
	tsval         uint32
	mss           uint16
	// experimental asks for a cookie in the kind 254/0xF989 form.
	experimental bool
}

// synOptions lays the options out the way Linux does (tcp_options_write):
// MSS; SACK-permitted folded into the timestamp word; NOP + window scale;
// then the TFO cookie request. Every option stays 32-bit aligned, so no
// end-of-list padding follows: 24 bytes, data offset 11.
func (p synParams) synOptions() []layers.TCPOption {
	ts := make([]byte, 8) // TSval, then TSecr 0 (nothing to echo in a SYN)
	binary.BigEndian.PutUint32(ts, p.tsval)
	opts := []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: binary.BigEndian.AppendUint16(nil, p.mss)},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts},
		{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{synWScale}},
	}
	if p.experimental {
		// RFC 7413 §4.1.1 / RFC 6994: kind 254, length 4, magic, no cookie.
		return append(opts, layers.TCPOption{OptionType: capture.OptionKindExperimental, OptionLength: 4,
			OptionData: binary.BigEndian.AppendUint16(nil, capture.ExperimentalMagicFastOpen)})
	}
	// RFC 7413 §4.1.1: kind 34 with length 2 (no cookie) is a cookie
	// request. Linux pads it to a word with two NOPs after it.
	return append(opts,
		layers.TCPOption{OptionType: capture.OptionKindFastOpen, OptionLength: 2},
		layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1},
		layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1})
}

// buildSYN serializes the probe SYN: the TCP header alone, with its
// checksum, which is what a raw IPPROTO_TCP socket sends.
func buildSYN(p synParams) ([]byte, error) {
	return serializeTCP(p.local, p.remote, &layers.TCP{
		Seq:     p.isn,
		SYN:     true,
		Window:  synWindow,
		Options: p.synOptions(),
	})
}

// buildRST serializes a bare RST with sequence number seq and no ACK: the
// segment the client kernel itself sends for a SYN-ACK it has no socket
// for. A server in SYN-RECV accepts it when seq is exactly its rcv_nxt (our
// ISN+1), whether or not we ever saw its SYN-ACK and learnt its ISN.
func buildRST(local, remote netip.AddrPort, seq uint32) ([]byte, error) {
	return serializeTCP(local, remote, &layers.TCP{Seq: seq, RST: true})
}

// serializeTCP fills in ports, lengths and the checksum of tcp and
// serializes it. Raw sockets compute no TCP checksum: IPv4 never, IPv6 only
// with the IPV6_CHECKSUM socket option. Computing it here over the
// pseudo-header (RFC 793 §3.1, RFC 8200 §8.1) treats both families alike.
func serializeTCP(local, remote netip.AddrPort, tcp *layers.TCP) ([]byte, error) {
	src, dst := local.Addr().Unmap(), remote.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("segment %s > %s: need two addresses of one family", local, remote)
	}
	tcp.SrcPort = layers.TCPPort(local.Port())
	tcp.DstPort = layers.TCPPort(remote.Port())
	var pseudo gopacket.NetworkLayer
	if src.Is4() {
		pseudo = &layers.IPv4{Version: 4, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	} else {
		pseudo = &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	if err := tcp.SetNetworkLayerForChecksum(pseudo); err != nil {
		return nil, fmt.Errorf("segment %s > %s: %w", local, remote, err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := tcp.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}); err != nil {
		return nil, fmt.Errorf("serialize segment %s > %s: %w", local, remote, err)
	}
	return buf.Bytes(), nil
}

// replyKind says how a received segment answers the probe SYN.
type replyKind int

const (
	synAck replyKind = iota + 1
	reset
)

// reply is a segment that answers the probe SYN.
type reply struct {
	kind replyKind
	// options of the SYN-ACK; their data alias the receive buffer.
	options []layers.TCPOption
}

// matchReply decodes b, one datagram read from the raw socket, and reports
// whether it answers the SYN from local to remote with sequence number isn:
// a SYN-ACK or an RST+ACK from remote to local whose ACK is isn+1. A raw
// IPv4 socket hands over the IP header too; a raw IPv6 socket only the
// transport payload, whose addresses the connected socket already
// filtered. The TCP checksum is not verified: segments from a veth peer
// carry a partial (offloaded) checksum, and the kernel checked the rest.
func matchReply(b []byte, ipv4 bool, local, remote netip.AddrPort, isn uint32) (reply, bool) {
	seg := b
	if ipv4 {
		var ip layers.IPv4
		if err := ip.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
			return reply{}, false
		}
		srcIP, _ := netip.AddrFromSlice(ip.SrcIP)
		dstIP, _ := netip.AddrFromSlice(ip.DstIP)
		if ip.Protocol != layers.IPProtocolTCP || ip.FragOffset != 0 ||
			srcIP.Unmap() != remote.Addr().Unmap() || dstIP.Unmap() != local.Addr().Unmap() {
			return reply{}, false
		}
		seg = ip.Payload
	}
	var tcp layers.TCP
	if err := tcp.DecodeFromBytes(seg, gopacket.NilDecodeFeedback); err != nil {
		return reply{}, false
	}
	if uint16(tcp.SrcPort) != remote.Port() || uint16(tcp.DstPort) != local.Port() || !tcp.ACK || tcp.Ack != isn+1 {
		return reply{}, false
	}
	switch {
	case tcp.RST: // RFC 793: in SYN-SENT an RST counts only if it ACKs our SYN
		return reply{kind: reset}, true
	case tcp.SYN:
		return reply{kind: synAck, options: tcp.Options}, true
	}
	return reply{}, false
}

// judge fills in what r says about the server. requested is the form the
// probe asked in, for the wording when no TFO option came back.
func judge(res *Result, r reply, requestedExperimental bool) {
	res.Answered = true
	if r.kind == reset {
		res.RST = true
		res.Reason = "RST: port closed"
		return
	}
	fo, ok := capture.FindFastOpen(r.options)
	if !ok {
		name := "option 34"
		if requestedExperimental {
			name = "option 254/0xF989"
		}
		res.Reason = fmt.Sprintf("SYN-ACK without %s: TFO off or the option was stripped on the way", name)
		return
	}
	res.Experimental = fo.Experimental
	name := "option 34"
	if fo.Experimental {
		name = "option 254/0xF989 (experimental TFO)"
	}
	n := len(fo.Cookie)
	switch {
	case n == 0:
		// A server offers a cookie; an empty option is a request echoed
		// back, typically by a middlebox that reflects options.
		res.Reason = fmt.Sprintf("SYN-ACK carries %s without a cookie: an echoed request, not an offer", name)
	case !capture.ValidCookieLen(n):
		res.Cookie = fo.Cookie
		res.Reason = fmt.Sprintf("SYN-ACK carries %s with %s %d-byte cookie, not the even 4..16 bytes of RFC 7413 §4.1.1", name, article(n), n)
	default:
		res.SupportsTFO = true
		res.Cookie = fo.Cookie
		res.Reason = fmt.Sprintf("SYN-ACK carries %s with %s %d-byte cookie", name, article(n), n)
	}
}

// article is the indefinite article before the number n (< 40, the most
// an option can hold) spoken in English.
func article(n int) string {
	if n == 8 || n == 11 || n == 18 {
		return "an"
	}
	return "a"
}
