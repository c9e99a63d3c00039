package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// Offsets into an untagged Ethernet frame. The kernel strips an offloaded
// VLAN tag before the socket filter runs, so tagged traffic usually looks
// untagged here too.
const (
	offEtherType   = 12      // Ethernet type
	offIPv4Proto   = 14 + 9  // IPv4 protocol
	offIPv4Frag    = 14 + 6  // IPv4 flags + fragment offset
	offIPv6Next    = 14 + 6  // IPv6 next header
	offIPv6FragNxt = 14 + 40 // next header of a fragment header right after the IPv6 header

	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	ipProtoTCP     = 6
	ipProtoV6Frag  = 44
	ipv4FragOffset = 0x1fff
)

// DefaultFilter returns the classic BPF program used when Options.Filter is
// nil: TCP over IPv4 or IPv6, the same frames tcpdump's "tcp" expression
// selects. Accepted frames are cut to snapLen bytes.
func DefaultFilter(snapLen uint32) ([]bpf.RawInstruction, error) {
	// Written by hand rather than compiled from a pcap expression, because
	// compiling needs libpcap. Skips count from the next instruction; the
	// index in each comment is the jump target.
	prog := []bpf.Instruction{
		/*  0 */ bpf.LoadAbsolute{Off: offEtherType, Size: 2},
		/*  1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIPv4, SkipFalse: 4}, // not IPv4 -> 6
		/*  2 */ bpf.LoadAbsolute{Off: offIPv4Proto, Size: 1},
		/*  3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ipProtoTCP, SkipFalse: 9}, // not TCP -> 13
		/*  4 */ bpf.LoadAbsolute{Off: offIPv4Frag, Size: 2},
		// A non-first fragment carries no TCP header: reject it (-> 13), else accept (-> 12).
		/*  5 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: ipv4FragOffset, SkipTrue: 7, SkipFalse: 6},
		/*  6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIPv6, SkipFalse: 6}, // neither -> 13
		/*  7 */ bpf.LoadAbsolute{Off: offIPv6Next, Size: 1},
		/*  8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ipProtoTCP, SkipTrue: 3}, // TCP -> 12
		/*  9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ipProtoV6Frag, SkipFalse: 3}, // no fragment header -> 13
		/* 10 */ bpf.LoadAbsolute{Off: offIPv6FragNxt, Size: 1},
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ipProtoTCP, SkipFalse: 1}, // -> 12 or 13
		/* 12 */ bpf.RetConstant{Val: snapLen},
		/* 13 */ bpf.RetConstant{Val: 0},
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble default TCP filter: %w", err)
	}
	return raw, nil
}
