package scenarios

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/probe"
	"github.com/tfolab/tfolab/lab/tcpmetrics"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/topology"
)

// TestTFOCookieVectors: TFOCookie is SipHash-2-4 over saddr‖daddr, stored
// little-endian. Key 00..0f over the bytes 00..07 (IPv4) and 00..1f
// (IPv6) are the reference test vectors, as `openssl mac -macopt
// hexkey:000102030405060708090a0b0c0d0e0f -macopt size:8 SipHash` prints
// them; that the kernel makes its cookies this way the pool specs check
// on the wire (cookies issued).
func TestTFOCookieVectors(t *testing.T) {
	var key [16]byte
	for i := range key {
		key[i] = byte(i)
	}
	seq := func(from, n int) netip.Addr {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(from + i)
		}
		a, _ := netip.AddrFromSlice(b)
		return a
	}
	for _, c := range []struct {
		client, server netip.Addr
		want           string
	}{
		{seq(0, 4), seq(4, 4), "6224939a79f5f593"},
		{seq(0, 16), seq(16, 16), "ce7cf2722f512771"},
	} {
		if got := hex.EncodeToString(assertions.TFOCookie(key, c.client, c.server)); got != c.want {
			t.Errorf("TFOCookie(%s, %s) = %s, want %s", c.client, c.server, got, c.want)
		}
	}
}

// TestPoolKeys: the lab's keys parse and differ, and every plan of the
// pool catalogue names only keys it has.
func TestPoolKeys(t *testing.T) {
	seen := map[[16]byte]string{}
	for name, k := range poolKeys {
		if k.Primary == ([16]byte{}) {
			t.Errorf("key %s does not parse", name)
		}
		if other, dup := seen[k.Primary]; dup {
			t.Errorf("keys %s and %s are the same", name, other)
		}
		seen[k.Primary] = name
	}
	plans := []assertions.KeyPlan{}
	for r := rotationRight; r <= rollingStaged; r++ {
		plans = append(plans, rotationPlan(r, poolServers(3)))
	}
	for n := 2; n <= 4; n++ {
		plans = append(plans, poolPlan(poolServers(n), func(s string) string { return "S" + strings.TrimPrefix(s, "server") }))
	}
	for _, p := range plans {
		if err := p.Validate(); err != nil {
			t.Error(err)
		}
	}
	for _, s := range Pools() {
		for node, kv := range s.Sysctls {
			if v, ok := kv[keySysctl]; ok {
				if _, err := tfo.ParseKey(v); err != nil {
					t.Errorf("%s: %s's key %q: %v", s.Name, node, v, err)
				}
			}
		}
	}
}

// TestPoolMutantsNameTheirExpectations: every expectation a pool mutant
// names exists in its scenario, so a renamed matcher fails here, not in a
// root-only run.
func TestPoolMutantsNameTheirExpectations(t *testing.T) {
	for _, m := range poolMutants() {
		names := map[string]bool{}
		for _, e := range m.Scenario.Expect {
			names[assertions.NameOf(e)] = true
		}
		for _, want := range m.RejectedBy {
			if !names[want] {
				t.Errorf("mutant %q names expectation %q, which %s lacks (has %v)", m.Breakage, want, m.Scenario.Name, names)
			}
		}
	}
}

// TestRotationPlans: a rotation is safe when, at every step, every server
// accepts every key a server issues now or issued just before (the cookies
// clients hold). The one done right and the staged one are; the others are
// not.
func TestRotationPlans(t *testing.T) {
	servers := poolServers(3)
	primaries := func(lists map[string]string) []string {
		var out []string
		for _, s := range servers {
			out = append(out, strings.Split(lists[s], ",")[0])
		}
		return out
	}
	for r := rotationRight; r <= rollingStaged; r++ {
		p := rotationPlan(r, servers)
		lists := map[string]string{}
		for n, l := range p.Start {
			lists[n] = l
		}
		safe := true
		for _, c := range p.Changes {
			held := primaries(lists)
			for n, l := range c.Set {
				lists[n] = l
			}
			for _, k := range append(held, primaries(lists)...) {
				for _, s := range servers {
					if !strings.Contains(","+lists[s]+",", ","+k+",") {
						safe = false
					}
				}
			}
		}
		wantSafe := r == rotationRight || r == rollingStaged
		if safe != wantSafe {
			t.Errorf("rotation %s: safe = %t, want %t", r, safe, wantSafe)
		}
	}
}

// Synthetic pool observations: one client, two servers with the keys S1
// and S2, packets and records as the kernel makes them.

var (
	poolT0    = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	poolSvc   = netip.MustParseAddrPort("10.34.0.34:7000")
	poolCli   = netip.MustParseAddr("10.34.1.2")
	synthPlan = func() assertions.KeyPlan {
		return poolPlan(poolServers(2), func(s string) string { return "S" + strings.TrimPrefix(s, "server") })
	}
)

type synthPool struct {
	o    *observation.Observation
	n    int
	plan assertions.KeyPlan
}

func newSynthPool() *synthPool {
	o := observation.New("synthetic pool", lab.IPv4)
	o.Node("client").Sysctls = map[string]string{"net.ipv4.tcp_fastopen": "1"}
	o.Links["client/to-router"] = &observation.Link{Node: "client", Interface: "to-router"}
	for _, s := range poolServers(2) {
		o.Node(s).Sysctls = map[string]string{"net.ipv4.tcp_fastopen": "2"}
		o.Links[s+"/to-router"] = &observation.Link{Node: s, Interface: "to-router"}
		o.Services = append(o.Services, observation.Service{Name: s, Node: s, Addr: poolSvc})
	}
	return &synthPool{o: o, plan: synthPlan()}
}

// cookieOf is the cookie server's planned key makes for the client.
func (p *synthPool) cookieOf(server string) []byte {
	k, _ := p.plan.Key(p.plan.Start[server])
	return assertions.TFOCookie(k.Primary, poolCli, poolSvc.Addr())
}

// conn adds connection n: its SYN (a cookie request when cookie is nil),
// the server's SYN-ACK (acking the data when accepted, carrying issued),
// the records of both ends, and the counters that move.
func (p *synthPool) conn(server string, cookie []byte, accepted bool, issued []byte) {
	local := netip.AddrPortFrom(poolCli, uint16(40000+p.n))
	at := poolT0.Add(time.Duration(p.n) * time.Second)
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
	c1, c2 := p.cookieOf("server1"), p.cookieOf("server2")
	p.conn("server1", nil, false, c1)
	p.conn("server2", c1, false, c2)
	p.conn("server2", c2, true, nil)
	p.conn("server1", c2, false, c1)
	return p
}

func judge(t *testing.T, o *observation.Observation, ms ...types.GomegaMatcher) map[string]assertions.Verdict {
	t.Helper()
	out := map[string]assertions.Verdict{}
	for _, v := range assertions.Judge(o, ms) {
		out[v.Name] = v
	}
	return out
}

func poolModelMatchers(plan assertions.KeyPlan) []types.GomegaMatcher {
	return []types.GomegaMatcher{
		assertions.PoolOutcomes(&plan), assertions.CookiesIssued(plan), assertions.CookieCachePerDestination(),
		assertions.PoolCounters(&plan), assertions.AcceptedIffIssuer(), assertions.LandedOn(2),
	}
}

func TestPoolModelUnsynchronised(t *testing.T) {
	p := unsyncRun()
	model := assertions.PoolModel(p.o, &p.plan)
	want := []assertions.Outcome{assertions.OutcomeCookieIssued, assertions.OutcomeRefused, assertions.OutcomeAcceptedPrimary, assertions.OutcomeRefused}
	for i, pc := range model {
		if pc.Why != "" || pc.Predicted != want[i] {
			t.Errorf("connection %d: predicted %s (%s), want %s", i, pc.Predicted, pc.Why, want[i])
		}
	}
	for name, v := range judge(t, p.o, poolModelMatchers(p.plan)...) {
		if !v.Pass {
			t.Errorf("%s failed on a consistent observation:\n%s", name, v.Evidence)
		}
	}
	if got := assertions.PoolShares(p.o, assertions.CarriedCookie(p.o)); got.Conns != 3 || got.Accepted != 1 {
		t.Errorf("share %s, want 1 of 3", got)
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
			x := poolKeys["X"]
			bad := assertions.TFOCookie(x.Primary, poolCli, poolSvc.Addr())
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
		v := judge(t, p.o, poolModelMatchers(p.plan)...)
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
	c := p.cookieOf("server1")
	p.conn("server1", c, true, nil)
	p.conn("server1", c, false, nil)
	p.conn("server1", c, false, nil)
	p.conn("server2", c, true, nil)
	for i := range p.o.Conns {
		p.o.Conns[i].Label = "burst"
	}
	p.o.Node("server1").Counters["TcpExt."+lab.TCPFastOpenListenOverflow] = 2
	m := assertions.ListenOverflow("burst", 1)
	if v := judge(t, p.o, m)["listen overflow"]; !v.Pass {
		t.Errorf("consistent burst rejected:\n%s", v.Evidence)
	}
	p.o.Node("server1").Counters["TcpExt."+lab.TCPFastOpenListenOverflow] = 1
	if v := judge(t, p.o, m)["listen overflow"]; v.Pass {
		t.Error("an overflow count off by one passed")
	}
}

// TestDiagnose tells a server with TFO off from an option stripped on the
// way, by the captures on both ends.
func TestDiagnose(t *testing.T) {
	src := netip.AddrPortFrom(poolCli, 50000)
	req := &capture.FastOpenOption{}
	build := func(serverSeesOption bool) *observation.Observation {
		o := observation.New("probe", lab.IPv4)
		synAt := func(d time.Duration, fo *capture.FastOpenOption) capture.Packet {
			return capture.Packet{Time: poolT0.Add(d), Src: src, Dst: poolSvc, Flags: capture.FlagSYN, FastOpen: fo}
		}
		plainSynack := capture.Packet{Time: poolT0.Add(time.Millisecond), Src: poolSvc, Dst: src, Flags: capture.FlagSYN | capture.FlagACK}
		serverFO := req
		if !serverSeesOption {
			serverFO = nil
		}
		o.Links["client/to-router"] = &observation.Link{Node: "client", Packets: []capture.Packet{synAt(0, req), plainSynack}}
		o.Links["server2/to-router"] = &observation.Link{Node: "server2", Packets: []capture.Packet{synAt(time.Microsecond, serverFO), plainSynack}}
		o.Probes = []probe.Result{{Target: poolSvc, Source: src, Answered: true}}
		return o
	}
	if got, server := assertions.Diagnose(build(true), 0); got != assertions.CauseServerOff || server != "server2" {
		t.Errorf("option reached the server: %s (%s)", got, server)
	}
	if got, _ := assertions.Diagnose(build(false), 0); got != assertions.CauseStrippedOnWay {
		t.Errorf("option stripped: %s", got)
	}
}

// TestPoolCatalogue: the pool scenarios are bounded, labelled, and keep
// their expectations apart by name.
func TestPoolCatalogue(t *testing.T) {
	for _, s := range Pools() {
		if !s.HasLabel("pool") {
			t.Errorf("%s: no pool label", s.Name)
		}
		if s.Timeline == nil || s.Timeout <= 0 || s.Timeout > 30*time.Second {
			t.Errorf("%s: timeline bound %v", s.Name, s.Timeout)
		}
		if s.Topology.Name == topology.Routed().Name {
			t.Errorf("%s: not a pool topology", s.Name)
		}
		names := map[string]bool{}
		for _, e := range s.Expect {
			n := assertions.NameOf(e)
			if names[n] {
				t.Errorf("%s: two expectations named %q", s.Name, n)
			}
			names[n] = true
		}
	}
	router, _ := topology.Pool(2).Node(topology.Router)
	if router.Sysctls["net.ipv4.fib_multipath_hash_policy"] != "3" || router.Sysctls["net.ipv4.fib_multipath_hash_fields"] != "55" {
		t.Error("the pool router's ECMP hash must cover the 5-tuple (policy 3, fields 0x37)")
	}
}

// TestPoolFigures measures what docs/pools.md reports: run as root with
// TFOLAB_POOL_FIGURES=<runs> (go test ./scenarios -run TestPoolFigures -v).
// Every run must pass its own expectations; the tables add them up.
func TestPoolFigures(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("TFOLAB_POOL_FIGURES"))
	if runs <= 0 {
		t.Skip("set TFOLAB_POOL_FIGURES=<runs> to measure the pool figures (root)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	run := func(s Scenario) *observation.Observation {
		t.Helper()
		l := lab.New()
		defer func() {
			if err := l.Close(); err != nil {
				t.Errorf("%s: teardown: %v", s.Name, err)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), s.ConnBudget()+15*time.Second)
		defer cancel()
		o, err := Run(ctx, l, s)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		for _, v := range assertions.Failed(assertions.Judge(o, s.Expect)) {
			t.Errorf("%s: %s failed:\n%s", s.Name, v.Name, v.Evidence)
		}
		return o
	}
	var b strings.Builder
	b.WriteString("\n| scenario | accepted in the SYN, each run | mean | model |\n| --- | --- | --- | --- |\n")
	share := func(s Scenario, model string) {
		var parts []string
		acc, all := 0, 0
		for range runs {
			o := run(s)
			sh := assertions.PoolShares(o, assertions.CarriedCookie(o))
			if sh.Conns == 0 { // no-cookie modes: every data SYN counts
				sh = assertions.PoolShares(o, nil)
			}
			parts = append(parts, fmt.Sprintf("%d/%d", sh.Accepted, sh.Conns))
			acc, all = acc+sh.Accepted, all+sh.Conns
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f%% | %s |\n", s.Name, strings.Join(parts, " "), 100*float64(acc)/float64(max(all, 1)), model)
	}
	for _, fam := range []topology.Family{topology.IPv4, topology.IPv6} {
		for n := 2; n <= 4; n++ {
			share(PoolUnsyncKeys(n, fam), fmt.Sprintf("1/%d = %.0f%%", n, 100/float64(n)))
		}
		share(PoolSyncKeys(fam, false), "100%")
		share(PoolSyncKeys(fam, true), "100%")
		share(PoolNoCookie(fam), "100%")
	}
	share(PoolNoCookieClientOnly(), "0%")

	for r := rotationRight; r <= rollingStaged; r++ {
		s := PoolRotation(r)
		plan := rotationPlan(r, poolServers(3))
		type row struct{ conns, accepted, alt, refused int }
		rows := map[string]*row{}
		var order []string
		for range runs {
			o := run(s)
			for _, pc := range assertions.PoolModel(o, &plan) {
				label := o.Conns[pc.Index].Label
				if label == "learn" {
					continue
				}
				if rows[label] == nil {
					rows[label] = &row{}
					order = append(order, label)
				}
				w := rows[label]
				w.conns++
				switch pc.Predicted {
				case assertions.OutcomeAcceptedPrimary:
					w.accepted++
				case assertions.OutcomeAcceptedBackup:
					w.accepted++
					w.alt++
				case assertions.OutcomeRefused:
					w.refused++
				}
			}
		}
		fmt.Fprintf(&b, "\n%s (%d runs, %d connections per step per client)\n\n| step | keys (server1, server2, server3) | accepted | of which backup key | refused |\n| --- | --- | --- | --- | --- |\n", s.Name, runs, rotationPerStep)
		lists := map[string]string{}
		for k, v := range plan.Start {
			lists[k] = v
		}
		for _, label := range order {
			for _, c := range plan.Changes {
				if c.Mark == label {
					for k, v := range c.Set {
						lists[k] = v
					}
				}
			}
			w := rows[label]
			fmt.Fprintf(&b, "| %s | %s, %s, %s | %d/%d | %d | %d |\n", label, lists["server1"], lists["server2"], lists["server3"], w.accepted, w.conns, w.alt, w.refused)
		}
	}

	b.WriteString("\n| servers | TFO queue | burst | landed per server | ListenOverflow per server | accepted in the SYN | runs |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range []struct{ n, q, burst int }{{1, 1, 6}, {1, 2, 6}, {1, 4, 6}, {2, 2, 8}} {
		seen := map[string]int{}
		var order []string
		for range runs {
			o := run(PoolOverflow(c.n, c.q, c.burst))
			var landed, over []string
			sh := assertions.PoolShares(o, func(i int) bool { return o.Conns[i].Label == "burst" })
			for _, srv := range poolServers(c.n) {
				v, _ := o.Counters(srv).Get(lab.TCPFastOpenListenOverflow)
				landed = append(landed, strconv.Itoa(sh.Servers[srv].Landed))
				over = append(over, strconv.FormatInt(v, 10))
			}
			row := fmt.Sprintf("| %d | %d | %d | %s | %s | %d |", c.n, c.q, c.burst, strings.Join(landed, ", "), strings.Join(over, ", "), sh.Accepted)
			if seen[row] == 0 {
				order = append(order, row)
			}
			seen[row]++
		}
		for _, row := range order {
			fmt.Fprintf(&b, "%s %d |\n", row, seen[row])
		}
	}
	t.Log(b.String())
}
