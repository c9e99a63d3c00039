package assertions

import (
	"fmt"
	"strings"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/observation"
)

// Kind is what a dialogue step selects: the next packet of that kind in the
// connection, from that side, is the one the step's details must hold for.
type Kind int

const (
	KindSYN    Kind = iota // SYN without ACK
	KindSYNACK             // SYN+ACK
	KindData               // a segment with payload that is neither SYN nor SYN-ACK
	KindFIN
	KindRST
)

func (k Kind) String() string {
	return [...]string{"SYN", "SYN-ACK", "data segment", "FIN", "RST"}[k]
}

func (k Kind) is(p capture.Packet) bool {
	switch k {
	case KindSYN:
		return p.IsSYN()
	case KindSYNACK:
		return p.IsSYNACK()
	case KindData:
		return p.Length > 0 && !p.Flags.Has(capture.FlagSYN)
	case KindFIN:
		return p.IsFIN()
	case KindRST:
		return p.IsRST()
	}
	return false
}

type tfoWant int

const (
	tfoAny tfoWant = iota
	tfoRequest
	tfoCookie
	tfoNone
)

// Step is one expected packet of a dialogue. Zero-valued details mean
// "don't care", as in packetimpact's expected-packet structs.
type Step struct {
	fromClient   bool
	kind         Kind
	tfo          tfoWant
	experimental *bool
	payload      *int
	ack          ackWant
	call         *Call // how it was built (call.go)
}

type ackWant int

const (
	ackAny     ackWant = iota
	ackSYNData         // ack = ISN+1+len(SYN data), len > 0: data accepted
	ackSYNOnly         // ack = ISN+1: the SYN's data (if any) was not accepted
)

// ClientSYN is the next SYN the client sends.
func ClientSYN() Step { return Step{fromClient: true, kind: KindSYN}.by("ClientSYN") }

// ServerSYNACK is the next SYN-ACK the server sends.
func ServerSYNACK() Step { return Step{kind: KindSYNACK}.by("ServerSYNACK") }

// ClientData is the next segment with payload the client sends after its SYN.
func ClientData() Step { return Step{fromClient: true, kind: KindData}.by("ClientData") }

// ServerData is the next segment with payload the server sends.
func ServerData() Step { return Step{kind: KindData}.by("ServerData") }

// WithCookieRequest: option 34 (or 254/0xF989) with no cookie. RFC 7413 §4.1.1.
func (s Step) WithCookieRequest() Step { s.tfo = tfoRequest; return s.then("WithCookieRequest") }

// WithCookie: a TFO option carrying a cookie of 4..16 bytes.
func (s Step) WithCookie() Step { s.tfo = tfoCookie; return s.then("WithCookie") }

// WithoutFastOpen: no TFO option at all.
func (s Step) WithoutFastOpen() Step { s.tfo = tfoNone; return s.then("WithoutFastOpen") }

// Experimental: the TFO option is (true) or is not (false) the experimental
// kind 254 with magic 0xF989.
func (s Step) Experimental(b bool) Step { s.experimental = &b; return s.then("Experimental", b) }

// WithPayload: exactly n bytes of TCP payload.
func (s Step) WithPayload(n int) Step { s.payload = &n; return s.then("WithPayload", n) }

// WithoutPayload: no TCP payload.
func (s Step) WithoutPayload() Step { return s.WithPayload(0) }

// AckingSYNData: a SYN-ACK whose ack number is ISN+1+len, i.e. the server
// accepted the data in the client's first SYN (RFC 7413 §4.2.2).
func (s Step) AckingSYNData() Step { s.ack = ackSYNData; return s.then("AckingSYNData") }

// AckingSYNOnly: a SYN-ACK whose ack number is ISN+1 (any SYN data refused).
func (s Step) AckingSYNOnly() Step { s.ack = ackSYNOnly; return s.then("AckingSYNOnly") }

func (s Step) String() string {
	who := "server"
	if s.fromClient {
		who = "client"
	}
	parts := []string{who + " " + s.kind.String()}
	switch s.tfo {
	case tfoRequest:
		parts = append(parts, "with a cookie request")
	case tfoCookie:
		parts = append(parts, "with a cookie")
	case tfoNone:
		parts = append(parts, "without TFO option")
	}
	if s.experimental != nil {
		if *s.experimental {
			parts = append(parts, "in the experimental 254/0xF989 form")
		} else {
			parts = append(parts, "as option 34")
		}
	}
	if s.payload != nil {
		if *s.payload == 0 {
			parts = append(parts, "and no payload")
		} else {
			parts = append(parts, fmt.Sprintf("and %d bytes of payload", *s.payload))
		}
	}
	switch s.ack {
	case ackSYNData:
		parts = append(parts, "acking the SYN's data (ISN+1+len)")
	case ackSYNOnly:
		parts = append(parts, "acking only the SYN (ISN+1)")
	}
	return strings.Join(parts, " ")
}

// mismatch explains why p does not satisfy s ("" if it does); syn is the
// connection's first client SYN (nil if none was captured).
func (s Step) mismatch(p capture.Packet, syn *capture.Packet) string {
	var why []string
	opt := p.FastOpen
	switch s.tfo {
	case tfoRequest:
		if opt == nil || !opt.IsRequest() {
			why = append(why, "no cookie request")
		}
	case tfoCookie:
		if opt == nil || opt.IsRequest() {
			why = append(why, "no cookie")
		}
	case tfoNone:
		if opt != nil {
			why = append(why, "has a TFO option")
		}
	}
	if p.FastOpenErr != nil {
		why = append(why, p.FastOpenErr.Error())
	}
	if s.experimental != nil && (opt == nil || opt.Experimental != *s.experimental) {
		why = append(why, "TFO option form differs")
	}
	if s.payload != nil && p.Length != *s.payload {
		why = append(why, fmt.Sprintf("payload %d bytes", p.Length))
	}
	if s.ack != ackAny {
		if syn == nil {
			why = append(why, "no client SYN captured to compare the ack with")
		} else {
			isn := syn.Seq
			switch s.ack {
			case ackSYNData:
				want := isn + 1 + uint32(syn.Length)
				if syn.Length == 0 || p.Ack != want {
					why = append(why, fmt.Sprintf("ack %d, want ISN+1+%d = %d", p.Ack, syn.Length, want))
				}
			case ackSYNOnly:
				if p.Ack != isn+1 {
					why = append(why, fmt.Sprintf("ack %d, want ISN+1 = %d", p.Ack, isn+1))
				}
			}
		}
	}
	return strings.Join(why, ", ")
}

// Side picks the capture a packet check reads: the client's or the
// serving node's side of the connection.
type Side = observation.Side

// The two sides of a connection.
const (
	AtClient = observation.ClientSide
	AtServer = observation.ServerSide
)

// Dialogue expects the connection's packets on side to contain the steps in
// order. Each step takes the next packet of its kind from its side after the
// previous step's packet: "the next SYN the client sends carries a cookie",
// not "some SYN somewhere does", so a retransmitted plain SYN in place of
// the expected TFO SYN fails the step.
func Dialogue(side Side, steps ...Step) ConnCheck {
	var descs []string
	for _, s := range steps {
		descs = append(descs, s.String())
	}
	return onSide(side, strings.Join(descs, ", then "), func(o *observation.Observation, i int, pkts []capture.Packet, link string) (bool, string) {
		c := o.Conns[i]
		syn, _ := o.Handshake(i, pkts)
		at := 0
		for n, s := range steps {
			found := -1
			for k := at; k < len(pkts); k++ {
				if (pkts[k].Src == c.Local) == s.fromClient && s.kind.is(pkts[k]) {
					found = k
					break
				}
			}
			if found < 0 {
				return false, fmt.Sprintf("step %d (%s): no such packet\n%s", n+1, s, listPackets(pkts, -1, link))
			}
			if why := s.mismatch(pkts[found], syn); why != "" {
				return false, fmt.Sprintf("step %d (%s): packet %d differs: %s\n%s", n+1, s, found+1, why, listPackets(pkts, found, link))
			}
			at = found + 1
		}
		return true, ""
	}).by("Dialogue", side, steps)
}

// NoPacket expects that the connection sent no packet of step's kind and
// details on link (e.g. no SYN with data reached the server).
func NoPacket(side Side, s Step) ConnCheck {
	return onSide(side, fmt.Sprintf("no %s", s), func(o *observation.Observation, i int, pkts []capture.Packet, link string) (bool, string) {
		c := o.Conns[i]
		for k, p := range pkts {
			if (p.Src == c.Local) == s.fromClient && s.kind.is(p) && s.mismatch(p, nil) == "" {
				return false, fmt.Sprintf("packet %d is one\n%s", k+1, listPackets(pkts, k, link))
			}
		}
		return true, ""
	}).by("NoPacket", side, s)
}

// onSide is a check of connection i's packets on side, captured on link,
// described as desc on that side. A capture that lost frames fails it
// (framesLost).
func onSide(side Side, desc string, check func(o *observation.Observation, i int, pkts []capture.Packet, link string) (bool, string)) ConnCheck {
	return ConnCheck{
		desc: fmt.Sprintf("on the %s side: %s", side, desc),
		check: func(o *observation.Observation, i int) (bool, string) {
			link := o.LinkOf(i, side)
			if lost := framesLost(o, link); lost != "" {
				return false, lost
			}
			return check(o, i, o.ConnPackets(i, side), link)
		},
	}
}

// framesLost says why a packet check cannot be judged: the kernel dropped
// frames of that capture, so a packet it looks for (or must not find) may
// be among them. Evidence that went missing fails the check that needed it.
func framesLost(o *observation.Observation, link string) string {
	if l, ok := o.Links[link]; ok && l.Dropped > 0 {
		return fmt.Sprintf("the capture on %s lost %d frames (kernel drops): the evidence is incomplete", link, l.Dropped)
	}
	return ""
}

// packetWindow is how many packets listPackets shows on each side of the
// offending one; the full list is in the artefacts.
const packetWindow = 5

func listPackets(pkts []capture.Packet, mark int, link string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "the connection's packets on %s:\n", link)
	if len(pkts) == 0 {
		b.WriteString("  (none captured)\n")
	}
	lo, hi := 0, len(pkts)
	if mark >= 0 && len(pkts) > 2*packetWindow+1 {
		lo, hi = max(0, mark-packetWindow), min(len(pkts), mark+packetWindow+1)
	} else if mark < 0 && len(pkts) > 4*packetWindow {
		hi = 4 * packetWindow
	}
	if lo > 0 {
		fmt.Fprintf(&b, "   ... %d earlier\n", lo)
	}
	for k := lo; k < hi; k++ {
		prefix := "   "
		if k == mark {
			prefix = ">> "
		}
		fmt.Fprintf(&b, "%s%d %s\n", prefix, k+1, pkts[k])
	}
	if hi < len(pkts) {
		fmt.Fprintf(&b, "   ... %d more\n", len(pkts)-hi)
	}
	return b.String()
}
