package diagnose

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
)

// After the handshake, a TFO connection is followed a little further, on
// a few counters (postRec): a middlebox can let a TFO flow's handshake
// through and drop what comes after it, and the client's kernel watches
// for exactly that (net/ipv4/tcp_fastopen.c): the third timeout of a TFO
// socket, during or after the handshake, or a socket that expires before
// it (tcp_fastopen_active_detect_blackhole), and, when a TFO socket is
// destroyed, a FIN alone in its out-of-order queue with no data received
// (tcp_fastopen_active_disable_ofo_check). A connection is forgotten as
// soon as the client acks anything the server sent (its data arrives:
// nothing more to learn), or on RST, both FINs, idleTimeout, or the end of
// the capture. Bulk data after that costs two map look-ups a packet, as
// before.

// waitMin is how long a client must have waited, with nothing from the
// server, before its close counts as giving up on an answer; and how long
// the server's data must have gone unacked.
const waitMin = time.Second

// maxPostEv bounds the post-handshake packets a connection keeps to print.
const maxPostEv = 3

// maxHeldPerServer bounds, per server, the followed connections that hold
// on to their SYN and SYN-ACK to print (a few hundred bytes each): a
// server keeps at most groupsPerKind connections' evidence per Kind, so a
// few dozen candidates are plenty, and memory stays small when many
// connections are followed at once.
const maxHeldPerServer = 32

// detectHow is what made the client's kernel detect a blackhole.
type detectHow uint8

const (
	detSYN3    detectHow = iota // the third timeout of a TFO SYN
	detGiveUp                   // a TFO connection gave up before its third timeout
	detDataRTO                  // the third timeout of the client's data after a TFO handshake
	detOFOFIN                   // a lone out-of-order FIN, no data received
	numDetect
)

// seqAfter reports a after b in sequence space; seqBefore, a before b.
func seqAfter(a, b uint32) bool  { return int32(a-b) > 0 }
func seqBefore(a, b uint32) bool { return int32(a-b) < 0 }

// postRec is a TFO connection after its handshake.
type postRec struct {
	file           int
	client, server netip.AddrPort
	role           side
	dataAcked      bool      // the SYN-ACK acked the SYN's data
	hsT            time.Time // the client's handshake ACK
	lastPkt        time.Time

	// The client's stream: the highest sequence it sent, the highest the
	// server acked, the retransmissions at that ack since it last moved.
	cMax, cAck uint32
	cRtx       int
	cRtxT      time.Time // the last such retransmission
	cSent      time.Time // the last new data

	// The server's stream, the same way; sFirst is its first segment
	// with payload or FIN after the handshake.
	sISN       uint32
	sMax, sAck uint32
	sRtx       int
	sFirst     time.Time
	sPayload   bool
	sFIN       bool

	closeT    time.Time // the client's first FIN or RST
	cFIN, rst bool
	endT      time.Time

	evSYN, evSA *capture.Packet // from the handshake
	ev          []*capture.Packet
}

// segment is what the post-handshake tracking reads of a packet.
type segment struct {
	src, dst netip.AddrPort
	flags    capture.TCPFlags
	seq, ack uint32
	payLen   int
	t        time.Time
}

// startPost begins following c after its handshake, if it tried TFO.
func (t *tracker) startPost(c *conn) {
	if t.postDone == nil || !c.tfoAttempt() || c.nSynack == 0 || c.evSA == nil {
		return
	}
	if len(t.post) >= maxLive {
		t.sweepPost(5 * time.Second)
	}
	sisn := c.evSA.Seq
	r := &postRec{file: c.file, client: c.client, server: c.server, role: c.role, dataAcked: c.ackedData,
		hsT: c.ackT, lastPkt: c.ackT, cMax: c.saAck, cAck: c.saAck, cSent: c.ackT,
		sISN: sisn, sMax: sisn + 1, sAck: sisn + 1}
	if t.held[c.server] < maxHeldPerServer {
		if t.held == nil {
			t.held = map[netip.AddrPort]int{}
		}
		t.held[c.server]++
		r.evSYN, r.evSA = c.evFirst, c.evSA
	}
	t.post[tuple{c.client, c.server}] = r
}

// current is the packet being handled: decoded already, or its record.
type current struct {
	pkt *capture.Packet
	raw rawPacket
	ip  []byte
	v   int
}

// decodeCur decodes the packet being handled (rarely: only those kept).
func (t *tracker) decodeCur() *capture.Packet {
	if t.cur.pkt != nil {
		return t.cur.pkt
	}
	pkt, ok, err := t.src.decode(t.cur.raw, t.cur.ip, t.cur.v)
	if !ok || err != nil {
		return nil
	}
	return &pkt
}

// postSegment takes a segment of a connection past its handshake, if it
// is followed.
func (t *tracker) postSegment(s segment) {
	r := t.post[tuple{s.src, s.dst}]
	fromClient := r != nil
	if r == nil {
		if r = t.post[tuple{s.dst, s.src}]; r == nil {
			return
		}
	}
	r.lastPkt = s.t
	if fromClient {
		t.postClient(r, s)
	} else {
		t.postServer(r, s)
	}
}

// keep keeps the packet being handled to print, the latest in place of
// the one before when r has its fill.
func (t *tracker) keep(r *postRec) {
	p := t.decodeCur()
	if p == nil {
		return
	}
	if len(r.ev) < maxPostEv {
		r.ev = append(r.ev, keep(p))
	} else {
		r.ev[maxPostEv-1] = keep(p)
	}
}

func (t *tracker) postClient(r *postRec, s segment) {
	if s.flags.Has(capture.FlagACK) && seqAfter(s.ack, r.sAck) {
		r.sAck = s.ack
	}
	if seqAfter(r.sAck, r.sISN+1) {
		// Something the server sent arrived.
		t.finishPost(r, "delivered")
		return
	}
	if s.payLen > 0 {
		end := s.seq + uint32(s.payLen)
		switch {
		case seqAfter(end, r.cMax):
			r.cMax, r.cSent = end, s.t
		case s.seq == r.cAck && seqBefore(s.seq, r.cMax):
			// A retransmission of the oldest unacked data: a timeout.
			r.cRtx++
			gap := s.t.Sub(r.cSent)
			if r.cRtx > 1 {
				gap = s.t.Sub(r.cRtxT)
			}
			r.cRtxT = s.t
			if r.cRtx <= 2 || r.cRtx == 3 && r.role == sideClient {
				t.keep(r)
			}
			if r.role == sideClient {
				switch r.cRtx {
				case 1:
					t.pat.onPostSuspect(r, gap)
				case 3:
					t.pat.onPostDetect(r, s.t, detDataRTO)
				}
			}
		}
	}
	closing := s.flags&(capture.FlagFIN|capture.FlagRST) != 0
	if closing && r.closeT.IsZero() {
		r.closeT = s.t
		t.keep(r)
		// The kernel looks at the out-of-order queue when it destroys
		// the socket, right after this close.
		if r.role == sideClient && r.sFIN && !r.sPayload {
			t.pat.onPostDetect(r, s.t, detOFOFIN)
		}
	}
	switch {
	case s.flags.Has(capture.FlagRST):
		r.rst = true
		t.finishPost(r, "client reset")
	case s.flags.Has(capture.FlagFIN):
		r.cFIN = true
		if r.sFIN {
			t.finishPost(r, "closed")
		}
	}
}

func (t *tracker) postServer(r *postRec, s segment) {
	if s.flags.Has(capture.FlagACK) && seqAfter(s.ack, r.cAck) {
		r.cAck, r.cRtx = s.ack, 0
	}
	if s.flags.Has(capture.FlagRST) {
		r.rst = true
		t.finishPost(r, "server reset")
		return
	}
	fin := s.flags.Has(capture.FlagFIN)
	if s.payLen == 0 && !fin {
		return
	}
	end := s.seq + uint32(s.payLen)
	if fin {
		end++
	}
	if r.sFirst.IsZero() {
		r.sFirst = s.t
	}
	if s.payLen > 0 {
		if s.seq == r.sAck && !seqAfter(end, r.sMax) {
			r.sRtx++
		}
		if !r.sPayload && r.role != sideClient {
			t.keep(r) // the server's first data, as it left
		}
		r.sPayload = true
	}
	if fin && !r.sFIN {
		r.sFIN = true
		if !r.sPayload && seqAfter(s.seq, r.sISN+1) {
			t.keep(r) // a FIN after bytes that never came
		}
	}
	if seqAfter(end, r.sMax) {
		r.sMax = end
	}
	if fin && r.cFIN {
		t.finishPost(r, "closed")
	}
}

func (t *tracker) finishPost(r *postRec, why string) {
	delete(t.post, tuple{r.client, r.server})
	if r.evSA != nil {
		if t.held[r.server]--; t.held[r.server] <= 0 {
			delete(t.held, r.server)
		}
	}
	r.endT = t.now
	t.postDone(r, why == "delivered")
}

// sweepPost finishes the followed connections idle for longer than idle.
func (t *tracker) sweepPost(idle time.Duration) {
	var old []*postRec
	for _, r := range t.post {
		if t.now.Sub(r.lastPkt) > idle {
			old = append(old, r)
		}
	}
	slices.SortFunc(old, byHandshake)
	for _, r := range old {
		t.finishPost(r, "idle")
	}
}

// byHandshake orders followed connections by their handshake, then by
// their ends: finished together, they are folded in this order, not the
// map's (see byStart).
func byHandshake(a, b *postRec) int {
	return cmp.Or(a.hsT.Compare(b.hsT), cmp.Compare(a.file, b.file),
		a.client.Compare(b.client), a.server.Compare(b.server))
}

// outcome is what became of the connection's data after the handshake,
// if something went wrong: ok is false for a connection that shows
// nothing wrong (or not enough).
func (r *postRec) outcome() (o outcome, ok bool) {
	end := r.closeT
	if end.IsZero() {
		end = r.endT
	}
	// The server sent something the client never acked, and the client
	// showed it did not get it: it closed without acking it (at the
	// server's end, its close may have crossed the data: it must have
	// come well after), or the server retransmitted it twice.
	closedAfter := !r.closeT.IsZero() && seqAfter(r.sMax, r.sISN+1) && r.closeT.After(r.sFirst) &&
		(r.role == sideClient || r.closeT.Sub(r.sFirst) >= waitMin)
	srvLost := seqAfter(r.sMax, r.sISN+1) && !seqAfter(r.sAck, r.sISN+1) && (r.sRtx >= 2 || closedAfter)
	switch {
	case srvLost:
		o.kind = KindServerDataLost
	case r.role == sideClient && r.cRtx >= 2 && seqBefore(r.cAck, r.cMax):
		o.kind = KindClientDataLost
	case r.role == sideClient && r.dataAcked && !r.sPayload && !r.sFIN && !r.closeT.IsZero() &&
		r.closeT.Sub(r.hsT) >= waitMin && !seqBefore(r.cAck, r.cMax):
		o.kind = KindNoAnswer
	default:
		return o, false
	}
	o.cost, o.hasCost = end.Sub(r.hsT), true
	for _, p := range append([]*capture.Packet{r.evSYN, r.evSA}, r.ev...) {
		if p != nil {
			o.ev = append(o.ev, evLine{r.file, p})
		}
	}
	return o, true
}
