package assertions

import (
	"net/netip"
	"testing"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/tcpmetrics"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/lab/tfocookie"
	"github.com/tfolab/tfolab/observation"
)

// Synthetic pool observations: one client, two servers with the keys S1
// and S2, packets and records as the kernel makes them.

var (
	poolSvc = netip.MustParseAddrPort("10.34.0.34:7000")
	poolCli = cli(0).Addr()
)

// synthKeys is the synthetic pool's schedule: server1 on S1, server2 on
// S2, and X, which no server holds.
func synthKeys() *tfocookie.Schedule {
	key := func(s string) tfo.Key {
		k, err := tfo.ParseKey(s)
		if err != nil {
			panic(err)
		}
		return k
	}
	return &tfocookie.Schedule{
		Keys: map[string]tfo.Key{
			"S1": key("fee67c23-e4456348-9f16fa88-0f249300"),
			"S2": key("e65d0bd8-2f668844-7970aa48-ea5c55fc"),
			"X":  key("7674871b-c7f70d05-d3796da7-e7b47034"),
		},
		Start: map[string]string{"server1": "S1", "server2": "S2"},
	}
}

type synthPool struct {
	o    *observation.Observation
	n    int
	keys *tfocookie.Schedule
}

func newSynthPool() *synthPool {
	o := observation.New("synthetic pool", lab.IPv4)
	o.Node("client").Sysctls = map[string]string{"net.ipv4.tcp_fastopen": "1"}
	o.Links["client/to-router"] = &observation.Link{Node: "client", Interface: "to-router"}
	for _, s := range []string{"server1", "server2"} {
		o.Node(s).Sysctls = map[string]string{"net.ipv4.tcp_fastopen": "2"}
		o.Links[s+"/to-router"] = &observation.Link{Node: s, Interface: "to-router"}
		o.Services = append(o.Services, observation.Service{Name: s, Node: s, Addr: poolSvc})
	}
	return &synthPool{o: o, keys: synthKeys()}
}

// cookieOf is the cookie the named key makes for the client.
func (p *synthPool) cookieOf(key string) []byte {
	return tfocookie.Make(p.keys.Keys[key].Primary, poolCli, poolSvc.Addr())
}

// conn adds connection n: its SYN (a cookie request when cookie is nil),
// the server's SYN-ACK (acking the data when accepted, carrying issued),
// the records of both ends, and the counters that move.
func (p *synthPool) conn(server string, cookie []byte, accepted bool, issued []byte) {
	local := netip.AddrPortFrom(poolCli, uint16(40000+p.n))
	at := t0.Add(time.Duration(p.n) * time.Second)
	p.n++
	fo := &capture.FastOpenOption{Cookie: cookie}
	payload := 0
	if cookie != nil {
		payload = 21
	}
	syn := capture.Packet{Time: at, Src: local, Dst: poolSvc, Flags: capture.FlagSYN, Seq: 100, Length: payload, FastOpen: fo}
	ack := uint32(101)
	if accepted {
		ack += uint32(payload)
	}
	var sfo *capture.FastOpenOption
	if issued != nil {
		sfo = &capture.FastOpenOption{Cookie: issued}
	}
	synack := capture.Packet{Time: at.Add(time.Millisecond), Src: poolSvc, Dst: local, Flags: capture.FlagSYN | capture.FlagACK, Seq: 900, Ack: ack, FastOpen: sfo}
	for _, l := range []string{"client/to-router", server + "/to-router"} {
		p.o.Links[l].Packets = append(p.o.Links[l].Packets, syn, synack)
	}
	c := observation.Conn{Client: "client", Node: "client", Service: "server1", Mode: "sendto", Local: local, Remote: poolSvc,
		Request: []byte("x\n"), Response: []byte("x\n"), SynData: accepted, Start: at,
		ClientLink: "client/to-router", ServerLink: server + "/to-router", Served: server}
	switch {
	case cookie == nil:
		c.ClientFail = tfo.ClientFailNoCookie
	case !accepted:
		c.ClientFail = tfo.ClientFailDataNotAcked
	}
	p.o.Conns = append(p.o.Conns, c)
	opts := uint8(0x07)
	if accepted {
		opts = 0xa7
	}
	for i := range p.o.Services {
		if p.o.Services[i].Node == server {
			p.o.Services[i].Accepted = append(p.o.Services[i].Accepted, observation.Accepted{Remote: local, SynData: accepted, Options: opts, Time: at.Add(time.Millisecond)})
		}
	}
	count := func(node, name string) { p.o.Node(node).Counters["TcpExt."+name]++ }
	for _, n := range []string{"client", "server1", "server2"} {
		for _, name := range lab.FastOpenCounters {
			p.o.Node(n).Counters["TcpExt."+name] += 0
		}
	}
	switch {
	case cookie == nil:
		count(server, lab.TCPFastOpenCookieReqd)
	case accepted:
		count(server, lab.TCPFastOpenPassive)
		count("client", lab.TCPFastOpenActive)
	default:
		count(server, lab.TCPFastOpenPassiveFail)
		count("client", lab.TCPFastOpenActiveFail)
	}
	if issued != nil {
		p.o.Node("client").Metrics = []tcpmetrics.Entry{{Dst: poolSvc.Addr(), FastOpenCookie: issued}}
	}
}

// unsyncRun is what two servers with keys of their own make of four
// connections: server1 issues its cookie, server2 refuses it and issues
// its own, server2 then accepts it, server1 refuses it.
func unsyncRun() *synthPool {
	p := newSynthPool()
	c1, c2 := p.cookieOf("S1"), p.cookieOf("S2")
	p.conn("server1", nil, false, c1)
	p.conn("server2", c1, false, c2)
	p.conn("server2", c2, true, nil)
	p.conn("server1", c2, false, c1)
	return p
}

// verdicts judges o by ms, the verdicts by name.
func verdicts(o *observation.Observation, ms ...types.GomegaMatcher) map[string]Verdict {
	out := map[string]Verdict{}
	for _, v := range Judge(o, ms) {
		out[v.Name] = v
	}
	return out
}

func poolModelMatchers(keys *tfocookie.Schedule) []types.GomegaMatcher {
	return []types.GomegaMatcher{
		PoolOutcomes(keys), CookiesIssued(keys), CookieCachePerDestination(),
		PoolCounters(keys), AcceptedIffIssuer(), LandedOn(2),
	}
}

func TestPoolModelUnsynchronised(t *testing.T) {
	p := unsyncRun()
	model := PoolModel(p.o, p.keys)
	want := []Outcome{OutcomeCookieIssued, OutcomeRefused, OutcomeAcceptedPrimary, OutcomeRefused}
	for i, pc := range model {
		if pc.Why != "" || pc.Predicted != want[i] {
			t.Errorf("connection %d: predicted %s (%s), want %s", i, pc.Predicted, pc.Why, want[i])
		}
	}
	for name, v := range verdicts(p.o, poolModelMatchers(p.keys)...) {
		if !v.Pass {
			t.Errorf("%s failed on a consistent observation:\n%s", name, v.Evidence)
		}
	}
	if got := PoolShares(p.o, CarriedCookie(p.o)); got.Conns != 3 || got.Accepted != 1 {
		t.Errorf("share %s, want 1 of 3", got)
	}
}

// TestPoolModelBackupKey: a change at a mark is in force from the mark's
// time on: server1 moves to "S2,S1", so S1's cookie is then accepted as
// its backup key and S2's as its primary; before the mark S2's is refused.
func TestPoolModelBackupKey(t *testing.T) {
	p := newSynthPool()
	p.keys.Changes = []tfocookie.Change{{Mark: "overlap", Set: map[string]string{"server1": "S2,S1"}}}
	c1, c2 := p.cookieOf("S1"), p.cookieOf("S2")
	p.conn("server1", c2, false, c1)
	p.o.Marks = append(p.o.Marks, observation.Mark{Name: "overlap", At: t0.Add(1500 * time.Millisecond)})
	p.conn("server1", c2, false, nil)
	p.conn("server1", c1, true, c2)
	p.conn("server1", c2, true, nil)
	// Connection n starts at +n s: 0 and 1 before the mark, 2 and 3 after.
	want := []Outcome{OutcomeRefused, OutcomeRefused, OutcomeAcceptedBackup, OutcomeAcceptedPrimary}
	for i, pc := range PoolModel(p.o, p.keys) {
		if pc.Why != "" || pc.Predicted != want[i] {
			t.Errorf("connection %d (%s, keys %q): predicted %s (%s), want %s", i, pc.CookieKey, pc.List, pc.Predicted, pc.Why, want[i])
		}
	}
}

// TestPoolModelWithoutSchedule: a cookie with no schedule to judge it by
// is a connection the model cannot predict, and the keyed matchers fail.
func TestPoolModelWithoutSchedule(t *testing.T) {
	p := unsyncRun()
	model := PoolModel(p.o, nil)
	if model[0].Why != "" || model[0].Predicted != OutcomeCookieIssued {
		t.Errorf("the cookie request: %s (%s)", model[0].Predicted, model[0].Why)
	}
	if model[1].Why == "" {
		t.Errorf("a cookie without a schedule predicted as %s", model[1].Predicted)
	}
	for _, name := range []string{"pool outcomes", "cookies issued", "pool counters"} {
		if v := verdicts(p.o, poolModelMatchers(nil)...)[name]; v.Pass {
			t.Errorf("%s passed without a schedule", name)
		}
	}
}

// TestPoolModelRejects: each matcher catches the break it is for.
func TestPoolModelRejects(t *testing.T) {
	for _, c := range []struct {
		name   string
		break_ func(p *synthPool)
		reject []string
	}{
		{"server2 accepts server1's cookie (keys shared after all)", func(p *synthPool) {
			o := p.o
			o.Conns[1].SynData = true
			o.Conns[1].ClientFail = tfo.ClientFailUnspec
		}, []string{"pool outcomes", "accepted iff cached cookie's issuer"}},
		{"server2 issues a cookie of a key not in the plan", func(p *synthPool) {
			bad := p.cookieOf("X")
			for _, l := range p.o.Links {
				for k := range l.Packets {
					if l.Packets[k].IsSYNACK() && l.Packets[k].Dst.Port() == 40001 {
						l.Packets[k].FastOpen = &capture.FastOpenOption{Cookie: bad}
					}
				}
			}
		}, []string{"cookies issued", "client cookie cache"}},
		{"server1 counted no PassiveFail", func(p *synthPool) {
			p.o.Node("server1").Counters["TcpExt."+lab.TCPFastOpenPassiveFail] = 0
		}, []string{"pool counters"}},
		{"every connection landed on server1", func(p *synthPool) {
			for i := range p.o.Conns {
				p.o.Conns[i].Served = "server1"
			}
		}, []string{"pool spread"}},
	} {
		p := unsyncRun()
		c.break_(p)
		v := verdicts(p.o, poolModelMatchers(p.keys)...)
		for _, name := range c.reject {
			if v[name].Pass {
				t.Errorf("%s: %s passed", c.name, name)
			}
		}
	}
}

// TestListenOverflowCounts: per server, min(landed, queue) accepted and
// max(0, landed-queue) overflows, whatever the landing.
func TestListenOverflowCounts(t *testing.T) {
	p := newSynthPool()
	c := p.cookieOf("S1")
	p.conn("server1", c, true, nil)
	p.conn("server1", c, false, nil)
	p.conn("server1", c, false, nil)
	p.conn("server2", c, true, nil)
	for i := range p.o.Conns {
		p.o.Conns[i].Label = "burst"
	}
	p.o.Node("server1").Counters["TcpExt."+lab.TCPFastOpenListenOverflow] = 2
	m := ListenOverflow("burst", 1)
	if v := verdicts(p.o, m)["listen overflow"]; !v.Pass {
		t.Errorf("consistent burst rejected:\n%s", v.Evidence)
	}
	p.o.Node("server1").Counters["TcpExt."+lab.TCPFastOpenListenOverflow] = 1
	if v := verdicts(p.o, m)["listen overflow"]; v.Pass {
		t.Error("an overflow count off by one passed")
	}
}
