package assertions

// Matchers for server pools behind ECMP: which server each connection
// landed on (observation.Conn.Served), which key made the cookie it
// carried, and what the kernel does with it. The expectations derive every
// connection's outcome from what that connection observed (its landing,
// its cookie, the keys the plan says the landing server held), never from
// fixed counts that a different 5-tuple hash would break.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/probe"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/observation"
)

// TCPIOptTFOChild is TCPI_OPT_TFO_CHILD (include/uapi/linux/tcp.h): a
// passive TFO child, i.e. the socket was created from a SYN the server
// fast-opened. Seen as 0x80 in tcpi_options on 6.18 (0xa7 with SYN_DATA).
const TCPIOptTFOChild = 0x80

// TFO server bits of net.ipv4.tcp_fastopen (ip-sysctl.rst).
const (
	tfoServerEnable   = 0x2
	tfoServerNoCookie = 0x200
	tfoClientNoCookie = 0x4
)

// TFOCookie is the cookie a Linux server with key (16 raw bytes, as in
// tfo.Key.Primary) hands a client at address client for its address server:
// __tcp_fastopen_cookie_gen_cipher() computes SipHash-2-4 keyed with the
// key read as two little-endian 64-bit words over saddr‖daddr as they sit
// in the IP header (8 bytes for IPv4, 32 for IPv6), and stores the hash
// little-endian (cpu_to_le64) as an 8-byte cookie. Ports play no part: a
// client gets the same cookie from every server that holds the same key,
// whatever connection it makes.
func TFOCookie(key [16]byte, client, server netip.Addr) []byte {
	client, server = client.Unmap(), server.Unmap()
	msg := append(client.AsSlice(), server.AsSlice()...)
	h := sipHash24(binary.LittleEndian.Uint64(key[0:]), binary.LittleEndian.Uint64(key[8:]), msg)
	return binary.LittleEndian.AppendUint64(nil, h)
}

// sipHash24 is SipHash-2-4 (Aumasson and Bernstein), as lib/siphash.c has it.
func sipHash24(k0, k1 uint64, msg []byte) uint64 {
	v0, v1 := k0^0x736f6d6570736575, k1^0x646f72616e646f6d
	v2, v3 := k0^0x6c7967656e657261, k1^0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13) ^ v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16) ^ v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21) ^ v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17) ^ v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	compress := func(m uint64) {
		v3 ^= m
		round()
		round()
		v0 ^= m
	}
	n := len(msg)
	for ; len(msg) >= 8; msg = msg[8:] {
		compress(binary.LittleEndian.Uint64(msg))
	}
	var last [8]byte
	copy(last[:], msg)
	last[7] = byte(n)
	compress(binary.LittleEndian.Uint64(last[:]))
	v2 ^= 0xff
	for range 4 {
		round()
	}
	return v0 ^ v1 ^ v2 ^ v3
}

// KeyPlan is which TFO keys each server of a pool holds over a timeline:
// named keys, each server's key list at the start ("A", or "B,A" for
// primary B and backup A), and changes at named marks of the timeline. The
// scenario applies the plan (sysctls, listener keys, writes at its marks)
// and the expectations judge by the same plan, so the two cannot drift;
// a deployment mistake (one server left with its own key) changes what is
// applied, not the plan, and the expectations catch it.
type KeyPlan struct {
	// Keys are the named keys; only their Primary is used.
	Keys map[string]tfo.Key
	// Start is each server's key list at the start, by names.
	Start map[string]string
	// Changes happen in order; each is in force from its mark on.
	Changes []KeyChange
}

// KeyChange sets the key lists of some servers at the mark called Mark;
// the others keep theirs.
type KeyChange struct {
	Mark string
	Set  map[string]string
}

// Validate checks that every key list names known keys, one or two of them.
func (p KeyPlan) Validate() error {
	check := func(where, node, list string) error {
		if _, err := p.Key(list); err != nil {
			return fmt.Errorf("key plan: %s: %s: %w", where, node, err)
		}
		return nil
	}
	for n, l := range p.Start {
		if err := check("start", n, l); err != nil {
			return err
		}
	}
	for _, c := range p.Changes {
		if c.Mark == "" {
			return fmt.Errorf("key plan: a change without a mark")
		}
		for n, l := range c.Set {
			if err := check(c.Mark, n, l); err != nil {
				return err
			}
		}
	}
	return nil
}

// Key is the tfo.Key (primary and optional backup) a key list stands for.
func (p KeyPlan) Key(list string) (tfo.Key, error) {
	names := strings.Split(list, ",")
	if len(names) < 1 || len(names) > 2 {
		return tfo.Key{}, fmt.Errorf("key list %q: want \"primary\" or \"primary,backup\"", list)
	}
	var out tfo.Key
	for i, n := range names {
		k, ok := p.Keys[strings.TrimSpace(n)]
		if !ok {
			return tfo.Key{}, fmt.Errorf("key list %q: no key %q", list, n)
		}
		if i == 0 {
			out.Primary = k.Primary
		} else {
			b := k.Primary
			out.Backup = &b
		}
	}
	return out, nil
}

// Sysctl is the net.ipv4.tcp_fastopen_key value for a key list.
func (p KeyPlan) Sysctl(list string) (string, error) {
	k, err := p.Key(list)
	if err != nil {
		return "", err
	}
	return k.String(), nil
}

// listsAt returns each server's key list in force at t: the start, then
// every change whose mark is at or before t.
func (p KeyPlan) listsAt(o *observation.Observation, t time.Time) map[string]string {
	out := map[string]string{}
	for n, l := range p.Start {
		out[n] = l
	}
	for _, c := range p.Changes {
		m, ok := o.MarkOf(c.Mark, 0)
		if !ok || m.At.After(t) {
			break
		}
		for n, l := range c.Set {
			out[n] = l
		}
	}
	return out
}

// keyNamed names the plan key that made cookie for (client, server), "" if none.
func (p KeyPlan) keyNamed(cookie []byte, client, server netip.Addr) string {
	names := poolSorted(p.Keys)
	for _, n := range names {
		if bytes.Equal(TFOCookie(p.Keys[n].Primary, client, server), cookie) {
			return n
		}
	}
	return ""
}

// Outcome is what the kernel does with one connection's SYN on the server
// it lands on, as the pool model predicts it.
type Outcome int

const (
	// OutcomeNone: no TFO at all (plain SYN, server TFO off, or data
	// without a cookie at a server that wants one): a plain SYN-ACK.
	OutcomeNone Outcome = iota
	// OutcomeCookieIssued: a cookie request; the SYN-ACK carries the
	// server's cookie (CookieReqd +1).
	OutcomeCookieIssued
	// OutcomeRequestUnanswered: a cookie request the server counts but does
	// not answer (TFO off: CookieReqd +1 only).
	OutcomeRequestUnanswered
	// OutcomeAcceptedPrimary: the cookie was made with the server's primary
	// key: the data is accepted in the SYN, the SYN-ACK has no cookie.
	OutcomeAcceptedPrimary
	// OutcomeAcceptedBackup: made with its backup key: accepted, and the
	// SYN-ACK carries the primary key's cookie (PassiveAltKey +1).
	OutcomeAcceptedBackup
	// OutcomeRefused: made with neither key: PassiveFail +1, the SYN-ACK
	// acks only the SYN and carries the server's cookie; the client's data
	// follows the handshake.
	OutcomeRefused
	// OutcomeNoCookieMode: the server accepts without a cookie (0x200):
	// a child for any SYN with data or a TFO option, no cookie back.
	OutcomeNoCookieMode
)

func (x Outcome) String() string {
	return [...]string{"no TFO", "cookie issued", "request counted, unanswered", "accepted (primary key)",
		"accepted (backup key), new cookie", "refused, new cookie", "accepted without cookie (0x200)"}[x]
}

// accepts reports whether the server creates a TFO child.
func (x Outcome) accepts() bool {
	return x == OutcomeAcceptedPrimary || x == OutcomeAcceptedBackup || x == OutcomeNoCookieMode
}

// issues reports whether the SYN-ACK carries a cookie.
func (x Outcome) issues() bool {
	return x == OutcomeCookieIssued || x == OutcomeAcceptedBackup || x == OutcomeRefused
}

// PoolConn is one connection as the pool model sees it.
type PoolConn struct {
	Index  int
	Client string // the client's node
	Served string // the server node it landed on
	// SYN is the client's first SYN as the server saw it (the client's
	// capture when no server saw it).
	SYN *capture.Packet
	// SynAck is the server's first SYN-ACK to it, as sent.
	SynAck *capture.Packet
	// CookieKey names the plan key that made the SYN's cookie ("" if none
	// did, or no cookie); List is the landing server's key list then.
	CookieKey string
	List      string
	Predicted Outcome
	// Why is set when the model cannot predict (no capture, no key plan).
	Why string
}

// syndata reports whether the SYN carried payload.
func (pc PoolConn) syndata() bool { return pc.SYN != nil && pc.SYN.Length > 0 }

// PoolModel predicts every connection's outcome from its landing, its SYN
// and the plan (nil when no key is involved: no-cookie modes, TFO off).
// Each server's TFO mode comes from its recorded net.ipv4.tcp_fastopen.
func PoolModel(o *observation.Observation, plan *KeyPlan) []PoolConn {
	out := make([]PoolConn, 0, len(o.Conns))
	for i, c := range o.Conns {
		pc := PoolConn{Index: i, Client: c.Node, Served: c.Served}
		side := AtServer
		if c.Served == "" {
			side, pc.Why = AtClient, "no server's capture saw its SYN"
		}
		for _, p := range o.ConnPackets(i, side) {
			switch {
			case pc.SYN == nil && p.IsSYN() && p.Src == c.Local:
				pc.SYN = &p
			case pc.SynAck == nil && p.IsSYNACK() && p.Dst == c.Local:
				pc.SynAck = &p
			}
		}
		if pc.SYN == nil && pc.Why == "" {
			pc.Why = "no SYN captured"
		}
		if pc.Why != "" {
			out = append(out, pc)
			continue
		}
		mode, err := nodeTFOMode(o, c.Served)
		if err != nil {
			pc.Why = err.Error()
			out = append(out, pc)
			continue
		}
		fo := pc.SYN.FastOpen
		switch {
		case mode&tfoServerEnable == 0:
			pc.Predicted = OutcomeNone
			if fo != nil && fo.IsRequest() {
				pc.Predicted = OutcomeRequestUnanswered
			}
		case mode&tfoServerNoCookie != 0:
			// tcp_try_fastopen: goto fastopen for any SYN with data or an
			// option, before any cookie is looked at.
			pc.Predicted = OutcomeNone
			if fo != nil || pc.syndata() {
				pc.Predicted = OutcomeNoCookieMode
			}
		case fo == nil:
			pc.Predicted = OutcomeNone
		case fo.IsRequest():
			pc.Predicted = OutcomeCookieIssued
		case plan == nil:
			pc.Why = "a cookie, but the scenario has no key plan"
		default:
			lists := plan.listsAt(o, c.Start)
			list, ok := lists[c.Served]
			if !ok {
				pc.Why = fmt.Sprintf("the key plan has no keys for %s", c.Served)
				break
			}
			pc.List = list
			pc.CookieKey = plan.keyNamed(fo.Cookie, c.Local.Addr(), c.Remote.Addr())
			names := strings.Split(list, ",")
			switch {
			case pc.CookieKey != "" && pc.CookieKey == names[0]:
				pc.Predicted = OutcomeAcceptedPrimary
			case pc.CookieKey != "" && len(names) == 2 && pc.CookieKey == names[1]:
				pc.Predicted = OutcomeAcceptedBackup
			default:
				pc.Predicted = OutcomeRefused
			}
		}
		out = append(out, pc)
	}
	return out
}

// nodeTFOMode is node's net.ipv4.tcp_fastopen as the observation recorded it.
func nodeTFOMode(o *observation.Observation, node string) (int, error) {
	n, ok := o.Nodes[node]
	if !ok {
		return 0, fmt.Errorf("no record of node %q", node)
	}
	v, ok := n.Sysctls["net.ipv4.tcp_fastopen"]
	if !ok {
		return 0, fmt.Errorf("node %s: net.ipv4.tcp_fastopen not recorded", node)
	}
	mode, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("node %s: net.ipv4.tcp_fastopen %q: %w", node, v, err)
	}
	return mode, nil
}

// poolTable renders the model's view, one line per connection, with the
// offending one marked.
func poolTable(o *observation.Observation, model []PoolConn, mark int) string {
	var b strings.Builder
	b.WriteString("   conn  client   served    SYN                       keys    predicted                            got\n")
	for _, pc := range model {
		c := o.Conns[pc.Index]
		prefix := "   "
		if pc.Index == mark {
			prefix = ">> "
		}
		syn := "(none)"
		if pc.SYN != nil {
			syn = describeTFO(pc.SYN.FastOpen)
			if pc.CookieKey != "" {
				syn += " (" + pc.CookieKey + ")"
			}
			syn += fmt.Sprintf(" +%dB", pc.SYN.Length)
		}
		pred := pc.Predicted.String()
		if pc.Why != "" {
			pred = "? " + pc.Why
		}
		got := "data not acked"
		if c.SynData {
			got = "syn data acked"
		}
		if pc.SynAck != nil && pc.SynAck.FastOpen != nil {
			got += ", " + describeTFO(pc.SynAck.FastOpen)
		}
		if c.Failed() {
			got += ", error: " + c.Error
		}
		fmt.Fprintf(&b, "%s%-5d %-8s %-9s %-25s %-7s %-36s %s\n", prefix, pc.Index, c.Node, pc.Served, syn, pc.List, pred, got)
	}
	return b.String()
}

func describeTFO(fo *capture.FastOpenOption) string {
	switch {
	case fo == nil:
		return "no TFO option"
	case fo.IsRequest():
		return "cookie request"
	}
	return fmt.Sprintf("cookie %x", fo.Cookie)
}

// acceptedOn finds the record the server node kept of connection c: the
// first one from c's address accepted at or after c started.
func acceptedOn(o *observation.Observation, c observation.Conn) (observation.Accepted, bool) {
	var best observation.Accepted
	found := false
	for _, svc := range o.Services {
		if svc.Node != c.Served {
			continue
		}
		for _, a := range svc.Accepted {
			if a.Remote != c.Local || a.Time.Before(c.Start) {
				continue
			}
			if !found || a.Time.Before(best.Time) {
				best, found = a, true
			}
		}
	}
	return best, found
}

// PoolServerAccepted expects the record of the server the connection landed
// on (not the service it was addressed to: in a pool they share the
// address) to say its SYN data was accepted (want) or not, and to carry
// TCPI_OPT_TFO_CHILD exactly when it was.
func PoolServerAccepted(want bool) ConnCheck {
	desc := "the server it landed on accepted the SYN's data (SYN_DATA and TFO_CHILD in tcpi_options)"
	if !want {
		desc = "the server it landed on did not accept data in the SYN (no SYN_DATA, no TFO_CHILD)"
	}
	return ConnCheck{
		desc: desc,
		check: func(o *observation.Observation, i int) (bool, string) {
			c := o.Conns[i]
			if c.Served == "" {
				return false, "no server's capture saw its SYN"
			}
			a, ok := acceptedOn(o, c)
			if !ok {
				return false, fmt.Sprintf("%s has no record of a connection from %s", c.Served, c.Local)
			}
			child := a.Options&TCPIOptTFOChild != 0
			if a.SynData != want || child != want {
				return false, fmt.Sprintf("%s's accepted socket from %s: SYN_DATA=%t, tcpi_options=0x%02x (TFO_CHILD=%t)", c.Served, a.Remote, a.SynData, a.Options, child)
			}
			return true, ""
		},
	}
}

// ServerTFOChild expects the served connection's accepted socket to carry
// TCPI_OPT_TFO_CHILD (want) or not, whatever its SYN data: a 0x200 server
// makes a TFO child of a cookie request too.
func ServerTFOChild(want bool) ConnCheck {
	desc := "the accepted socket is a passive TFO child (TCPI_OPT_TFO_CHILD)"
	if !want {
		desc = "the accepted socket is not a TFO child (no TCPI_OPT_TFO_CHILD)"
	}
	return ConnCheck{
		desc: desc,
		check: func(o *observation.Observation, i int) (bool, string) {
			c := o.Conns[i]
			a, ok := acceptedOn(o, c)
			if !ok {
				return false, fmt.Sprintf("server %q has no record of a connection from %s", c.Served, c.Local)
			}
			if got := a.Options&TCPIOptTFOChild != 0; got != want {
				return false, fmt.Sprintf("%s: tcpi_options=0x%02x", c.Served, a.Options)
			}
			return true, ""
		},
	}
}

// ConnsFrom applies checks to every connection from index first on. With
// first 1 it is "every connection after the first" (the first asked for a
// cookie).
func ConnsFrom(first int, checks ...ConnCheck) obsMatcher {
	name := fmt.Sprintf("connections from %d", first)
	if first == 1 {
		name = "every connection after the first"
	}
	var descs []string
	for _, c := range checks {
		descs = append(descs, c.desc)
	}
	return obsMatcher{
		name: name,
		desc: fmt.Sprintf("%s: %s", name, strings.Join(descs, "; ")),
		check: func(o *observation.Observation) (bool, string) {
			if len(o.Conns) <= first {
				return false, fmt.Sprintf("the workload made %d connections", len(o.Conns))
			}
			for i := first; i < len(o.Conns); i++ {
				for _, c := range checks {
					if ok, detail := c.check(o, i); !ok {
						return false, fmt.Sprintf("connection %d (served by %s): %s: %s\n%s", i, o.Conns[i].Served, c.desc, detail, o.ConnSummary())
					}
				}
			}
			return true, ""
		},
	}
}

// LandedOn expects the connections to have landed on at least n distinct
// servers, and every one to have been seen by some server: without a
// spread a pool scenario proves nothing about the pool.
func LandedOn(n int) obsMatcher {
	return obsMatcher{
		name: "pool spread",
		desc: fmt.Sprintf("the connections landed on at least %d servers, each seen by one", n),
		check: func(o *observation.Observation) (bool, string) {
			sh := PoolShares(o, nil)
			for i, c := range o.Conns {
				if c.Served == "" {
					return false, fmt.Sprintf("connection %d (%s -> %s): no server's capture saw its SYN", i, c.Local, c.Remote)
				}
			}
			if len(sh.Servers) < n {
				return false, fmt.Sprintf("landed on %d: %s", len(sh.Servers), sh)
			}
			return true, ""
		},
	}
}

// Share is how a pool served a run's connections: per server, how many
// landed there and how many of those had their SYN data accepted.
type Share struct {
	// Conns and Accepted count the connections considered (those whose
	// SYN carried a cookie, or all when no key is involved).
	Conns, Accepted int
	Servers         map[string]ServerShare
}

// ServerShare is one server's part of a Share.
type ServerShare struct{ Landed, Accepted int }

// String renders the share as "9/30 accepted (30%); server1 3/11, ...".
func (s Share) String() string {
	var parts []string
	for _, n := range poolSorted(s.Servers) {
		parts = append(parts, fmt.Sprintf("%s %d/%d", n, s.Servers[n].Accepted, s.Servers[n].Landed))
	}
	pct := 0.0
	if s.Conns > 0 {
		pct = 100 * float64(s.Accepted) / float64(s.Conns)
	}
	return fmt.Sprintf("%d/%d accepted (%.0f%%); %s", s.Accepted, s.Conns, pct, strings.Join(parts, ", "))
}

// PoolShares measures the acceptance share of the connections select
// admits (nil: every connection).
func PoolShares(o *observation.Observation, selectConn func(i int) bool) Share {
	s := Share{Servers: map[string]ServerShare{}}
	for i, c := range o.Conns {
		if selectConn != nil && !selectConn(i) {
			continue
		}
		s.Conns++
		if c.SynData {
			s.Accepted++
		}
		if c.Served == "" {
			continue
		}
		ss := s.Servers[c.Served]
		ss.Landed++
		if c.SynData {
			ss.Accepted++
		}
		s.Servers[c.Served] = ss
	}
	return s
}

// CarriedCookie selects, for PoolShares, the connections whose first SYN
// (on the client's side) carried a cookie.
func CarriedCookie(o *observation.Observation) func(i int) bool {
	return func(i int) bool {
		syns := clientSYNs(o, i)
		return len(syns) > 0 && syns[0].FastOpen != nil && !syns[0].FastOpen.IsRequest()
	}
}

// PoolOutcomes expects every connection to fare as the pool model
// predicts from its landing, its cookie and the plan's keys on that server
// then: accepted in the SYN (SYN-ACK acks ISN+1+len, SYN_DATA on both
// ends, TFO_CHILD on the server) exactly when the cookie was made with
// the server's primary or backup key, the SYN-ACK carrying a cookie
// exactly when the model says the server issues one; a refused connection
// still gets its response, its data after the handshake (client_fail =
// data not acked).
func PoolOutcomes(plan *KeyPlan) obsMatcher {
	return obsMatcher{
		name: "pool outcomes",
		desc: "every connection fares as its landing server's keys predict: accepted iff its cookie was made with that server's primary or backup key, a new cookie iff refused or made with the backup key",
		check: func(o *observation.Observation) (bool, string) {
			model := PoolModel(o, plan)
			if len(model) == 0 {
				return false, "the workload made no connection"
			}
			for _, pc := range model {
				if why := outcomeMismatch(o, pc); why != "" {
					return false, fmt.Sprintf("connection %d: %s\n%s", pc.Index, why, poolTable(o, model, pc.Index))
				}
			}
			return true, ""
		},
	}
}

// outcomeMismatch says how connection pc contradicts its prediction ("" if
// it does not).
func outcomeMismatch(o *observation.Observation, pc PoolConn) string {
	if pc.Why != "" {
		return "cannot predict: " + pc.Why
	}
	c := o.Conns[pc.Index]
	if c.Failed() {
		return "failed: " + c.Error
	}
	if pc.SynAck == nil {
		return "no SYN-ACK captured on " + c.ServerLink
	}
	x := pc.Predicted
	synLen := uint32(pc.SYN.Length)
	acked := pc.SynAck.Ack == pc.SYN.Seq+1+synLen && synLen > 0
	wantAcked := x.accepts() && synLen > 0
	if acked != wantAcked {
		return fmt.Sprintf("%s predicted, but the SYN-ACK acks %d (ISN %d, %d bytes of SYN data)", x, pc.SynAck.Ack, pc.SYN.Seq, synLen)
	}
	if c.SynData != wantAcked {
		return fmt.Sprintf("%s predicted, but the client's tcpi SYN_DATA=%t", x, c.SynData)
	}
	fo := pc.SynAck.FastOpen
	hasCookie := fo != nil && !fo.IsRequest()
	if hasCookie != x.issues() {
		return fmt.Sprintf("%s predicted, but the SYN-ACK has %s", x, describeTFO(fo))
	}
	a, ok := acceptedOn(o, c)
	if !ok {
		return fmt.Sprintf("%s has no record of a connection from %s", c.Served, c.Local)
	}
	if child := a.Options&TCPIOptTFOChild != 0; child != x.accepts() || a.SynData != wantAcked {
		return fmt.Sprintf("%s predicted, but %s's accepted socket has tcpi_options 0x%02x (SYN_DATA=%t)", x, c.Served, a.Options, a.SynData)
	}
	if pc.syndata() && !wantAcked && c.ClientFail != tfo.ClientFailDataNotAcked {
		return fmt.Sprintf("%s predicted, but tcpi_fastopen_client_fail is %s, want %s", x, c.ClientFail, tfo.ClientFailDataNotAcked)
	}
	if ok, why := replied(c, c.Request); !ok {
		return why
	}
	return ""
}

// CookiesIssued expects every cookie a pool server's SYN-ACK carried to be
// the one the plan's primary key on that server (at that moment) makes for
// the client and the service address: SipHash-2-4 of the addresses
// (TFOCookie). A server left with a key of its own fails it.
func CookiesIssued(plan KeyPlan) obsMatcher {
	return obsMatcher{
		name: "cookies issued",
		desc: "every cookie a server issued is SipHash-2-4(its planned primary key, client address, service address)",
		check: func(o *observation.Observation) (bool, string) {
			n := 0
			for _, key := range o.LinkNames() {
				l := o.Links[key]
				if _, planned := plan.Start[l.Node]; !planned {
					continue
				}
				for k, p := range l.Packets {
					if !p.IsSYNACK() || p.FastOpen == nil || p.FastOpen.IsRequest() {
						continue
					}
					n++
					list := plan.listsAt(o, p.Time)[l.Node]
					k0, err := plan.Key(list)
					if err != nil {
						return false, err.Error()
					}
					want := TFOCookie(k0.Primary, p.Dst.Addr(), p.Src.Addr())
					if !bytes.Equal(p.FastOpen.Cookie, want) {
						by := plan.keyNamed(p.FastOpen.Cookie, p.Dst.Addr(), p.Src.Addr())
						if by == "" {
							by = "no key of the plan"
						}
						return false, fmt.Sprintf("%s sent cookie %x (made with %s), want %x (its primary key %s of %q)\n%s",
							l.Node, p.FastOpen.Cookie, by, want, strings.Split(list, ",")[0], list, listPackets(l.Packets, k, key))
					}
				}
			}
			if n == 0 {
				return false, "no server issued a cookie"
			}
			return true, ""
		},
	}
}

// PoolCounters expects every pool server's TFO counters, and every client's,
// to have moved exactly as the model's per-connection outcomes add up:
// CookieReqd per request, Passive per child, PassiveFail per refusal,
// PassiveAltKey per backup-key acceptance; client Active per SYN whose data
// was accepted and ActiveFail per SYN whose data was not.
func PoolCounters(plan *KeyPlan) obsMatcher {
	return obsMatcher{
		name: "pool counters",
		desc: "each server's CookieReqd, Passive, PassiveFail, PassiveAltKey and each client's Active, ActiveFail add up the predicted outcomes of the connections it saw",
		check: func(o *observation.Observation) (bool, string) {
			model := PoolModel(o, plan)
			want := map[string]map[string]int64{}
			add := func(node, name string, d int64) {
				if want[node] == nil {
					want[node] = map[string]int64{lab.TCPFastOpenCookieReqd: 0, lab.TCPFastOpenPassive: 0, lab.TCPFastOpenPassiveFail: 0, lab.TCPFastOpenPassiveAltKey: 0}
				}
				want[node][name] += d
			}
			for _, svc := range o.Services {
				add(svc.Node, lab.TCPFastOpenPassive, 0)
			}
			clients := map[string]map[string]int64{}
			for _, pc := range model {
				if pc.Why != "" {
					return false, fmt.Sprintf("connection %d: cannot predict: %s\n%s", pc.Index, pc.Why, poolTable(o, model, pc.Index))
				}
				if clients[pc.Client] == nil {
					clients[pc.Client] = map[string]int64{lab.TCPFastOpenActive: 0, lab.TCPFastOpenActiveFail: 0}
				}
				switch pc.Predicted {
				case OutcomeCookieIssued, OutcomeRequestUnanswered:
					add(pc.Served, lab.TCPFastOpenCookieReqd, 1)
				case OutcomeAcceptedPrimary:
					add(pc.Served, lab.TCPFastOpenPassive, 1)
				case OutcomeAcceptedBackup:
					add(pc.Served, lab.TCPFastOpenPassive, 1)
					add(pc.Served, lab.TCPFastOpenPassiveAltKey, 1)
				case OutcomeRefused:
					add(pc.Served, lab.TCPFastOpenPassiveFail, 1)
				case OutcomeNoCookieMode:
					add(pc.Served, lab.TCPFastOpenPassive, 1)
					if pc.SYN.FastOpen != nil && pc.SYN.FastOpen.IsRequest() {
						add(pc.Served, lab.TCPFastOpenCookieReqd, 1)
					}
				}
				if pc.syndata() {
					if pc.Predicted.accepts() {
						clients[pc.Client][lab.TCPFastOpenActive]++
					} else {
						clients[pc.Client][lab.TCPFastOpenActiveFail]++
					}
				}
			}
			for n, w := range clients {
				want[n] = w
			}
			var bad []string
			for _, node := range poolSorted(want) {
				got := o.Counters(node)
				for _, name := range poolSorted(want[node]) {
					v, ok := got.Get(name)
					if !ok || v != want[node][name] {
						bad = append(bad, fmt.Sprintf("  %s %s: got %+d, want %+d", node, name, v, want[node][name]))
					}
				}
			}
			if len(bad) == 0 {
				return true, ""
			}
			return false, fmt.Sprintf("counters off the model:\n%s\n%s%s", strings.Join(bad, "\n"), poolTable(o, model, -1), o.CounterSummary())
		},
	}
}

// PoolCounterTotal expects counter name to have moved by want in all over
// nodes (a pool's servers).
func PoolCounterTotal(nodes []string, name string, want int64) obsMatcher {
	return obsMatcher{
		name: "pool " + strings.TrimPrefix(name, "TCPFastOpen"),
		desc: fmt.Sprintf("%s %+d in all over %s", name, want, strings.Join(nodes, ", ")),
		check: func(o *observation.Observation) (bool, string) {
			var total int64
			var parts []string
			for _, n := range nodes {
				v, ok := o.Counters(n).Get(name)
				if !ok {
					return false, fmt.Sprintf("%s: %s not recorded", n, name)
				}
				total += v
				parts = append(parts, fmt.Sprintf("%s %+d", n, v))
			}
			if total != want {
				return false, fmt.Sprintf("got %+d (%s)\n%s", total, strings.Join(parts, ", "), o.CounterSummary())
			}
			return true, ""
		},
	}
}

// CookieCachePerDestination expects each client to behave as one cookie
// per destination (tcp_metrics): a connection asks for a cookie while none
// is cached, otherwise its SYN carries exactly the cookie of the latest
// SYN-ACK (from any server of the pool) that carried one, which replaces
// the cached one; after the timeline the client's tcp_metrics holds that
// last cookie for the service address. Clients in no-cookie mode (0x4) are
// skipped.
func CookieCachePerDestination() obsMatcher {
	return obsMatcher{
		name: "client cookie cache",
		desc: "each client's SYN carries the cookie of the latest SYN-ACK that carried one (a request before any), one cookie per destination, and tcp_metrics keeps the last",
		check: func(o *observation.Observation) (bool, string) {
			byClient := map[string][]int{}
			for i, c := range o.Conns {
				byClient[c.Node] = append(byClient[c.Node], i)
			}
			for _, node := range poolSorted(byClient) {
				if mode, err := nodeTFOMode(o, node); err == nil && mode&tfoClientNoCookie != 0 {
					continue
				}
				idx := byClient[node]
				sort.SliceStable(idx, func(a, b int) bool { return o.Conns[idx[a]].Start.Before(o.Conns[idx[b]].Start) })
				var cached []byte
				for _, i := range idx {
					pkts := o.ConnPackets(i, AtClient)
					var syn, synack *capture.Packet
					for k := range pkts {
						p := &pkts[k]
						if syn == nil && p.IsSYN() && p.Src == o.Conns[i].Local {
							syn = p
						}
						if synack == nil && p.IsSYNACK() && p.Dst == o.Conns[i].Local {
							synack = p
						}
					}
					if syn == nil {
						return false, fmt.Sprintf("connection %d: no SYN on the client side", i)
					}
					fo := syn.FastOpen
					switch {
					case cached == nil && (fo == nil || !fo.IsRequest()):
						return false, fmt.Sprintf("connection %d (%s): no cookie cached, yet its SYN has %s\n%s", i, node, describeTFO(fo), listPackets(pkts, -1, o.Conns[i].ClientLink))
					case cached != nil && (fo == nil || !bytes.Equal(fo.Cookie, cached)):
						return false, fmt.Sprintf("connection %d (%s): cached cookie %x, yet its SYN has %s\n%s", i, node, cached, describeTFO(fo), listPackets(pkts, -1, o.Conns[i].ClientLink))
					}
					if synack != nil && synack.FastOpen != nil && !synack.FastOpen.IsRequest() {
						cached = synack.FastOpen.Cookie
					}
				}
				if cached != nil && len(o.Services) > 0 {
					svc := o.Services[0].Addr.Addr()
					var got []byte
					for _, e := range o.Metrics(node) {
						if e.Dst == svc {
							got = e.FastOpenCookie
						}
					}
					if !bytes.Equal(got, cached) {
						return false, fmt.Sprintf("%s's tcp_metrics holds cookie %x for %s, want the last one issued, %x\n%s", node, got, svc, cached, o.MetricsSummary())
					}
				}
			}
			return true, ""
		},
	}
}

// ListenOverflow expects the connections labelled label (a burst whose
// handshakes could not complete) to have met a TFO queue of length queue
// on every server: per server, min(landed, queue) of them accepted in the
// SYN and max(0, landed − queue) counted as TCPFastOpenListenOverflow and
// fallen back to a regular handshake (the SYN-ACK acks only the SYN and
// carries no TFO option), each still served.
func ListenOverflow(label string, queue int) obsMatcher {
	return obsMatcher{
		name: "listen overflow",
		desc: fmt.Sprintf("of the %q burst, each server took min(landed, %d) in the SYN (up to NumCPU−1 more when SYNs race on several CPUs); ListenOverflow counts the rest, which fell back to a regular handshake and were served", label, queue),
		check: func(o *observation.Observation) (bool, string) {
			idx := o.ConnsLabelled(label, 0)
			if len(idx) == 0 {
				return false, fmt.Sprintf("no %q connection was made", label)
			}
			landed, accepted := map[string]int{}, map[string]int{}
			for _, i := range idx {
				c := o.Conns[i]
				if c.Served == "" {
					return false, fmt.Sprintf("connection %d: no server's capture saw its SYN", i)
				}
				landed[c.Served]++
				var syn, synack *capture.Packet
				pkts := o.ConnPackets(i, AtServer)
				for k := range pkts {
					p := &pkts[k]
					if syn == nil && p.IsSYN() && p.Src == c.Local {
						syn = p
					}
					if synack == nil && p.IsSYNACK() && p.Dst == c.Local {
						synack = p
					}
				}
				if syn == nil || synack == nil {
					return false, fmt.Sprintf("connection %d: no SYN or SYN-ACK on %s\n%s", i, c.ServerLink, listPackets(pkts, -1, c.ServerLink))
				}
				if syn.FastOpen == nil || syn.FastOpen.IsRequest() || syn.Length == 0 {
					return false, fmt.Sprintf("connection %d: the burst SYN carries %s and %d bytes: not a TFO SYN", i, describeTFO(syn.FastOpen), syn.Length)
				}
				a, ok := acceptedOn(o, c)
				if !ok {
					return false, fmt.Sprintf("connection %d: %s has no record of it", i, c.Served)
				}
				switch {
				case c.SynData:
					accepted[c.Served]++
					if synack.Ack != syn.Seq+1+uint32(syn.Length) || a.Options&TCPIOptTFOChild == 0 {
						return false, fmt.Sprintf("connection %d: SYN data acked at the client, but the SYN-ACK acks %d (ISN %d) and tcpi_options 0x%02x", i, synack.Ack, syn.Seq, a.Options)
					}
				case synack.Ack != syn.Seq+1 || synack.FastOpen != nil || a.SynData || a.Options&TCPIOptTFOChild != 0:
					return false, fmt.Sprintf("connection %d: not accepted, but its SYN-ACK acks %d (ISN %d) with %s, server tcpi_options 0x%02x: not a plain fallback\n%s",
						i, synack.Ack, syn.Seq, describeTFO(synack.FastOpen), a.Options, listPackets(pkts, -1, c.ServerLink))
				}
				if ok, why := replied(c, c.Request); !ok {
					return false, fmt.Sprintf("connection %d: %s", i, why)
				}
			}
			// tcp_fastopen_queue_check reads the queue length without a
			// lock, and the child is counted only later, so SYNs handled at
			// the same moment on different CPUs may each find a free slot:
			// up to NumCPU−1 more than the queue may be taken (5 of 6 with a
			// queue of 4 was seen once in 20 full runs on 2 cores). Every
			// SYN is either taken or counted as an overflow, exactly.
			race := runtime.NumCPU() - 1
			var bad []string
			for _, n := range poolSorted(landed) {
				lo, hi := min(landed[n], queue), min(landed[n], queue+race)
				wantOver := int64(landed[n] - accepted[n])
				got, _ := o.Counters(n).Get(lab.TCPFastOpenListenOverflow)
				if accepted[n] < lo || accepted[n] > hi || got != wantOver {
					bad = append(bad, fmt.Sprintf("  %s: %d landed, %d accepted in the SYN (want %d to %d), ListenOverflow %+d (want the rest, %+d)", n, landed[n], accepted[n], lo, hi, got, wantOver))
				}
			}
			if len(bad) > 0 {
				return false, fmt.Sprintf("TFO queue %d:\n%s\n%s", queue, strings.Join(bad, "\n"), o.CounterSummary())
			}
			return true, ""
		},
	}
}

// ProbeCause is what the captures on both ends say about a probe's answer.
type ProbeCause string

// The causes Diagnose tells apart.
const (
	CauseOffered        ProbeCause = "the server offered a cookie and it reached the client"
	CauseServerOff      ProbeCause = "the SYN reached the server with its cookie request and the server answered without a TFO option: TFO is off on the server (or on that listener)"
	CauseStrippedOnWay  ProbeCause = "the SYN left the client with its cookie request and reached the server without it: a middlebox on the path stripped the option"
	CauseStrippedBack   ProbeCause = "the server's SYN-ACK left with a cookie and reached the client without it: a middlebox on the way back stripped the option"
	CauseRefused        ProbeCause = "the server refused the connection (RST)"
	CauseNoAnswer       ProbeCause = "no answer reached the client"
	CauseNoServerCopy   ProbeCause = "no server's capture saw the probe's SYN"
	CauseUnknownAtProbe ProbeCause = "the probe's own answer disagrees with the captures"
)

// Diagnose tells why probe i of the observation answered as it did, from
// the captures on the client's side and on the server that got the SYN,
// and names that server ("" if none saw it).
func Diagnose(o *observation.Observation, i int) (ProbeCause, string) {
	if i < 0 || i >= len(o.Probes) {
		return CauseNoAnswer, ""
	}
	r := o.Probes[i]
	client, server := probeSeen(o, r)
	switch {
	case r.RST:
		return CauseRefused, server.node
	case !r.Answered:
		return CauseNoAnswer, server.node
	case r.SupportsTFO:
		return CauseOffered, server.node
	case server.syn == nil:
		return CauseNoServerCopy, ""
	case client.syn.FastOpen != nil && server.syn.FastOpen == nil:
		return CauseStrippedOnWay, server.node
	case server.synack != nil && server.synack.FastOpen != nil && !server.synack.FastOpen.IsRequest() &&
		(client.synack == nil || client.synack.FastOpen == nil):
		return CauseStrippedBack, server.node
	case server.syn.FastOpen != nil && server.synack != nil && server.synack.FastOpen == nil:
		return CauseServerOff, server.node
	}
	return CauseUnknownAtProbe, server.node
}

// probeView is one capture's view of a probe: its packets, its SYN and the
// SYN-ACK to it.
type probeView struct {
	node, link  string
	syn, synack *capture.Packet
	packets     []capture.Packet
}

// probeSeen finds the probe on the captures: the client's side is the one
// that saw its SYN first (the SYN leaves there), the server's the one that
// saw it last; with a single capture, the server's view is empty.
func probeSeen(o *observation.Observation, r probe.Result) (client, server probeView) {
	var views []probeView
	for _, key := range o.LinkNames() {
		l := o.Links[key]
		v := probeView{node: l.Node, link: key}
		for _, p := range l.Packets {
			if (p.Src == r.Source && p.Dst == r.Target) || (p.Src == r.Target && p.Dst == r.Source) {
				v.packets = append(v.packets, p)
			}
		}
		for k := range v.packets {
			p := &v.packets[k]
			if v.syn == nil && p.IsSYN() && p.Src == r.Source {
				v.syn = p
			}
			if v.syn != nil && v.synack == nil && p.IsSYNACK() && p.Src == r.Target {
				v.synack = p
			}
		}
		if v.syn != nil {
			views = append(views, v)
		}
	}
	if len(views) == 0 {
		return probeView{}, probeView{}
	}
	sort.SliceStable(views, func(a, b int) bool { return views[a].syn.Time.Before(views[b].syn.Time) })
	client = views[0]
	if len(views) > 1 {
		server = views[len(views)-1]
	}
	return client, server
}

// ProbeSaid expects probe i to have said the server supports TFO (want) or
// not, and its captures to give cause as the reason.
func ProbeSaid(i int, want bool, cause ProbeCause) obsMatcher {
	verdict := "no"
	if want {
		verdict = "yes"
	}
	return obsMatcher{
		name: fmt.Sprintf("probe %d", i),
		desc: fmt.Sprintf("probe %d says %s: %s", i, verdict, cause),
		check: func(o *observation.Observation) (bool, string) {
			if i >= len(o.Probes) {
				return false, fmt.Sprintf("the timeline made %d probes", len(o.Probes))
			}
			r := o.Probes[i]
			got, server := Diagnose(o, i)
			if r.SupportsTFO != want || got != cause {
				return false, fmt.Sprintf("probe: %s\ncaptures (server %q): %s\n%s", r, server, got, o.PacketSummary())
			}
			return true, ""
		},
	}
}

// ProbeCookie expects probe i's cookie to be the one key makes for the
// probe's addresses: the cookie every server holding key hands out.
func ProbeCookie(i int, key tfo.Key) obsMatcher {
	return obsMatcher{
		name: fmt.Sprintf("probe %d cookie", i),
		desc: fmt.Sprintf("probe %d's cookie is SipHash-2-4(the pool's key, client, service)", i),
		check: func(o *observation.Observation) (bool, string) {
			if i >= len(o.Probes) {
				return false, fmt.Sprintf("the timeline made %d probes", len(o.Probes))
			}
			r := o.Probes[i]
			want := TFOCookie(key.Primary, r.Source.Addr(), r.Target.Addr())
			if !bytes.Equal(r.Cookie, want) {
				return false, fmt.Sprintf("probe: %s; want cookie %x", r, want)
			}
			return true, ""
		},
	}
}

// ProbeReset expects the server that got probe i's SYN to have seen an RST
// for it after its SYN-ACK (the client kernel's or the probe's own): the
// half-open connection is gone on both ends.
func ProbeReset(i int) obsMatcher {
	return obsMatcher{
		name: fmt.Sprintf("probe %d reset", i),
		desc: fmt.Sprintf("the server that answered probe %d saw an RST for it: no half-open connection is left", i),
		check: func(o *observation.Observation) (bool, string) {
			if i >= len(o.Probes) {
				return false, fmt.Sprintf("the timeline made %d probes", len(o.Probes))
			}
			r := o.Probes[i]
			_, server := probeSeen(o, r)
			if server.synack == nil {
				return false, fmt.Sprintf("no server capture saw a SYN-ACK to the probe (%s)", r)
			}
			for _, p := range server.packets {
				if p.IsRST() && p.Src == r.Source && !p.Time.Before(server.synack.Time) {
					return true, ""
				}
			}
			return false, fmt.Sprintf("no RST from %s reached %s after its SYN-ACK\n%s", r.Source, server.node, listPackets(server.packets, -1, server.link))
		},
	}
}

// poolSorted returns m's keys, sorted.
func poolSorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// AcceptedIffIssuer expects, client by client, every connection whose SYN
// carried a cookie to have had its data accepted in the SYN exactly when it
// landed on the server that issued that cookie (the server of the latest
// connection whose SYN-ACK carried one): what unsynchronised keys and a
// cache of one cookie per destination make of a pool.
func AcceptedIffIssuer() obsMatcher {
	return obsMatcher{
		name: "accepted iff cached cookie's issuer",
		desc: "a connection's cookie is accepted exactly when it lands on the server that issued the cached cookie",
		check: func(o *observation.Observation) (bool, string) {
			byClient := map[string][]int{}
			for i, c := range o.Conns {
				byClient[c.Node] = append(byClient[c.Node], i)
			}
			for _, node := range poolSorted(byClient) {
				idx := byClient[node]
				sort.SliceStable(idx, func(a, b int) bool { return o.Conns[idx[a]].Start.Before(o.Conns[idx[b]].Start) })
				issuer := ""
				for _, i := range idx {
					c := o.Conns[i]
					var syn, synack *capture.Packet
					pkts := o.ConnPackets(i, AtClient)
					for k := range pkts {
						p := &pkts[k]
						if syn == nil && p.IsSYN() && p.Src == c.Local {
							syn = p
						}
						if synack == nil && p.IsSYNACK() && p.Dst == c.Local {
							synack = p
						}
					}
					if syn != nil && syn.FastOpen != nil && !syn.FastOpen.IsRequest() {
						if want := c.Served == issuer; c.SynData != want {
							return false, fmt.Sprintf("connection %d (%s) landed on %s, cookie issued by %s: SYN data accepted %t, want %t\n%s",
								i, node, c.Served, issuer, c.SynData, want, o.ConnSummary())
						}
					}
					if synack != nil && synack.FastOpen != nil && !synack.FastOpen.IsRequest() {
						issuer = c.Served
					}
				}
			}
			return true, ""
		},
	}
}
