package rawpeer

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
)

// Retransmission timer for what the peer sent and the client has not
// acknowledged (SYN-ACK, SYN-ACK payload, FIN): initial value, and how many
// times it doubles and fires before the peer gives up on the connection.
const (
	initialRTO = 200 * time.Millisecond
	maxRetries = 6
)

// Segment is one TCP segment the client sent, as the peer received it.
type Segment struct {
	Time     time.Time // when the peer read it
	Flags    capture.TCPFlags
	Seq, Ack uint32 // absolute sequence and acknowledgement numbers
	Len      int    // payload bytes
}

// ConnRecord is what the peer saw of one client connection (one client
// 4-tuple and ISN).
type ConnRecord struct {
	// Client is the client's address and port.
	Client netip.AddrPort
	// ClientISN is the sequence number of the client's SYN; ServerISN is
	// the peer's.
	ClientISN, ServerISN uint32
	// SYNs counts the SYNs received with ClientISN: 1, plus retransmissions.
	SYNs int
	// SYNTime is when the first SYN arrived.
	SYNTime time.Time
	// CookieRequest: the first SYN carried an empty TFO option.
	CookieRequest bool
	// ExperimentalOption: its TFO option was the kind 254/0xF989 form.
	ExperimentalOption bool
	// Cookie is the cookie the SYN carried (nil for a request or no option).
	Cookie []byte
	// SynPayload is the data the first SYN carried. The peer acknowledges
	// it only with Options.AckSynData; otherwise the client has to send it
	// again.
	SynPayload []byte
	// CookieSent: the SYN-ACK carried Options.Cookie.
	CookieSent bool
	// SynAckData is the payload the SYN-ACK carried (Options.SynAckData;
	// nil when Options.SynAckDataOnlyForTFO kept it out of the SYN-ACK of
	// a plain SYN).
	SynAckData []byte
	// DataAfterHandshake: the SYN-ACK was plain (SynAckDataOnlyForTFO and
	// a SYN without a TFO option), and Options.SynAckData followed the
	// handshake as an ordinary segment, as a server that speaks first does.
	DataAfterHandshake bool
	// HandshakeAcked: the client acknowledged the SYN-ACK. HandshakeAck is
	// the acknowledgement number of that first ACK (ServerISN+1 when it did
	// not cover the SYN-ACK's payload, ServerISN+1+len(SynAckData) when it
	// did) and HandshakeAckTime when it arrived.
	HandshakeAcked   bool
	HandshakeAck     uint32
	HandshakeAckTime time.Time
	// SynAckDataAcked: some ACK from the client covered all of the peer's
	// payload (in the handshake, or later after the peer resent it or sent
	// it after the handshake).
	SynAckDataAcked bool
	// PayloadResent: the client's first ACK left the SYN-ACK's payload out,
	// so the peer sent the payload again at once, as an ordinary segment.
	PayloadResent bool
	// TimerRexmits counts segments the retransmission timer sent again
	// (none unless the client is slow to acknowledge or packets are lost).
	TimerRexmits int
	// Received is the data the peer acknowledged, in sequence order from
	// ClientISN+1: the SYN's payload first with Options.AckSynData, else
	// only what came after the SYN (so a SYN payload the client sent again
	// shows up here). FirstDataTime is when its first byte arrived.
	Received      []byte
	FirstDataTime time.Time
	// FINSent: the peer sent its FIN (after a '\n' in Received, or after the
	// client's FIN). ClientFIN: the client's FIN arrived in order. Reset:
	// the client sent a RST. Closed: both FINs are acknowledged, or the
	// client reset the connection, or the peer gave up retransmitting.
	FINSent, ClientFIN, Reset, Closed bool
	// Segments lists every segment the client sent on this connection, SYN
	// included, in arrival order.
	Segments []Segment
}

// HandshakeAckedData is how many bytes of the SYN-ACK's payload the
// client's first ACK acknowledged (HandshakeAck - ServerISN - 1), or -1
// when no ACK has arrived yet.
func (r ConnRecord) HandshakeAckedData() int {
	if !r.HandshakeAcked {
		return -1
	}
	return int(r.HandshakeAck - r.ServerISN - 1)
}

// String renders the record on a few lines, with sequence numbers relative
// to the client's ISN and acknowledgement numbers relative to the peer's,
// as tcpdump does without -S.
func (r ConnRecord) String() string {
	var b strings.Builder
	fo := "none"
	switch {
	case r.CookieRequest:
		fo = "cookie request"
	case r.Cookie != nil:
		fo = fmt.Sprintf("cookie %x", r.Cookie)
	}
	if r.ExperimentalOption {
		fo += " (exp 254)"
	}
	fmt.Fprintf(&b, "client %s: SYNs %d, tfo %s, SYN payload %d B, cookie sent %t, SYN-ACK payload %d B, handshake ack +%d, SYN-ACK data acked %t, payload resent %t, timer rexmits %d, received %q, fin sent %t, client fin %t, reset %t, closed %t\n",
		r.Client, r.SYNs, fo, len(r.SynPayload), r.CookieSent, len(r.SynAckData), r.HandshakeAckedData(),
		r.SynAckDataAcked, r.PayloadResent, r.TimerRexmits, r.Received, r.FINSent, r.ClientFIN, r.Reset, r.Closed)
	for _, s := range r.Segments {
		t := s.Time.Sub(r.SYNTime)
		fmt.Fprintf(&b, "  +%-10v [%s] seq %d ack %d len %d\n", t.Round(time.Microsecond), s.Flags, s.Seq-r.ClientISN, s.Ack-r.ServerISN, s.Len)
	}
	return b.String()
}

func (r ConnRecord) clone() ConnRecord {
	r.Cookie = bytes.Clone(r.Cookie)
	r.SynPayload = bytes.Clone(r.SynPayload)
	r.SynAckData = bytes.Clone(r.SynAckData)
	r.Received = bytes.Clone(r.Received)
	r.Segments = append([]Segment(nil), r.Segments...)
	return r
}

// engine is the peer's per-connection logic, free of sockets so that unit
// tests can drive it with decoded packets and a fake clock.
type engine struct {
	addr       netip.AddrPort
	mac        net.HardwareAddr
	mss        uint16
	synAckData []byte
	cookie     []byte
	ackSynData bool
	// ackSynDataN bounds what ackSynData acknowledges (0: everything).
	ackSynDataN int
	// dataOnlyForTFO keeps synAckData out of the SYN-ACK of a plain SYN.
	dataOnlyForTFO bool
	isn            func() uint32

	conns map[netip.AddrPort]*conn // the latest connection per client address
	all   []*conn                  // every connection, in SYN order
}

type conn struct {
	rec     ConnRecord
	peerMAC net.HardwareAddr
	// fastOpen is the TFO option the SYN-ACK carries, nil for none.
	fastOpen *capture.FastOpenOption
	// data is the peer's payload, at ISN+1; dataInSynAck: the SYN-ACK
	// carries it (else it follows the handshake).
	data         []byte
	dataInSynAck bool

	iss, sndUna, sndNxt uint32
	rcvNxt              uint32
	established         bool
	finSent             bool

	rto     time.Duration
	rtoAt   time.Time // zero: timer not armed
	retries int
}

func seqLT(a, b uint32) bool  { return int32(a-b) < 0 }
func seqLEQ(a, b uint32) bool { return int32(a-b) <= 0 }

// dataEnd is the sequence number just past the SYN-ACK's payload, which is
// where the peer's FIN goes.
func (c *conn) dataEnd() uint32 { return c.iss + 1 + uint32(len(c.data)) }

// segFrom builds the segment that (re)sends everything from seq from on:
// the SYN-ACK when from is the ISN and the handshake is not done, else
// whatever payload lies at or after from and the FIN if it was sent; a pure
// ACK when nothing remains.
func (e *engine) segFrom(c *conn, from uint32) segment {
	s := segment{
		srcMAC: e.mac, dstMAC: c.peerMAC,
		src: e.addr, dst: c.rec.Client,
		flags: capture.FlagACK,
		seq:   from,
		ack:   c.rcvNxt,
	}
	if from == c.iss && !c.established {
		s.flags |= capture.FlagSYN
		s.mss = e.mss
		s.fastOpen = c.fastOpen
		if c.dataInSynAck {
			s.payload = c.data
		}
		return s
	}
	if off := int(from - (c.iss + 1)); seqLEQ(c.iss+1, from) && off < len(c.data) {
		s.payload = c.data[off:]
		s.flags |= capture.FlagPSH
	}
	if c.finSent && seqLEQ(from, c.dataEnd()) {
		s.flags |= capture.FlagFIN
	}
	return s
}

// arm starts the retransmission timer if something is outstanding and the
// timer is not running; it stops the timer when nothing is.
func (c *conn) arm(now time.Time) {
	switch {
	case c.sndUna == c.sndNxt || c.rec.Closed:
		c.rtoAt = time.Time{}
	case c.rtoAt.IsZero():
		c.rtoAt = now.Add(c.rto)
	}
}

// handle processes one segment from a client and returns what to send.
func (e *engine) handle(p capture.Packet, peerMAC net.HardwareAddr, now time.Time) []segment {
	if p.Dst.Addr().Unmap() != e.addr.Addr().Unmap() || p.Dst.Port() != e.addr.Port() {
		return nil
	}
	seg := Segment{Time: now, Flags: p.Flags, Seq: p.Seq, Ack: p.Ack, Len: len(p.Payload)}
	c := e.conns[p.Src]
	if p.IsSYN() {
		if c != nil && c.rec.ClientISN == p.Seq {
			// A retransmitted SYN: answer it again the same way.
			c.rec.SYNs++
			c.rec.Segments = append(c.rec.Segments, seg)
			c.peerMAC = bytes.Clone(peerMAC)
			if c.established {
				return []segment{e.segFrom(c, c.sndNxt)}
			}
			return []segment{e.segFrom(c, c.iss)}
		}
		c = e.newConn(p, peerMAC, now)
		c.rec.Segments = append(c.rec.Segments, seg)
		c.arm(now)
		return []segment{e.segFrom(c, c.iss)}
	}
	if c == nil {
		return nil
	}
	c.rec.Segments = append(c.rec.Segments, seg)
	c.peerMAC = bytes.Clone(peerMAC)
	if p.IsRST() {
		c.rec.Reset = true
		c.rec.Closed = true
		c.arm(now)
		return nil
	}
	if !p.IsACK() || p.IsSYNACK() {
		return nil
	}

	oldNxt := c.sndNxt
	rexmitHandshake := false
	if !c.established {
		if seqLT(p.Ack, c.iss+1) || seqLT(c.sndNxt, p.Ack) {
			return nil // acknowledges nothing we sent: ignore
		}
		c.established = true
		c.rec.HandshakeAcked = true
		c.rec.HandshakeAck = p.Ack
		c.rec.HandshakeAckTime = now
		// The client took the SYN but not the SYN-ACK's payload: send the
		// payload again at once instead of waiting for the timer. After a
		// plain SYN-ACK this is how the payload goes out the first time.
		rexmitHandshake = seqLT(p.Ack, c.sndNxt)
	}
	if seqLT(c.sndUna, p.Ack) && seqLEQ(p.Ack, c.sndNxt) {
		c.sndUna = p.Ack
		c.rto, c.rtoAt, c.retries = initialRTO, time.Time{}, 0
	}
	if seqLEQ(c.dataEnd(), c.sndUna) {
		c.rec.SynAckDataAcked = true
	}

	needAck := false
	if n := uint32(len(p.Payload)); n > 0 {
		end := p.Seq + n
		if seqLEQ(p.Seq, c.rcvNxt) && seqLT(c.rcvNxt, end) {
			if c.rec.Received == nil {
				c.rec.FirstDataTime = now
			}
			c.rec.Received = append(c.rec.Received, p.Payload[c.rcvNxt-p.Seq:]...)
			c.rcvNxt = end
		}
		needAck = true // new, duplicate or out of order: (re-)acknowledge
	}
	if p.IsFIN() {
		if !c.rec.ClientFIN && p.Seq+uint32(len(p.Payload)) == c.rcvNxt {
			c.rcvNxt++
			c.rec.ClientFIN = true
		}
		needAck = true
	}
	if !c.finSent && (c.rec.ClientFIN || bytes.IndexByte(c.rec.Received, '\n') >= 0) {
		c.finSent = true
		c.rec.FINSent = true
		c.sndNxt++
	}

	var out []segment
	switch {
	case rexmitHandshake:
		out = append(out, e.segFrom(c, p.Ack))
		c.rec.PayloadResent = c.dataInSynAck
	case c.sndNxt != oldNxt:
		out = append(out, e.segFrom(c, oldNxt)) // the new FIN, acking everything
	case needAck:
		out = append(out, e.segFrom(c, c.sndNxt))
	}
	if c.rec.ClientFIN && c.finSent && c.sndUna == c.sndNxt {
		c.rec.Closed = true
	}
	c.arm(now)
	return out
}

func (e *engine) newConn(p capture.Packet, peerMAC net.HardwareAddr, now time.Time) *conn {
	c := &conn{
		rec: ConnRecord{
			Client:     p.Src,
			ClientISN:  p.Seq,
			SYNs:       1,
			SYNTime:    now,
			SynPayload: bytes.Clone(p.Payload),
		},
		peerMAC:      bytes.Clone(peerMAC),
		rcvNxt:       p.Seq + 1,
		rto:          initialRTO,
		data:         e.synAckData,
		dataInSynAck: p.FastOpen != nil || !e.dataOnlyForTFO,
	}
	if c.dataInSynAck {
		c.rec.SynAckData = c.data
	} else {
		c.rec.DataAfterHandshake = len(c.data) > 0
	}
	if fo := p.FastOpen; fo != nil {
		c.rec.ExperimentalOption = fo.Experimental
		if fo.IsRequest() {
			c.rec.CookieRequest = true
			if e.cookie != nil {
				c.fastOpen = &capture.FastOpenOption{Experimental: fo.Experimental, Cookie: e.cookie}
				c.rec.CookieSent = true
			}
		} else {
			c.rec.Cookie = bytes.Clone(fo.Cookie)
		}
	}
	if e.ackSynData && len(p.Payload) > 0 {
		n := len(p.Payload)
		if e.ackSynDataN > 0 && e.ackSynDataN < n {
			n = e.ackSynDataN
		}
		c.rec.Received = bytes.Clone(p.Payload[:n])
		c.rec.FirstDataTime = now
		c.rcvNxt += uint32(n)
	}
	c.iss = e.isn()
	c.rec.ServerISN = c.iss
	c.sndUna = c.iss
	c.sndNxt = c.dataEnd()
	if e.conns == nil {
		e.conns = map[netip.AddrPort]*conn{}
	}
	if old := e.conns[p.Src]; old != nil && !old.rec.Closed {
		old.rec.Closed = true // superseded by a new connection from the same port
		old.rtoAt = time.Time{}
	}
	e.conns[p.Src] = c
	e.all = append(e.all, c)
	return c
}

// tick runs the retransmission timers due at now.
func (e *engine) tick(now time.Time) []segment {
	var out []segment
	for _, c := range e.conns {
		if c.rtoAt.IsZero() || now.Before(c.rtoAt) {
			continue
		}
		if c.retries >= maxRetries {
			c.rec.Closed = true
			c.rtoAt = time.Time{}
			continue
		}
		out = append(out, e.segFrom(c, c.sndUna))
		c.rec.TimerRexmits++
		c.retries++
		c.rto *= 2
		c.rtoAt = now.Add(c.rto)
	}
	return out
}

// nextTimer is when tick next has work, zero when no timer runs.
func (e *engine) nextTimer() time.Time {
	var next time.Time
	for _, c := range e.conns {
		if !c.rtoAt.IsZero() && (next.IsZero() || c.rtoAt.Before(next)) {
			next = c.rtoAt
		}
	}
	return next
}

// records returns a copy of every connection's record, in SYN order.
func (e *engine) records() []ConnRecord {
	out := make([]ConnRecord, len(e.all))
	for i, c := range e.all {
		out[i] = c.rec.clone()
	}
	return out
}
