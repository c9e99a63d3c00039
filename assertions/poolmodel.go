package assertions

// The pool model: what the kernel of the server a connection landed on
// does with its SYN, predicted from the connection's own observation (its
// landing, its SYN, the server's recorded net.ipv4.tcp_fastopen) and the
// key schedule (tfocookie.Schedule: which keys that server held then). The
// pool matchers (pool.go, poolcookies.go) judge a run against it.

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/tfocookie"
	"github.com/tfolab/tfolab/observation"
)

// TFO server bits of net.ipv4.tcp_fastopen (ip-sysctl.rst).
const (
	tfoServerEnable   = 0x2
	tfoServerNoCookie = 0x200
	tfoClientNoCookie = 0x4
)

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
	// CookieKey names the scheduled key that made the SYN's cookie ("" if none
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
// and the key schedule (nil when no key is involved: no-cookie modes, TFO
// off; scenarios.KeyPlan.Schedule gives a scenario's). Each server's TFO
// mode comes from its recorded net.ipv4.tcp_fastopen.
func PoolModel(o *observation.Observation, keys *tfocookie.Schedule) []PoolConn {
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
		case keys == nil:
			pc.Why = "a cookie, but the scenario has no key plan"
		default:
			list, ok := listsAt(o, keys, c.Start)[c.Served]
			if !ok {
				pc.Why = fmt.Sprintf("the key plan has no keys for %s", c.Served)
				break
			}
			pc.List = list
			pc.CookieKey = keys.Issuer(fo.Cookie, c.Local.Addr(), c.Remote.Addr())
			switch tfocookie.SlotOf(list, pc.CookieKey) {
			case tfocookie.Primary:
				pc.Predicted = OutcomeAcceptedPrimary
			case tfocookie.Backup:
				pc.Predicted = OutcomeAcceptedBackup
			default:
				pc.Predicted = OutcomeRefused
			}
		}
		out = append(out, pc)
	}
	return out
}

// listsAt is each server's key list in force at t, the schedule's marks
// read off the observation.
func listsAt(o *observation.Observation, keys *tfocookie.Schedule, t time.Time) map[string]string {
	return keys.ListsAt(t, func(mark string) (time.Time, bool) {
		m, ok := o.MarkOf(mark, 0)
		return m.At, ok
	})
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
