package diagnose

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
)

// idleTimeout finishes a connection whose handshake has not completed
// after this long without a packet. It is longer than the longest gap
// between two SYN retransmissions with Linux's default tcp_syn_retries (6:
// gaps of 1, 2, 4, 8, 16 and 32 s, then 64 s until it gives up).
const idleTimeout = 75 * time.Second

// unfinishedWithin: a handshake whose last SYN came less than this
// (Linux's initial RTO) before the capture ended may still have been
// answered; it is judged unfinished, not stalled.
const unfinishedWithin = time.Second

// maxLive bounds the connections in their handshake at once (a SYN flood,
// a capture of a port scan); past it, the idle ones are finished early.
const maxLive = 200_000

// foKind is what TFO option a SYN or SYN-ACK carries.
type foKind uint8

const (
	foNone    foKind = iota
	foRequest        // option without a cookie: a cookie request
	foCookie         // option with a cookie
)

// cookie is a TFO cookie by value (at most 16 bytes, RFC 7413 §4.1.1;
// longer ones are cut, which only matters for telling two apart).
type cookie struct {
	n uint8
	b [16]byte
}

func cookieOf(fo *capture.FastOpenOption) (foKind, bool, cookie) {
	if fo == nil {
		return foNone, false, cookie{}
	}
	if len(fo.Cookie) == 0 {
		return foRequest, fo.Experimental, cookie{}
	}
	var c cookie
	c.n = uint8(copy(c.b[:], fo.Cookie))
	return foCookie, fo.Experimental, c
}

// fastOpen is the packet's TFO option, also when its cookie has a length
// RFC 7413 does not allow (ParseFastOpen refuses those; a cookie is a
// cookie for the diagnosis).
func fastOpen(p *capture.Packet) *capture.FastOpenOption {
	if p.FastOpen != nil {
		return p.FastOpen
	}
	if p.FastOpenErr != nil {
		if fo, ok := capture.FindFastOpen(p.Options); ok {
			return &fo
		}
	}
	return nil
}

// synRec is one SYN as far as TFO goes.
type synRec struct {
	t       time.Time
	dataLen int
	fo      foKind
	exp     bool
	ck      cookie
}

// side is which end of the connection the capture was taken at.
type side uint8

const (
	sideUnknown side = iota
	sideClient
	sideServer
)

func (s side) String() string {
	switch s {
	case sideClient:
		return "client"
	case sideServer:
		return "server"
	}
	return "unknown"
}

// tuple keys a connection in its handshake: client and server.
type tuple struct{ c, s netip.AddrPort }

// conn is one connection's handshake as one capture saw it.
type conn struct {
	file           int
	client, server netip.AddrPort
	isn            uint32

	first    synRec // the first SYN
	fp       uint64 // the first SYN's fingerprint (synFingerprint)
	nSYN     int
	lastSYNt time.Time
	prevSYNt time.Time // the SYN before the last
	synTTL   uint8
	maxData  int  // the most data any SYN carried
	anyOpt   bool // some SYN carried a TFO option
	anyExp   bool // ... in the experimental form

	nSynack   int
	sa        synRec // the first SYN-ACK: its time, TFO option; dataLen unused
	saAck     uint32 // what the first SYN-ACK acks
	saTTL     uint8
	synsAtSA  int       // SYNs seen when the first SYN-ACK came
	ansSYNt   time.Time // the last SYN before the first SYN-ACK
	ackedData bool      // a SYN-ACK acked the SYN's data
	ackedN    int       // how much of it: all of it, or part (a partial ack)
	synsAfter int       // SYNs after the first SYN-ACK: it did not arrive

	acked       bool // the client acked a SYN-ACK: handshake done
	ackT        time.Time
	rst         bool
	rstByServer bool
	rstT        time.Time
	lastPkt     time.Time
	endedBy     string
	endT        time.Time // when it was finished (the capture's time then)

	// Set by the patterns as the SYNs come.
	paused       bool           // a plain SYN during a blackhole pause
	pauseOf      netip.AddrPort // the server whose failures started the pause
	cookieUnused bool           // a plain SYN from a client holding a cookie
	gaveUp       bool           // its SYNs unanswered, it gave up (the client moved on without TFO)
	reasked      bool           // a cookie request by the same SYN a cookie was already granted to

	// Packets kept to print: first SYN, the SYN the first SYN-ACK
	// answered, the last SYN, the first SYN-ACK, the RST.
	evFirst, evAns, evLast, evSA, evRST *capture.Packet

	role side
}

// tfoAttempt reports whether the first SYN tried TFO: an option or data.
func (c *conn) tfoAttempt() bool { return c.first.fo != foNone || c.first.dataLen > 0 }

func keep(p *capture.Packet) *capture.Packet {
	q := *p
	q.Frame, q.Payload = nil, nil
	return &q
}

func (c *conn) addSYN(p *capture.Packet, ttl uint8) {
	fo, exp, ck := cookieOf(fastOpen(p))
	r := synRec{t: p.Time, dataLen: p.Length, fo: fo, exp: exp, ck: ck}
	if c.nSYN == 0 {
		c.first, c.synTTL, c.evFirst = r, ttl, keep(p)
	} else {
		c.evLast = keep(p)
	}
	c.nSYN++
	c.prevSYNt, c.lastSYNt = c.lastSYNt, p.Time
	c.lastPkt = p.Time
	c.maxData = max(c.maxData, p.Length)
	c.anyOpt = c.anyOpt || fo != foNone
	c.anyExp = c.anyExp || exp
	if c.nSynack > 0 {
		c.synsAfter++
	}
}

func (c *conn) addSynack(p *capture.Packet, ttl uint8) {
	c.lastPkt = p.Time
	if d := p.Ack - (c.isn + 1); d > 0 && int(d) <= c.maxData {
		c.ackedData = true
		c.ackedN = max(c.ackedN, int(d))
	}
	c.nSynack++
	if c.nSynack > 1 {
		return
	}
	fo, exp, ck := cookieOf(fastOpen(p))
	c.sa = synRec{t: p.Time, fo: fo, exp: exp, ck: ck}
	c.saAck, c.saTTL, c.evSA = p.Ack, ttl, keep(p)
	c.synsAtSA, c.ansSYNt = c.nSYN, c.lastSYNt
	if c.nSYN > 1 && c.evLast != nil {
		c.evAns = c.evLast
	}
}

// tracker follows the connections of one capture.
type tracker struct {
	src  *source
	file int
	live map[tuple]*conn
	pat  *patterns
	// done receives each finished connection.
	done func(*conn)
	// orphanSynack receives a SYN-ACK whose SYN the capture lacks.
	orphanSynack func(file int, p *capture.Packet)
	now          time.Time
	lastSweep    time.Time
	votes        [3]int // connections per side, where the evidence was clear
	crowded      bool
	// forced, when set, is every connection's side (two captures: which
	// is which was settled for the whole file).
	forced side
	// post follows TFO connections past their handshake (post.go);
	// postDone, if set, receives each when it ends, and whether the
	// server's data reached the client.
	post     map[tuple]*postRec
	postDone func(r *postRec, delivered bool)
	held     map[netip.AddrPort]int // per server, followed connections holding their handshake to print
	// cur is the packet being handled, for the few the post-handshake
	// tracking keeps to print.
	cur current
}

func newTracker(src *source, pat *patterns, done func(*conn), orphan func(int, *capture.Packet)) *tracker {
	return &tracker{src: src, file: src.idx, live: map[tuple]*conn{}, post: map[tuple]*postRec{}, pat: pat, done: done, orphanSynack: orphan}
}

// handle takes one record.
func (t *tracker) handle(p rawPacket) {
	if p.ci.Timestamp.After(t.now) {
		t.now = p.ci.Timestamp
	}
	sum := t.src.sum
	if !linkSupported(p.link) {
		if !t.src.badLinks[p.link] {
			t.src.badLinks[p.link] = true
			t.src.warn(t.src.path + ": link type " + linkName(p.link) + " is not supported; its packets are skipped")
		}
		return
	}
	ip, v, ok := ipPacket(p.link, p.data)
	if !ok {
		return
	}
	h, st := peek(ip, v)
	switch st {
	case notTCP:
		return
	case tcpCut:
		sum.TCP++
		sum.Cut++
		return
	}
	var c *conn
	fromClient := false
	if !h.slow && h.flags&(capture.FlagSYN|capture.FlagACK) != capture.FlagSYN {
		// Not an initial SYN: only the handshakes under way care.
		if c = t.live[tuple{h.src, h.dst}]; c != nil {
			fromClient = true
		} else if c = t.live[tuple{h.dst, h.src}]; c == nil && !h.flags.Has(capture.FlagSYN|capture.FlagACK) {
			sum.TCP++
			if len(t.post) > 0 {
				t.cur = current{raw: p, ip: ip, v: v}
				t.postSegment(segment{h.src, h.dst, h.flags, h.seq, h.ack, h.payLen, p.ci.Timestamp})
			}
			t.maybeSweep()
			return
		}
	}
	pkt, ok, err := t.src.decode(p, ip, v)
	if err != nil {
		sum.TCP++
		sum.Cut++
		return
	}
	if !ok {
		return
	}
	sum.TCP++
	if h.slow { // the decode knows what the peek could not
		h.src, h.dst, h.flags = pkt.Src, pkt.Dst, pkt.Flags
		if c = t.live[tuple{h.src, h.dst}]; c != nil {
			fromClient = true
		} else {
			c = t.live[tuple{h.dst, h.src}]
		}
	}
	switch {
	case pkt.IsSYN():
		sum.SYNs++
		t.syn(&pkt, h.ttl)
	case c == nil && pkt.IsSYNACK():
		if t.orphanSynack != nil && t.post[tuple{pkt.Dst, pkt.Src}] == nil {
			t.orphanSynack(t.file, &pkt)
		}
	case c == nil:
		t.cur = current{pkt: &pkt}
		t.postSegment(segment{pkt.Src, pkt.Dst, pkt.Flags, pkt.Seq, pkt.Ack, pkt.Length, pkt.Time})
	case fromClient:
		c.lastPkt = pkt.Time
		switch {
		case pkt.IsRST():
			c.rst, c.rstT = true, pkt.Time
			c.evRST = keep(&pkt)
			t.finish(c, "client reset")
		case pkt.IsACK():
			c.acked, c.ackT = true, pkt.Time
			t.finish(c, "handshake")
		}
	default: // from the server
		switch {
		case pkt.IsSYNACK():
			c.addSynack(&pkt, h.ttl)
			t.pat.onSynack(t.file, c)
		case pkt.IsRST():
			c.lastPkt = pkt.Time
			c.rst, c.rstByServer, c.rstT = true, true, pkt.Time
			c.evRST = keep(&pkt)
			t.finish(c, "server reset")
		default:
			c.lastPkt = pkt.Time
		}
	}
	t.maybeSweep()
}

// maybeSweep sweeps the idle connections once a second.
func (t *tracker) maybeSweep() {
	if t.now.Sub(t.lastSweep) >= time.Second {
		t.sweep(idleTimeout)
	}
}

func (t *tracker) syn(p *capture.Packet, ttl uint8) {
	k := tuple{p.Src, p.Dst}
	if r := t.post[k]; r != nil {
		t.finishPost(r, "reused")
	}
	c := t.live[k]
	if c != nil && c.isn != p.Seq { // the 4-tuple reused by a new connection
		t.finish(c, "reused")
		c = nil
	}
	first := c == nil
	if first {
		if len(t.live) >= maxLive {
			t.crowd()
		}
		c = &conn{file: t.file, client: p.Src, server: p.Dst, isn: p.Seq, fp: synFingerprint(p, ttl)}
		t.live[k] = c
	}
	c.addSYN(p, ttl)
	if first {
		t.pat.onFirstSYN(t.file, c)
	}
	t.pat.onSYN(t.file, c)
}

// crowd makes room when too many handshakes are open at once.
func (t *tracker) crowd() {
	if !t.crowded {
		t.crowded = true
		t.src.warn(t.src.path + ": more than 200000 handshakes open at once (a SYN flood?); idle ones are finished after 5 s instead of 75 s")
	}
	t.sweep(5 * time.Second)
}

// sweep finishes the connections idle for longer than idle.
func (t *tracker) sweep(idle time.Duration) {
	t.lastSweep = t.now
	var old []*conn
	for _, c := range t.live {
		if t.now.Sub(c.lastPkt) > idle {
			old = append(old, c)
		}
	}
	slices.SortFunc(old, byStart)
	for _, c := range old {
		t.finish(c, "idle")
	}
	t.sweepPost(idle)
}

// flush finishes every connection still open: the capture ended.
func (t *tracker) flush() {
	open := slices.SortedFunc(maps.Values(t.live), byStart)
	for _, c := range open {
		t.finish(c, "capture end")
	}
	for _, r := range slices.SortedFunc(maps.Values(t.post), byHandshake) {
		t.finishPost(r, "capture end")
	}
}

// byStart orders connections by their first SYN, then by what tells them
// apart. Connections finished together (a sweep, the capture's end) go in
// this order, not Go's random map order: the order decides which are kept
// as evidence and what the patterns see, so the output would vary.
func byStart(a, b *conn) int {
	return cmp.Or(a.first.t.Compare(b.first.t), cmp.Compare(a.file, b.file),
		a.client.Compare(b.client), a.server.Compare(b.server), cmp.Compare(a.isn, b.isn))
}

func (t *tracker) finish(c *conn, why string) {
	delete(t.live, tuple{c.client, c.server})
	c.endedBy, c.endT = why, t.now
	c.role = t.roleOf(c)
	t.done(c)
	if why == "handshake" {
		t.startPost(c)
	}
}

// synFingerprint sums up how a SYN was built: its options (kinds in
// order, MSS, window scale; the TFO option and padding left out), window
// and TTL. Two SYNs with the same fingerprint most likely come from the
// same TCP stack with the same settings.
func synFingerprint(p *capture.Packet, ttl uint8) uint64 {
	h := uint64(14695981039346656037)
	mix := func(b byte) { h = (h ^ uint64(b)) * 1099511628211 }
	for _, o := range p.Options {
		k := byte(o.OptionType)
		switch k {
		case 0, 1, 34, 254:
			continue
		}
		mix(k)
		if k == 2 || k == 3 { // MSS, window scale
			for _, b := range o.OptionData {
				mix(b)
			}
		}
	}
	mix(byte(p.Window >> 8))
	mix(byte(p.Window))
	mix(initialTTL(ttl))
	return h | 1 // never 0: 0 is "none"
}

// initialTTL is the TTL a packet most likely left its sender with.
func initialTTL(ttl uint8) uint8 {
	for _, i := range []uint8{32, 64, 128} {
		if ttl <= i {
			return i
		}
	}
	return 255
}

// roleOf says at which end the capture saw c: the local host's packets
// carry an untouched initial TTL, the remote's arrive decremented; failing
// that, the handshake's timing; failing that, what most of the file's
// connections said; failing that, the client.
func (t *tracker) roleOf(c *conn) side {
	r := sideUnknown
	if c.nSynack > 0 {
		synLocal := c.synTTL == initialTTL(c.synTTL)
		saLocal := c.saTTL == initialTTL(c.saTTL)
		switch {
		case synLocal && !saLocal:
			r = sideClient
		case saLocal && !synLocal:
			r = sideServer
		case c.acked:
			// At the client the SYN to SYN-ACK gap is the round trip and
			// the ACK follows at once; at the server, the other way round.
			toSA, toAck := c.sa.t.Sub(c.ansSYNt), c.ackT.Sub(c.sa.t)
			switch {
			case toSA > 2*toAck:
				r = sideClient
			case toAck > 2*toSA:
				r = sideServer
			}
		}
	}
	if r != sideUnknown {
		t.votes[r]++
	}
	switch {
	case t.forced != sideUnknown:
		return t.forced
	case r != sideUnknown:
		return r
	}
	if t.votes[sideServer] > t.votes[sideClient] {
		return sideServer
	}
	return sideClient
}

// rtt is the handshake round trip c shows, if it shows one.
func (c *conn) rtt() (time.Duration, bool) {
	if c.nSynack == 0 {
		return 0, false
	}
	if c.role == sideServer {
		if !c.acked {
			return 0, false
		}
		return c.ackT.Sub(c.sa.t), true
	}
	return c.sa.t.Sub(c.ansSYNt), true
}

// outcome is what one connection (or a pair of copies) amounts to.
type outcome struct {
	kind Kind
	// cost is the time the TFO failure cost the connection; costRTT says
	// it is one round trip, to be taken from the server's typical RTT
	// when the connection shows none.
	cost    time.Duration
	hasCost bool
	costRTT bool
	ev      []evLine
	// exp: the experimental option form was used.
	exp bool
	// rtt of a clean handshake (one SYN, answered), a sample for the server.
	rtt    time.Duration
	hasRTT bool
	// partAcked of partSent bytes of SYN data acked (KindPartial).
	partAcked, partSent int
}

// evLine is one packet to print, and the capture it came from.
type evLine struct {
	file int
	p    *capture.Packet
}

func (c *conn) ev(ps ...*capture.Packet) []evLine {
	var out []evLine
	for _, p := range ps {
		if p != nil {
			out = append(out, evLine{c.file, p})
		}
	}
	return out
}

// classify sums up one capture's view of c.
func (c *conn) classify() outcome {
	o := outcome{exp: c.anyExp}
	if rtt, ok := c.rtt(); ok && c.nSYN == 1 && c.synsAtSA == 1 {
		o.rtt, o.hasRTT = rtt, true
	}
	oneRTT := func() {
		if rtt, ok := c.rtt(); ok {
			o.cost, o.hasCost = rtt, true
		} else {
			o.costRTT = true
		}
	}
	f := c.first
	tfo := c.tfoAttempt()
	switch {
	case c.nSynack == 0 && c.acked:
		o.kind, o.ev = KindOneDirection, c.ev(c.evFirst)
	case c.nSynack == 0 && c.rst && c.rstByServer:
		if tfo {
			o.kind, o.ev = KindReset, c.ev(c.evFirst, c.evRST)
			o.cost, o.hasCost = c.rstT.Sub(f.t), true
		} else {
			o.kind, o.ev = KindRefused, c.ev(c.evFirst, c.evRST)
		}
	case givenUp(c):
		o.kind, o.ev = KindGivenUp, c.ev(c.evFirst)
	case c.nSynack == 0 && c.endedBy == "capture end" && c.endT.Sub(c.lastSYNt) < unfinishedWithin && !c.gaveUp:
		o.kind, o.ev = KindUnfinished, c.ev(c.evFirst)
	case c.nSynack == 0:
		o.ev = c.ev(c.evFirst, c.evLast)
		o.cost, o.hasCost = c.lastSYNt.Sub(f.t), true
		if tfo {
			o.kind = KindStalledTFO
		} else {
			o.kind, o.hasCost = KindStalledPlain, false
		}
	case c.role == sideServer && !c.acked && !c.rst && c.synsAfter > 0:
		// The server answered, the client kept sending SYNs: the
		// SYN-ACKs did not reach it.
		o.ev = c.ev(c.evFirst, c.evSA, c.evLast)
		o.cost, o.hasCost = c.lastSYNt.Sub(f.t), true
		if tfo {
			o.kind = KindSynackUnacked
		} else {
			o.kind = KindStalledPlain
		}
	case tfo && c.synsAtSA > 1 && !c.ackedData && c.role == sideClient:
		// The TFO SYN went unanswered; a retransmission (Linux sends
		// them plain) got the SYN-ACK.
		o.ev = c.ev(c.evFirst, c.evAns, c.evSA)
		o.cost, o.hasCost = c.ansSYNt.Sub(f.t), true
		if c.maxData > 0 {
			o.kind = KindFallback
		} else {
			o.kind = KindOptionDropped
		}
	case c.maxData > 0 && c.ackedData:
		o.ev = c.ev(c.evFirst, c.evSA)
		if c.ackedN < c.maxData {
			// Linux's client resends the rest at once after the
			// handshake, as for a refused SYN (tcp_rcv_fastopen_synack).
			o.kind, o.partAcked, o.partSent = KindPartial, c.ackedN, c.maxData
			oneRTT()
			break
		}
		if f.fo == foNone {
			o.kind = KindAcceptedNoCookie
		} else {
			o.kind = KindAccepted
		}
	case c.maxData > 0: // only the SYN was acked
		o.ev = c.ev(c.evFirst, c.evSA)
		oneRTT()
		switch {
		case f.fo == foCookie && c.sa.fo == foCookie && c.sa.ck != f.ck:
			o.kind = KindRejected
		case f.fo == foCookie && c.sa.fo == foCookie:
			o.kind = KindRefusedSameCookie
		case f.fo == foCookie && c.role == sideServer:
			o.kind = KindRefusedByServer
		case f.fo == foCookie:
			o.kind = KindRefusedNoOption
		case c.role == sideServer:
			o.kind = KindStrippedSuspect
		default:
			o.kind = KindNoCookieRefused
		}
	case f.fo == foRequest:
		o.ev = c.ev(c.evFirst, c.evSA)
		switch {
		case c.sa.fo == foCookie && c.reasked:
			o.kind = KindCookieReasked
		case c.sa.fo == foCookie:
			o.kind = KindGranted
		default:
			o.kind = KindNoCookie
		}
	case f.fo == foCookie:
		o.ev = c.ev(c.evFirst, c.evSA)
		o.kind = KindCookieNoData
	case c.paused:
		o.kind, o.ev = KindPaused, c.ev(c.evFirst)
	case c.cookieUnused && c.role == sideServer:
		o.kind, o.ev = KindCookieNotOffered, c.ev(c.evFirst, c.evSA)
	case c.cookieUnused:
		o.kind, o.ev = KindCookieUnused, c.ev(c.evFirst, c.evSA)
	default:
		o.kind, o.ev = KindPlain, c.ev(c.evFirst, c.evSA)
	}
	return o
}
