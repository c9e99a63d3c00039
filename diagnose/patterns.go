package diagnose

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// maxClients bounds the clients whose TFO history is kept; past it, those
// silent for clientIdle are forgotten (a warning says so).
const (
	maxClients = 100_000
	clientIdle = 10 * time.Minute
)

// Pause is one blackhole pause of a client's active TFO: from the kernel's
// detection (the detecting connection's third SYN retransmission) until the
// client offered TFO again.
type Pause struct {
	Client string    `json:"client"`
	Start  time.Time `json:"start"`
	// End is the first TFO SYN after the pause; zero if the capture ended
	// first.
	End time.Time `json:"end,omitzero"`
	// Plain is how many plain SYNs the client sent during the pause (to
	// servers it had used TFO with); LastPlain the time of the last.
	Plain     int       `json:"plain_syns"`
	LastPlain time.Time `json:"last_plain"`
}

// Length is the pause's length, or what the capture saw of it.
func (p Pause) Length() time.Duration {
	if p.End.IsZero() {
		return p.LastPlain.Sub(p.Start)
	}
	return p.End.Sub(p.Start)
}

// Open reports a pause still running when the capture ended.
func (p Pause) Open() bool { return p.End.IsZero() }

// clientKey is a client host in one capture.
type clientKey struct {
	file int
	ip   netip.Addr
}

// clientState is a client's TFO history, kept only for clients that used
// TFO at all.
type clientState struct {
	lastSeen time.Time
	// tfoDests are the server addresses it sent a TFO option or SYN data
	// to, or got a cookie from: the cookie cache is per address, not port.
	tfoDests map[netip.Addr]bool
	// grants: per server address, the fingerprint of the client's SYN a
	// cookie was handed out to (a cookie request answered with a cookie).
	grants map[netip.Addr]uint64
	// A blackhole pause under way.
	inPause      bool
	detectAt     time.Time
	detectServer netip.AddrPort
	plain        int
	lastPlain    time.Time
	// suspect is the client's latest TFO connection still failing (SYNs
	// unanswered, or data unacked after the handshake): if it gives up,
	// the kernel counts that as a blackhole at once. inferred is the one
	// the pause under way was inferred from.
	suspect, inferred *suspect
	// pool: per server, 1 = a cookie accepted, 2 = a cookie refused and
	// replaced.
	pool map[netip.AddrPort]uint8
}

// suspect is a TFO connection that may end in a blackhole detection.
type suspect struct {
	c      *conn    // a handshake whose SYNs go unanswered
	r      *postRec // or data unacked after the handshake
	server netip.AddrPort
	// last is its last packet; until is when it must have given up by,
	// if it gave up (one more backed-off timeout).
	last, until time.Time
}

// failing reports whether the suspect is still failing.
func (s *suspect) failing() bool {
	if s.c != nil {
		return !s.c.acked && !s.c.rst && (s.c.nSynack == 0 || s.c.synsAfter > 0)
	}
	return s.r != nil && seqBefore(s.r.cAck, s.r.cMax) && !s.r.rst
}

// patterns follows what only a sequence of connections shows. Its hooks
// run in packet order (a connection's first SYN, each SYN, each SYN-ACK),
// except onOutcome, which runs when a connection is classified.
type patterns struct {
	clients   map[clientKey]*clientState
	agg       *aggregator
	warn      func(string)
	now       time.Time
	lastEvict time.Time
	evicted   bool
}

func newPatterns(agg *aggregator, warn func(string)) *patterns {
	return &patterns{clients: map[clientKey]*clientState{}, agg: agg, warn: warn}
}

func (p *patterns) state(file int, ip netip.Addr, create bool) *clientState {
	k := clientKey{file, ip}
	st := p.clients[k]
	if st == nil && create {
		if len(p.clients) >= maxClients {
			p.evict()
		}
		st = &clientState{tfoDests: map[netip.Addr]bool{}}
		p.clients[k] = st
	}
	if st != nil && p.now.After(st.lastSeen) {
		st.lastSeen = p.now
	}
	return st
}

// evict forgets clients silent for clientIdle, keeping open pauses.
func (p *patterns) evict() {
	if p.now.Sub(p.lastEvict) < time.Minute {
		return
	}
	p.lastEvict = p.now
	n := len(p.clients)
	for k, st := range p.clients {
		if !st.inPause && p.now.Sub(st.lastSeen) > clientIdle {
			delete(p.clients, k)
		}
	}
	if len(p.clients) < n && !p.evicted {
		p.evicted = true
		p.warn("more than 100000 TFO clients: the history of those silent for 10 minutes was dropped (pause and pool patterns may be missed for them)")
	}
}

// onFirstSYN runs on a connection's first SYN: it ends a pause (a TFO
// SYN) or marks the connection as paused (a plain SYN to an address the
// client had used TFO with).
func (p *patterns) onFirstSYN(file int, c *conn) {
	p.now = c.first.t
	if c.tfoAttempt() {
		st := p.state(file, c.client.Addr(), true)
		st.tfoDests[c.server.Addr()] = true
		if c.first.fo == foRequest && c.first.dataLen == 0 && c.fp != 0 && st.grants[c.server.Addr()] == c.fp {
			c.reasked = true
		}
		if st.inPause {
			st.inPause = false
			switch {
			case !p.pauseHolds(st):
			case st.plain > 0:
				p.agg.addPause(file, st.detectServer, Pause{Client: c.client.Addr().String(),
					Start: st.detectAt, End: c.first.t, Plain: st.plain, LastPlain: st.lastPlain})
			default:
				// The kernel detected a blackhole, yet the next TFO SYN
				// went out: its detection is off.
				p.agg.server(st.detectServer).detNoPause++
			}
		}
		return
	}
	st := p.state(file, c.client.Addr(), false)
	if st == nil || !st.tfoDests[c.server.Addr()] {
		return
	}
	if !st.inPause {
		// A plain SYN from a client holding a cookie while one of its TFO
		// connections was failing: that connection gave up, and the
		// kernel's tcp_fastopen_active_detect_blackhole counts a TFO
		// socket that expires before its third timeout as a blackhole
		// (tcp_syn_retries, TCP_USER_TIMEOUT). No other mechanism makes a
		// new connection leave its cookie out while an old one is still
		// unanswered: the per-destination backoff needs a SYN-ACK.
		if sp := st.suspect; sp != nil && sp.failing() && c.first.t.After(sp.last) && !c.first.t.After(sp.until) {
			st.suspect = nil
			if sp.c != nil {
				sp.c.gaveUp = true
			}
			p.detect(st, sp.server, c.first.t, detGiveUp)
			st.inferred = sp
		}
	}
	if st.inPause {
		c.paused, c.pauseOf = true, st.detectServer
		st.plain++
		st.lastPlain = c.first.t
		return
	}
	c.cookieUnused = true
}

// detect records the kernel's blackhole detection, caused by a connection
// to server: active TFO pauses for every destination.
// A detection during a pause is not counted: no TFO SYN goes out then, so
// the pause seen is the first detection's.
func (p *patterns) detect(st *clientState, server netip.AddrPort, at time.Time, how detectHow) bool {
	if st.inPause {
		return false
	}
	p.agg.server(server).detections[how]++
	st.inPause, st.detectAt, st.detectServer = true, at, server
	st.plain, st.lastPlain = 0, time.Time{}
	st.inferred = nil
	return true
}

// pauseHolds checks, when a pause ends, a detection that was inferred
// from a give-up: the connection that gave up must not have sent again
// after it, nor been answered. If it did, the plain SYNs were the
// application's choice: no pause, no detection.
func (p *patterns) pauseHolds(st *clientState) bool {
	sp := st.inferred
	if sp == nil {
		return true
	}
	st.inferred = nil
	var belied bool
	if c := sp.c; c != nil {
		belied = c.acked || c.rstByServer || (c.nSynack > 0 && c.synsAfter == 0) || c.lastSYNt.After(st.detectAt)
		c.gaveUp = c.gaveUp && !belied
	} else {
		r := sp.r
		belied = !seqBefore(r.cAck, r.cMax) || r.cRtxT.After(st.detectAt)
	}
	if belied {
		p.agg.server(sp.server).detections[detGiveUp]--
	}
	return !belied
}

// onSYN runs on every SYN: the third retransmission of a TFO SYN that got
// no SYN-ACK through is where Linux detects a blackhole
// (tcp_fastopen_active_detect_blackhole at the third timeout) and pauses
// active TFO for every destination. An earlier retransmission makes the
// connection a suspect: it may give up before the third timeout.
func (p *patterns) onSYN(file int, c *conn) {
	if c.nSYN < 2 || !c.tfoAttempt() || (c.nSynack > 0 && c.synsAfter == 0) {
		return
	}
	st := p.state(file, c.client.Addr(), true)
	if c.nSYN < 4 {
		gap := c.lastSYNt.Sub(c.prevSYNt)
		st.suspect = &suspect{c: c, server: c.server, last: c.lastSYNt, until: c.lastSYNt.Add(2*gap + giveUpSlack)}
		return
	}
	if c.nSYN != 4 {
		return
	}
	if st.suspect != nil && st.suspect.c == c {
		st.suspect = nil
	}
	p.detect(st, c.server, c.lastSYNt, detSYN3)
}

// giveUpSlack: a connection gives up at its next timeout at the latest;
// the application's next connect may follow a little later.
const giveUpSlack = 500 * time.Millisecond

// onPostSuspect: a TFO connection's data went unacked after the handshake
// (its first retransmission at the head).
func (p *patterns) onPostSuspect(r *postRec, gap time.Duration) {
	p.now = r.lastPkt
	st := p.state(r.file, r.client.Addr(), true)
	st.suspect = &suspect{r: r, server: r.server, last: r.lastPkt, until: r.lastPkt.Add(2*gap + giveUpSlack)}
}

// onPostDetect: the kernel's blackhole detection after a TFO handshake:
// the third timeout of the client's data, or, when the socket is
// destroyed, a lone out-of-order FIN with no data received.
func (p *patterns) onPostDetect(r *postRec, at time.Time, how detectHow) {
	p.now = at
	st := p.state(r.file, r.client.Addr(), true)
	if st.suspect != nil && st.suspect.r == r {
		st.suspect = nil
	}
	p.detect(st, r.server, at, how)
}

// onSynack records a cookie handed out.
func (p *patterns) onSynack(file int, c *conn) {
	if c.nSynack == 1 && c.sa.fo == foCookie {
		p.now = c.sa.t
		st := p.state(file, c.client.Addr(), true)
		st.tfoDests[c.server.Addr()] = true
		if c.first.fo == foRequest && c.fp != 0 {
			if st.grants == nil {
				st.grants = map[netip.Addr]uint64{}
			}
			st.grants[c.server.Addr()] = c.fp
		}
	}
}

// onOutcome runs when a connection is classified: the pool pattern, the
// same client's cookie accepted by some connections to a server and
// refused (and replaced) by others.
func (p *patterns) onOutcome(file int, c *conn, k Kind) {
	var bit uint8
	switch {
	case k == KindAccepted, k == KindPartial && c.first.fo == foCookie:
		bit = 1
	case k == KindRejected:
		bit = 2
	default:
		return
	}
	st := p.state(file, c.client.Addr(), true)
	if st.pool == nil {
		st.pool = map[netip.AddrPort]uint8{}
	}
	was := st.pool[c.server]
	st.pool[c.server] = was | bit
	if was != 3 && was|bit == 3 {
		p.agg.server(c.server).poolClients[file]++
	}
}

// flush records the pauses still running at the end of the capture.
func (p *patterns) flush() {
	// In a fixed order: a server keeps only maxPauses of them.
	keys := slices.SortedFunc(maps.Keys(p.clients), func(a, b clientKey) int {
		return cmp.Or(cmp.Compare(a.file, b.file), a.ip.Compare(b.ip))
	})
	for _, k := range keys {
		st := p.clients[k]
		if st.inPause && p.pauseHolds(st) && st.plain > 0 {
			p.agg.addPause(k.file, st.detectServer, Pause{Client: k.ip.String(),
				Start: st.detectAt, Plain: st.plain, LastPlain: st.lastPlain})
		}
	}
}
