package diagnose

import (
	"net/netip"
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
	// A blackhole pause under way.
	inPause      bool
	detectAt     time.Time
	detectServer netip.AddrPort
	plain        int
	lastPlain    time.Time
	// pool: per server, 1 = a cookie accepted, 2 = a cookie refused and
	// replaced.
	pool map[netip.AddrPort]uint8
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
		if st.inPause {
			st.inPause = false
			if st.plain > 0 {
				p.agg.addPause(file, st.detectServer, Pause{Client: c.client.Addr().String(),
					Start: st.detectAt, End: c.first.t, Plain: st.plain, LastPlain: st.lastPlain})
			}
		}
		return
	}
	st := p.state(file, c.client.Addr(), false)
	if st == nil || !st.tfoDests[c.server.Addr()] {
		return
	}
	if st.inPause {
		c.paused, c.pauseOf = true, st.detectServer
		st.plain++
		st.lastPlain = c.first.t
		return
	}
	c.cookieUnused = true
}

// onSYN runs on every SYN: the third retransmission of a TFO SYN that got
// no SYN-ACK through is where Linux detects a blackhole
// (tcp_fastopen_active_detect_blackhole at the third timeout) and pauses
// active TFO for every destination.
func (p *patterns) onSYN(file int, c *conn) {
	if c.nSYN != 4 || !c.tfoAttempt() || (c.nSynack > 0 && c.synsAfter == 0) {
		return
	}
	st := p.state(file, c.client.Addr(), true)
	if st.inPause {
		return
	}
	c.detection = true
	st.inPause, st.detectAt, st.detectServer = true, c.lastSYNt, c.server
	st.plain, st.lastPlain = 0, time.Time{}
}

// onSynack records a cookie handed out.
func (p *patterns) onSynack(file int, c *conn) {
	if c.nSynack == 1 && c.sa.fo == foCookie {
		p.now = c.sa.t
		p.state(file, c.client.Addr(), true).tfoDests[c.server.Addr()] = true
	}
}

// onOutcome runs when a connection is classified: the pool pattern, the
// same client's cookie accepted by some connections to a server and
// refused (and replaced) by others.
func (p *patterns) onOutcome(file int, c *conn, k Kind) {
	var bit uint8
	switch k {
	case KindAccepted:
		bit = 1
	case KindRejected:
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
	for k, st := range p.clients {
		if st.inPause && st.plain > 0 {
			p.agg.addPause(k.file, st.detectServer, Pause{Client: k.ip.String(),
				Start: st.detectAt, Plain: st.plain, LastPlain: st.lastPlain})
		}
	}
}
