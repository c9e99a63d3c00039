package diagnose

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
)

// The pre-pass reads the start of both captures to tell which is the
// client side and how far apart their clocks are.
const (
	prepassPackets = 200_000
	prepassConns   = 4096
	// pairWindow is how long a finished connection waits for its copy
	// from the other capture (in the merged timeline).
	pairWindow = idleTimeout + 30*time.Second
	// maxServerPorts bounds the server ports remembered from the server
	// side (to tell "never arrived" from "not captured there").
	maxServerPorts = 1024
)

type prepassConn struct {
	isn  uint32
	port uint16
	last time.Time // the last SYN: the one both ends see when the path lets it through
}

// prepass reads the start of path: its connections' sides and keys.
func prepass(ctx context.Context, path string, idx int) ([3]int, []prepassConn, error) {
	s, err := openSource(path, idx, func(string) {})
	if err != nil {
		return [3]int{}, nil, err
	}
	defer s.close()
	var conns []prepassConn
	pat := newPatterns(newAggregator(nil), func(string) {})
	tr := newTracker(s, pat, func(c *conn) {
		if len(conns) < prepassConns {
			conns = append(conns, prepassConn{c.isn, c.server.Port(), c.lastSYNt})
		}
	}, nil)
	for i := 0; i < prepassPackets && len(conns) < prepassConns; i++ {
		if i&1023 == 0 && ctx.Err() != nil {
			return [3]int{}, nil, fmt.Errorf("diagnose %s: %w", path, ctx.Err())
		}
		p, ok := s.next()
		if !ok {
			break
		}
		tr.handle(p)
	}
	tr.flush()
	return tr.votes, conns, nil
}

// clockOffset is the median of (server side − client side) over the
// connections both pre-passes saw, and how many those were.
func clockOffset(cl, sv []prepassConn) (time.Duration, int) {
	type key struct {
		isn  uint32
		port uint16
	}
	seen := map[key]time.Time{}
	for _, c := range cl {
		seen[key{c.isn, c.port}] = c.last
	}
	var d []time.Duration
	for _, s := range sv {
		if t, ok := seen[key{s.isn, s.port}]; ok {
			d = append(d, s.last.Sub(t))
		}
	}
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)/2], len(d)
}

// coverage counts the client side's connections the server side should
// have seen (to a port it captured, while it was capturing) and how many
// it did.
func coverage(cl, sv []prepassConn, offset time.Duration) (cand, hit int) {
	type key struct {
		isn  uint32
		port uint16
	}
	if len(sv) == 0 {
		return 0, 0
	}
	ports := map[uint16]bool{}
	seen := map[key]bool{}
	first, last := sv[0].last, sv[0].last
	for _, s := range sv {
		ports[s.port] = true
		seen[key{s.isn, s.port}] = true
		if s.last.Before(first) {
			first = s.last
		}
		if s.last.After(last) {
			last = s.last
		}
	}
	first, last = first.Add(-offset), last.Add(-offset)
	for _, c := range cl {
		if !ports[c.port] || c.last.Before(first) || c.last.After(last) {
			continue
		}
		cand++
		if seen[key{c.isn, c.port}] {
			hit++
		}
	}
	return cand, hit
}

// partialWarning says that the server side lacks half the client's
// connections or more.
func partialWarning(server string, hit, cand int) string {
	return fmt.Sprintf("%s holds only %d of the %d client-side connections to the ports it captured: it covers only some of the servers behind the address (a pool, a load balancer); the connections it lacks were judged from the client side alone", server, hit, cand)
}

type pending struct {
	c        *conn
	deadline time.Time
}

// joiner pairs the two captures' copies of a connection by client ISN and
// server port (or by ISN alone when only one candidate has it: a NAT that
// rewrites the server port).
type joiner struct {
	byISN [2]map[uint32][]pending
	n     int
	// pair folds a matched pair (client copy, server copy); single an
	// unmatched copy.
	pair    func(cl, sv *conn)
	single  func(c *conn)
	client  int // the client side's file index
	matched int
	// adj puts a capture's time on the merged timeline.
	adj func(file int, t time.Time) time.Time
}

// isnOnlySlack is how far apart (on the merged timeline) the last SYNs of
// two copies matched by ISN alone may be.
const isnOnlySlack = 3 * time.Second

func (j *joiner) add(c *conn, now time.Time) {
	other := 1 - c.file
	cands := j.byISN[other][c.isn]
	pick := -1
	for i, p := range cands {
		if p.c.server.Port() == c.server.Port() {
			pick = i
			break
		}
	}
	if pick < 0 && len(cands) == 1 {
		d := j.adj(c.file, c.lastSYNt).Sub(j.adj(other, cands[0].c.lastSYNt))
		if d.Abs() <= isnOnlySlack {
			pick = 0
		}
	}
	if pick >= 0 {
		o := cands[pick].c
		if len(cands) == 1 {
			delete(j.byISN[other], c.isn)
		} else {
			j.byISN[other][c.isn] = slices.Delete(cands, pick, pick+1)
		}
		j.n--
		j.matched++
		if c.file == j.client {
			j.pair(c, o)
		} else {
			j.pair(o, c)
		}
		return
	}
	if j.byISN[c.file] == nil {
		j.byISN[c.file] = map[uint32][]pending{}
	}
	j.byISN[c.file][c.isn] = append(j.byISN[c.file][c.isn], pending{c, now.Add(pairWindow)})
	j.n++
}

// expire folds, unmatched, the copies that waited past their deadline
// (all of them when now is zero).
func (j *joiner) expire(now time.Time) {
	if j.n == 0 {
		return
	}
	var due []*conn
	for f := range j.byISN {
		for isn, ps := range j.byISN[f] {
			keep := ps[:0]
			for _, p := range ps {
				if now.IsZero() || now.After(p.deadline) {
					due = append(due, p.c)
				} else {
					keep = append(keep, p)
				}
			}
			if len(keep) == 0 {
				delete(j.byISN[f], isn)
			} else {
				j.byISN[f][isn] = keep
			}
		}
	}
	// Folded in a fixed order, not the map's (see byStart).
	slices.SortFunc(due, byStart)
	for _, c := range due {
		j.n--
		j.single(c)
	}
}

// runPair diagnoses two captures of the same traffic, read merged in time.
func runPair(ctx context.Context, srcs []*source, paths []string, agg *aggregator, rep *Report, warn func(string)) error {
	var votes [2][3]int
	var pre [2][]prepassConn
	for i, p := range paths {
		v, c, err := prepass(ctx, p, i)
		if err != nil {
			return err
		}
		votes[i], pre[i] = v, c
	}
	score := func(i int) int { return votes[i][sideClient] - votes[i][sideServer] }
	cl := 0
	if score(1) > score(0) {
		cl = 1
	}
	sv := 1 - cl
	offset, n := clockOffset(pre[cl], pre[sv])
	if n > 0 {
		rep.ClockOffsetMS = ms(offset)
	}
	// Which file is which holds for every connection once the pre-pass
	// has seen them share some; otherwise each connection's own evidence
	// decides (the files may be unrelated).
	role := [2]side{}
	if n > 0 {
		role[cl], role[sv] = sideClient, sideServer
	}
	// A server side that lacks half the client's connections or more
	// captured one server of several: what it lacks landed elsewhere, not
	// in a hole.
	cand, hit := coverage(pre[cl], pre[sv], offset)
	partial := n > 0 && cand > 0 && hit*2 <= cand
	if partial {
		warn(partialWarning(paths[sv], hit, cand))
	}
	// elsewhere counts the client copies without a server copy that were
	// answered all the same (by a server this capture does not see).
	elsewhere := 0
	adj := func(i int, t time.Time) time.Time {
		if i == sv {
			return t.Add(-offset)
		}
		return t
	}

	pats := [2]*patterns{}
	pats[cl] = newPatterns(agg, warn)
	// The server side's own pause and pool records would land under its
	// (possibly NATed) address; the client side's are the ones reported.
	pats[sv] = newPatterns(newAggregator(nil), warn)
	nat := map[netip.AddrPort]netip.AddrPort{}
	svPorts := map[uint16]bool{}
	svSum := srcs[sv].sum

	j := &joiner{client: cl, adj: adj}
	j.pair = func(c, s *conn) {
		c.role, s.role = sideClient, sideServer
		o := classifyPair(c, s)
		pats[cl].onOutcome(c.file, c, o.kind)
		if s.server != c.server {
			nat[s.server] = c.server
		}
		agg.fold(c.server, c, o, true, s.server)
		if c.anyOpt && s.anyOpt {
			agg.server(c.server).optIntact++
		}
	}
	j.single = func(c *conn) {
		o := c.classify()
		key := c.server
		if c.file == sv {
			if k, ok := nat[c.server]; ok {
				key = k
			}
		} else if role[sv] == sideServer && svPorts[c.server.Port()] && !svSum.First.IsZero() &&
			!adj(sv, svSum.First).After(c.first.t) && !adj(sv, svSum.Last).Before(c.lastSYNt) {
			switch {
			case c.nSynack > 0 || c.acked:
				elsewhere++ // answered: it reached a server, another one
			case c.maxData > 0 && !partial:
				// The server side captured that port all along, and none
				// of this connection's SYNs reached it.
				o = droppedOutcome(c, o)
			}
		}
		pats[c.file].onOutcome(c.file, c, o.kind)
		agg.fold(key, c, o, false, c.server)
	}
	var now time.Time
	trs := [2]*tracker{}
	for i, s := range srcs {
		trs[i] = newTracker(s, pats[i], func(c *conn) {
			s.sum.Conns++
			if i == sv && len(svPorts) < maxServerPorts {
				svPorts[c.server.Port()] = true
			}
			j.add(c, now)
		}, func(_ int, p *capture.Packet) {
			if i == sv {
				return // attributed under the client side's view only
			}
			agg.server(p.Src).orphans++
		})
		trs[i].forced = role[i]
		if i == sv && role[sv] == sideServer {
			continue // after the handshake, the client side's copy tells
		}
		trs[i].postDone = func(r *postRec, delivered bool) {
			key := r.server
			if i == sv {
				if k, ok := nat[r.server]; ok {
					key = k
				}
			}
			agg.foldAfter(key, r, delivered)
		}
	}

	var heads [2]rawPacket
	var ok [2]bool
	for i, s := range srcs {
		heads[i], ok[i] = s.next()
	}
	var lastExpire time.Time
	for n := 0; ok[0] || ok[1]; n++ {
		if n&1023 == 0 && ctx.Err() != nil {
			return fmt.Errorf("diagnose %s and %s: %w", paths[0], paths[1], ctx.Err())
		}
		i := 0
		switch {
		case !ok[0]:
			i = 1
		case ok[1] && adj(1, heads[1].ci.Timestamp).Before(adj(0, heads[0].ci.Timestamp)):
			i = 1
		}
		if t := adj(i, heads[i].ci.Timestamp); t.After(now) {
			now = t
		}
		trs[i].handle(heads[i])
		heads[i], ok[i] = srcs[i].next()
		if now.Sub(lastExpire) > time.Second {
			lastExpire = now
			j.expire(now)
		}
	}
	for i := range trs {
		trs[i].flush()
	}
	j.expire(time.Time{})
	pats[cl].flush()
	for i, s := range srcs {
		s.sum.Side = sideOfFile(trs[i].votes)
		if role[i] != sideUnknown && (s.sum.Side == "unknown" || s.sum.Side == "mixed") {
			s.sum.Side = role[i].String() + " (assumed)"
		}
	}
	rep.Matched = j.matched
	if !partial && n > 0 && elsewhere > 0 && elsewhere >= j.matched {
		warn(partialWarning(paths[sv], j.matched, j.matched+elsewhere))
	}
	if j.matched == 0 && srcs[0].sum.SYNs > 0 && srcs[1].sum.SYNs > 0 {
		warn(fmt.Sprintf("%s and %s share no connection (no client ISN and server port in common): captures of unrelated hosts or times? Each was diagnosed on its own", paths[0], paths[1]))
	}
	return nil
}

// droppedOutcome turns a client-side connection none of whose SYNs the
// server side saw into a dropped one.
func droppedOutcome(c *conn, o outcome) outcome {
	o.kind = KindDropped
	o.ev = c.ev(c.evFirst, c.evLast)
	if c.nSynack > 0 {
		o.cost = c.ansSYNt.Sub(c.first.t)
	} else {
		o.cost = c.lastSYNt.Sub(c.first.t)
	}
	o.hasCost, o.costRTT = true, false
	return o
}

// classifyPair sums up a connection from both ends: what the client sent
// against what reached the server, what the server sent against what
// reached the client.
func classifyPair(cl, sv *conn) outcome {
	o := cl.classify()
	if !cl.tfoAttempt() {
		return o
	}
	fallbackCost := func() {
		if cl.nSynack > 0 {
			o.cost = cl.ansSYNt.Sub(cl.first.t)
		} else {
			o.cost = cl.lastSYNt.Sub(cl.first.t)
		}
		o.hasCost, o.costRTT = true, false
	}
	merge := func(parts ...[]evLine) []evLine {
		var out []evLine
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	switch {
	case sv.nSynack > cl.nSynack && (cl.nSynack == 0 || cl.synsAtSA > 1):
		o.kind = KindSynackLost
		o.ev = merge(cl.ev(cl.evFirst), sv.ev(sv.evSA), cl.ev(cl.evLast))
		fallbackCost()
	case cl.maxData > 0 && sv.maxData == 0:
		o.kind = KindDropped
		o.ev = merge(cl.ev(cl.evFirst), sv.ev(sv.evFirst))
		fallbackCost()
	case cl.anyOpt && !sv.anyOpt && sv.nSYN >= cl.nSYN:
		o.kind = KindStripped
		o.ev = merge(cl.ev(cl.evFirst), sv.ev(sv.evFirst, sv.evSA))
		o.hasCost, o.costRTT = false, false
		if rtt, ok := cl.rtt(); ok {
			o.cost, o.hasCost = rtt, true
		} else {
			o.costRTT = true
		}
	case cl.anyOpt && !sv.anyOpt && sv.nSYN > 0:
		o.kind = KindOptionDropped
		o.ev = merge(cl.ev(cl.evFirst), sv.ev(sv.evFirst))
		fallbackCost()
	case o.kind == KindRefusedNoOption:
		// The option arrived: the server itself refused.
		o.kind = KindRefusedByServer
		o.ev = merge(o.ev, sv.ev(sv.evFirst))
	}
	return o
}
