package middlebox

import (
	"fmt"
	"strings"

	"github.com/tfolab/tfolab/lab"
	"golang.org/x/net/bpf"
)

// TCP flag bits (byte 13 of the TCP header).
const (
	flagSYN = 0x02
	flagACK = 0x10
)

// label-resolving assembler: a jump names its targets, resolved to
// x/net/bpf's relative skips once the program is laid out.
type asm struct {
	ins    []bpf.Instruction
	fix    []fixup
	labels map[string]int
}

type fixup struct {
	at          int
	true, false string // "" = fall through
}

func (a *asm) emit(i ...bpf.Instruction) { a.ins = append(a.ins, i...) }

func (a *asm) jump(j bpf.Instruction, onTrue, onFalse string) {
	a.fix = append(a.fix, fixup{len(a.ins), onTrue, onFalse})
	a.ins = append(a.ins, j)
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

func (a *asm) resolve() []bpf.Instruction {
	skip := func(from int, name string) uint8 {
		if name == "" {
			return 0
		}
		to, ok := a.labels[name]
		if !ok || to <= from || to-from-1 > 255 {
			panic("middlebox: bad bpf label " + name)
		}
		return uint8(to - from - 1)
	}
	for _, f := range a.fix {
		st, sf := skip(f.at, f.true), skip(f.at, f.false)
		switch j := a.ins[f.at].(type) {
		case bpf.JumpIf:
			j.SkipTrue, j.SkipFalse = st, sf
			a.ins[f.at] = j
		case bpf.JumpIfX:
			j.SkipTrue, j.SkipFalse = st, sf
			a.ins[f.at] = j
		default:
			panic(fmt.Sprintf("middlebox: fixup on non-jump %T", j))
		}
	}
	return a.ins
}

// TCPPayloadProgram returns a classic BPF program, for xt_bpf (which runs it
// from the IP header, no link layer), that returns non-zero exactly when the
// packet is TCP, (tcp_flags & flagMask) == flagWant, and the TCP segment
// carries payload:
//
//	IPv4: total_len - IHL*4 - doff*4 > 0 (non-first fragments never match)
//	IPv6: next header == 6 (no extension headers) and payload_len - doff*4 > 0
//
// drop-syn-data uses flagMask SYN|ACK, flagWant SYN ("SYN with data");
// blackhole-after-handshake uses flagMask SYN, flagWant 0 ("data, not SYN").
func TCPPayloadProgram(f lab.Family, flagMask, flagWant uint8) []bpf.Instruction {
	var a asm
	if f == lab.IPv6 {
		a.emit(bpf.LoadAbsolute{Off: 6, Size: 1}) // next header
		a.jump(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 6}, "no", "")
		a.emit(
			bpf.LoadAbsolute{Off: 40 + 13, Size: 1}, // TCP flags
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: uint32(flagMask)},
		)
		a.jump(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(flagWant)}, "no", "")
		a.emit(
			bpf.LoadAbsolute{Off: 40 + 12, Size: 1}, // data offset << 4
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 2}, // doff*4
			bpf.TAX{},
			bpf.LoadAbsolute{Off: 4, Size: 2}, // payload length
		)
		a.jump(bpf.JumpIfX{Cond: bpf.JumpGreaterThan}, "", "no")
	} else {
		a.emit(bpf.LoadAbsolute{Off: 9, Size: 1}) // protocol
		a.jump(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 6}, "no", "")
		a.emit(bpf.LoadAbsolute{Off: 6, Size: 2}) // flags + fragment offset
		a.jump(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff}, "no", "")
		a.emit(
			bpf.LoadMemShift{Off: 0},           // X = IHL*4
			bpf.LoadIndirect{Off: 13, Size: 1}, // TCP flags
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: uint32(flagMask)},
		)
		a.jump(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(flagWant)}, "no", "")
		a.emit(
			bpf.LoadIndirect{Off: 12, Size: 1}, // data offset << 4
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0},
			bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 2}, // A = doff*4
			bpf.StoreScratch{Src: bpf.RegA, N: 0},
			bpf.TXA{},                            // A = IHL*4
			bpf.LoadScratch{Dst: bpf.RegX, N: 0}, // X = doff*4
			bpf.ALUOpX{Op: bpf.ALUOpAdd},         // A = IHL*4 + doff*4
			bpf.TAX{},
			bpf.LoadAbsolute{Off: 2, Size: 2}, // total length
		)
		a.jump(bpf.JumpIfX{Cond: bpf.JumpGreaterThan}, "", "no")
	}
	a.emit(bpf.RetConstant{Val: 1})
	a.label("no")
	a.emit(bpf.RetConstant{Val: 0})
	return a.resolve()
}

// XTBPFBytecode assembles prog into xt_bpf's text form
// "N,code jt jf k,code jt jf k,..." (the argument of -m bpf --bytecode).
func XTBPFBytecode(prog []bpf.Instruction) (string, error) {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return "", fmt.Errorf("assemble bpf: %w", err)
	}
	parts := make([]string, 0, len(raw)+1)
	parts = append(parts, fmt.Sprint(len(raw)))
	for _, r := range raw {
		parts = append(parts, fmt.Sprintf("%d %d %d %d", r.Op, r.Jt, r.Jf, r.K))
	}
	return strings.Join(parts, ","), nil
}

// BPFListing is a human-readable listing of prog (one instruction a line,
// with its index), for reports.
func BPFListing(prog []bpf.Instruction) string {
	var b strings.Builder
	for i, in := range prog {
		fmt.Fprintf(&b, "%2d: %s\n", i, in)
	}
	return b.String()
}
