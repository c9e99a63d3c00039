package report

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/profile"
	"github.com/tfolab/tfolab/scenarios"
	"github.com/tfolab/tfolab/topology"
)

// Synthetic observations and reports: the report's reading of behaviour,
// its Markdown and the diff, judged without root.

var t0, srv, cli = labtest.T0, labtest.Server, labtest.Client

func syn(at time.Duration, from netip.AddrPort, fo *capture.FastOpenOption) capture.Packet {
	return capture.Packet{Time: t0.Add(at), Src: from, Dst: srv, Flags: capture.FlagSYN, FastOpen: fo}
}

// dropSynData is drop-syn-data over a 50 ms RTT: a cookie request (2 RTT),
// then two connections whose SYN with data is lost: one RTO, then the
// plain handshake and the request (1 RTO + 2 RTT first byte).
func dropSynData(rtt time.Duration) *observation.Observation {
	o := observation.New("middlebox/drop-syn-data/router/ipv4/sendto", lab.IPv4)
	cookie := &capture.FastOpenOption{Cookie: []byte{1, 2, 3, 4}}
	var pkts []capture.Packet
	for i := range 3 {
		c := cli(uint16(40000 + i))
		start := time.Duration(i) * 2 * time.Second
		conn := observation.Conn{Client: "client", Node: "client", Mode: "sendto", Local: c, Remote: srv,
			Request: []byte("x\n"), Response: []byte("x\n"), Start: t0.Add(start), ClientLink: "client/to-router"}
		if i == 0 {
			pkts = append(pkts, syn(start, c, &capture.FastOpenOption{}))
			conn.FirstByte = 2 * rtt
		} else {
			pkts = append(pkts, syn(start, c, cookie), syn(start+time.Second+3*time.Millisecond, c, nil))
			conn.FirstByte = time.Second + 3*time.Millisecond + 2*rtt
		}
		o.Conns = append(o.Conns, conn)
	}
	o.Links["client/to-router"] = &observation.Link{Node: "client", Interface: "to-router", Packets: pkts}
	o.Node("client").Counters = lab.Counters{"TcpExt." + lab.TCPFastOpenActiveFail: 2, "TcpExt." + lab.TCPSynRetrans: 2, "TcpExt." + lab.TCPFastOpenActive: 0}
	o.Node("client").Sysctls = map[string]string{assertions.BlackholeTimeoutKey: "0"}
	o.SynSchedule = lab.NewSynSchedule(6, 4)
	return o
}

func TestBehaviourOfAFallback(t *testing.T) {
	b := behaviourOf(dropSynData(50*time.Millisecond), 50*time.Millisecond, "client")
	if b.Connections != 3 || b.TFOData != 0 {
		t.Errorf("connections %d, TFO data %d: want 3, 0", b.Connections, b.TFOData)
	}
	if b.Cost.Words != "1 RTO + 1 RTT" || b.Cost.RTOs != 1 || b.Cost.RTTs != 1 {
		t.Errorf("cost %+v, want 1 RTO + 1 RTT", b.Cost)
	}
	if got := b.CounterWords(); got != "client ActiveFail +2, TCPSynRetrans +2" {
		t.Errorf("counters %q", got)
	}
	if b.FirstByte == nil || b.FirstByte.Min != time.Second+103*time.Millisecond {
		t.Errorf("first byte %+v: want the two data connections only (1.103 s)", b.FirstByte)
	}
	if got := b.Blackhole.Words(); got != "off" {
		t.Errorf("blackhole %q, want off", got)
	}
	// Without an emulated RTT the cost is in RTOs alone: the 3 ms the
	// timer came late is not a cost worth a word.
	b = behaviourOf(dropSynData(100*time.Microsecond), 0, "client")
	if b.Cost.Words != "1 RTO" {
		t.Errorf("cost without RTT %q, want 1 RTO", b.Cost.Words)
	}
}

// pausesObservation is three detections with probes around each pause's
// end, at 1, 2 and 4 s.
func pausesObservation() *observation.Observation {
	o := observation.New("blackhole/as-configured/drop-tfo-replies", lab.IPv4)
	cookie := &capture.FastOpenOption{Cookie: []byte{1, 2, 3, 4}}
	var pkts []capture.Packet
	port := uint16(41000)
	add := func(label string, round int, at time.Duration, fo *capture.FastOpenOption, stalled bool) {
		c := cli(port)
		port++
		pkts = append(pkts, syn(at, c, fo))
		conn := observation.Conn{Client: "client", Node: "client", Label: label, Round: round, Local: c, Remote: srv,
			Start: t0.Add(at), ClientLink: "client/to-router", Stalled: stalled}
		if stalled {
			conn.Error = "stalled"
		}
		o.Conns = append(o.Conns, conn)
	}
	add("learn", 0, 0, &capture.FastOpenOption{}, false)
	at := time.Second
	for k, pause := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		add(observation.RoleDetect, k+1, at, cookie, false)
		det := at + 3*time.Second
		o.Marks = append(o.Marks, observation.Mark{Name: observation.MarkDetection, Round: k + 1, At: t0.Add(det)})
		add(observation.RoleProbe, k+1, det+pause-5*time.Millisecond, nil, false)
		add(observation.RoleProbe, k+1, det+pause+5*time.Millisecond, cookie, false)
		at = det + pause + time.Second
	}
	o.Links["client/to-router"] = &observation.Link{Node: "client", Interface: "to-router", Packets: pkts}
	o.Node("client").Counters = lab.Counters{"TcpExt." + lab.TCPFastOpenBlackhole: 3}
	o.Node("client").Sysctls = map[string]string{assertions.BlackholeTimeoutKey: "1"}
	return o
}

func TestBlackholePauses(t *testing.T) {
	b := behaviourOf(pausesObservation(), 0, "client")
	if got, want := b.Blackhole.Words(), "on (1 s): 3 detections, TFO pauses 1.0 s, 2.0 s, 4.0 s"; got != want {
		t.Errorf("blackhole %q, want %q", got, want)
	}
	if b.Probes != 6 || b.Connections != 4 {
		t.Errorf("probes %d, connections %d: want 6 and 4", b.Probes, b.Connections)
	}
}

// reportOf wraps scenarios in a report.
func reportOf(profileName string, ss ...Scenario) *Report {
	return &Report{Schema: SchemaVersion, Kernel: "6.18.0", LabVersion: scenarios.Version, Parallel: 14,
		Profiles:  []ProfileStamp{{Scope: "all", Files: []profile.Source{profile.NewSource(profileName, []byte(profileName))}}},
		Scenarios: ss}
}

func cookieThenData(serverTFO string, pass bool) Scenario {
	s := Scenario{Name: "baseline/routed/ipv4/sendto/cookie-then-data", Pass: pass,
		Sysctls:   map[string]map[string]string{"client": {"net.ipv4.tcp_fastopen": "1"}, "server": {"net.ipv4.tcp_fastopen": serverTFO}},
		Verdicts:  []assertions.Verdict{{Name: "connection 0", Pass: true}, {Name: "connection 1", Pass: pass}, {Name: "server counters", Pass: pass}},
		Behaviour: Behaviour{Connections: 2, TFOData: 1, Counters: map[string]map[string]int64{"server": {lab.TCPFastOpenPassive: 1}}}}
	if !pass {
		s.Behaviour.TFOData = 0
		s.Behaviour.Counters = nil
	}
	return s
}

func asConfigured(timeout string) Scenario {
	s := Scenario{Name: "blackhole/as-configured/drop-tfo-replies", Pass: true,
		Middleboxes: []string{"drop-tfo-replies"},
		Sysctls:     map[string]map[string]string{"client": {assertions.BlackholeTimeoutKey: timeout}},
		Verdicts:    []assertions.Verdict{{Name: "pauses as configured", Pass: true}}}
	if timeout == "0" {
		s.Behaviour = Behaviour{Connections: 3, Stalled: 2, Blackhole: Blackhole{Timeout: "0"}}
	} else {
		s.Behaviour = behaviourOf(pausesObservation(), 0, "client")
	}
	return s
}

// A candidate that turns server TFO off regresses, and says so.
func TestDiffServerTFOOff(t *testing.T) {
	base := reportOf("default.conf", cookieThenData("2", true), asConfigured("0"))
	cand := reportOf("server-tfo-off.conf", cookieThenData("1", false), asConfigured("0"))
	c := Diff(base, cand)
	if c.Regressed() != 2 {
		t.Fatalf("regressed %d, want 2 (connection 1, server counters)\n%s", c.Regressed(), c.Markdown())
	}
	md := c.Markdown()
	wantAll(t, "diff", md,
		"server TFO off at server (net.ipv4.tcp_fastopen 2 → 1)",
		"**baseline/routed/ipv4/sendto/cookie-then-data**: connection 1, server counters (2 of 3 expectations)",
		"TFO carried data on 0 of 2 connections; baseline: 1 of 2",
		"diff: FAIL: 2 expectations in 1 scenario",
	)
}

// A candidate that turns blackhole detection on shows the pauses, in words
// and figures, against the baseline's stalls.
func TestDiffBlackholeOn(t *testing.T) {
	base := reportOf("default.conf", asConfigured("0"))
	cand := reportOf("blackhole-on.conf", asConfigured("1"))
	c := Diff(base, cand)
	md := c.Markdown()
	wantAll(t, "diff", md,
		"blackhole detection on at client (timeout 1 s)",
		"blackhole detection on (1 s): after the drop-tfo-replies firewall TFO pauses 1.0 s, 2.0 s, 4.0 s; baseline: off: never paused, every connection stalls",
		"diff: OK",
	)
	if c.Regressed() != 0 {
		t.Errorf("regressed %d, want 0: the scenario's expectations follow the sysctl", c.Regressed())
	}
}

// Reports from two kernels diff the same way, and a report reads back.
func TestReportRoundTripAndKernels(t *testing.T) {
	base := reportOf("default.conf", cookieThenData("2", true))
	cand := reportOf("default.conf", cookieThenData("2", true))
	cand.Kernel = "6.19.1"
	dir := t.TempDir()
	if err := WriteAll(base, dir); err != nil {
		t.Fatal(err)
	}
	back, err := Read(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	c := Diff(back, cand)
	if md := c.Markdown(); !strings.Contains(md, "**Kernel 6.18.0 → 6.19.1.**") || c.Regressed() != 0 {
		t.Errorf("kernel diff:\n%s", md)
	}
	for _, f := range []string{MarkdownFile, JUnitFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, JSONFile))
	if err := os.WriteFile(filepath.Join(dir, "old.json"), []byte(strings.Replace(string(b), `"schema": 1`, `"schema": 99`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(filepath.Join(dir, "old.json")); err == nil {
		t.Error("a report of another schema was read")
	}
}

func TestMarkdownTable(t *testing.T) {
	s := Scenario{Name: "middlebox/drop-syn-data/router/ipv4/sendto", Pass: true, RTT: 50 * time.Millisecond,
		Verdicts:  []assertions.Verdict{{Name: "connection 1", Pass: true}},
		Behaviour: behaviourOf(dropSynData(50*time.Millisecond), 50*time.Millisecond, "client")}
	r := reportOf("default.conf", s)
	r.RTT = 50 * time.Millisecond
	md := Markdown(r)
	want := "| drop-syn-data/router/ipv4/sendto | ✓ 1/1 | 0/3 | 1.10 s | 1 RTO + 1 RTT (+1.05 s) | client ActiveFail +2, TCPSynRetrans +2 | off |"
	if !strings.Contains(md, want) {
		t.Errorf("Markdown lacks the row\n%s\n%s", want, md)
	}
}

// The default profile must leave every key a scenario (or its topology)
// sets alone: it applies after them, and would override what they assert.
func TestDefaultProfileOverridesNoScenario(t *testing.T) {
	p := profile.FromSources(profile.Default())
	keys := map[string]bool{}
	for _, s := range p.Settings {
		keys[profile.Dotted(s.Key)] = true
	}
	for _, s := range append(scenarios.Catalogue(), mutantScenarios()...) {
		for node, kv := range s.Sysctls {
			for k := range kv {
				if keys[k] {
					t.Errorf("%s sets %s on %s, which the default profile overrides", s.Name, k, node)
				}
			}
		}
		for _, n := range s.Topology.Nodes {
			for k := range n.BuildSysctls() {
				if keys[k] {
					t.Errorf("%s's topology sets %s on %s, which the default profile overrides", s.Name, k, n.Name)
				}
			}
		}
	}
}

func mutantScenarios() []scenarios.Scenario {
	var out []scenarios.Scenario
	for _, m := range scenarios.Mutants() {
		out = append(out, m.Scenario)
	}
	return out
}

// prepare puts the profile after the scenario's sysctls, says what it
// overrode, and adds (or replaces) the delay on routers only.
func TestPrepare(t *testing.T) {
	p := profile.FromSources(profile.NewSource("cand.conf", []byte("net.ipv4.tcp_fastopen = 3\nnet.ipv4.conf.*.rp_filter = 1\n")))
	ns := profile.Keys{"net/ipv4/tcp_fastopen": true, "net/ipv4/conf/all/rp_filter": true, "net/ipv4/conf/lo/rp_filter": true}
	plan, err := profile.ResolveWith(p, ns, ns, func(string, string) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	s := scenarios.CookieThenData(topology.Routed(), topology.IPv4, 0)
	got, prep := prepare(s, Options{All: plan, RTT: 40 * time.Millisecond})
	if got.Sysctls["server"]["net.ipv4.tcp_fastopen"] != "3" || got.Sysctls["router"]["net.ipv4.conf.to-client.rp_filter"] != "1" {
		t.Errorf("sysctls %v", got.Sysctls)
	}
	if s.Sysctls["server"]["net.ipv4.tcp_fastopen"] != "2" {
		t.Error("prepare changed the caller's scenario")
	}
	var overrode []string
	for _, o := range prep.overrides {
		overrode = append(overrode, o.Node+" "+o.Key+" "+o.Scenario+"→"+o.Profile)
	}
	if strings.Join(overrode, "; ") != "client net.ipv4.tcp_fastopen 1→3; server net.ipv4.tcp_fastopen 2→3" {
		t.Errorf("overrides %v", overrode)
	}
	if len(got.Middleboxes) != 1 || got.Middleboxes[0].Box.Name != "delay" || prep.rtt != 40*time.Millisecond {
		t.Errorf("middleboxes %v, rtt %v: want the delay added", got.Middleboxes, prep.rtt)
	}
	if err := got.Validate(); err != nil {
		t.Error(err)
	}
	direct, prep := prepare(scenarios.CookieThenData(topology.Direct(), topology.IPv4, 0), Options{RTT: 40 * time.Millisecond})
	if len(direct.Middleboxes) != 0 || prep.rtt != 0 {
		t.Error("a delay was added to a topology without a router")
	}
	control, prep := prepare(scenarios.PlainVsTFO(), Options{RTT: 80 * time.Millisecond})
	if len(control.Middleboxes) != 1 || !strings.Contains(control.Middleboxes[0].Box.Description, "40ms") || prep.rtt != 80*time.Millisecond {
		t.Errorf("the control's own delay was not replaced: %v", control.Middleboxes)
	}
}

func TestParseTimers(t *testing.T) {
	b := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0201220A:9C40 0202220A:1B58 02 00000001:00000000 01:0000004B 00000002     0        0 12345 2 0000000000000000 100 0 0 10 -1
   1: 0201220A:9C41 0202220A:1B58 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0000000000000000 20 4 30 10 -1
`)
	socks := parseTimers(b)
	if len(socks) != 2 || socks[0].when != 750*time.Millisecond || socks[0].retrans != 2 || socks[0].port != 7000 {
		t.Fatalf("parsed %+v", socks)
	}
	if got := describeWait(socks); got != "SYN to :7000, retransmission 3 in 750 ms" {
		t.Errorf("wait %q", got)
	}
}

// A cost is what the protocol made a connection wait: without an emulated
// RTT only a timeout can cost anything (scheduling on a busy machine made
// a 153 ms first byte once); with one, a round trip.
func TestCostWordsSeparateProtocolFromScheduling(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		conn Conn
		rtt  time.Duration
		want string
	}{
		{Conn{Extra: 153 * ms}, 0, "none"},
		{Conn{Extra: 1050 * ms, SynRetrans: 1, waited: 1000 * ms}, 0, "1 RTO"},
		{Conn{Extra: 55 * ms}, 50 * ms, "1 RTT"},
		{Conn{Extra: 8 * ms}, 50 * ms, "none"},
		{Conn{Extra: 1100 * ms, SynRetrans: 1, waited: 1000 * ms}, 50 * ms, "1 RTO + 2 RTTs"},
	} {
		if got := costWords(c.conn, c.rtt); got != c.want {
			t.Errorf("costWords(%+v, rtt %v) = %q, want %q", c.conn, c.rtt, got, c.want)
		}
	}
}

// wantAll fails t for each of wants that text (what it is: "diff") lacks.
func wantAll(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, text)
		}
	}
}

// The matrix: several kernels' reports side by side.

func matrixReport(kernel, vm string, scs ...Scenario) *Report {
	return &Report{Schema: SchemaVersion, Kernel: kernel, VM: vm, Parallel: 4, Scenarios: scs}
}

func sc(name string, verdicts ...assertions.Verdict) Scenario {
	s := Scenario{Name: name, Verdicts: verdicts, Pass: true}
	for _, v := range verdicts {
		s.Pass = s.Pass && v.Pass
	}
	return s
}

func v(name string, pass bool) assertions.Verdict {
	return assertions.Verdict{Name: name, Statement: name + " holds", Pass: pass, Evidence: "evidence of " + name}
}

func TestMatrixDifferencesFirstWithTheExpectationThatChanged(t *testing.T) {
	same := sc("baseline/direct", v("connection 1", true), v("counters", true))
	same.Behaviour.FirstByte = &Spread{Median: 2 * time.Millisecond}
	same.Behaviour.Connections, same.Behaviour.TFOData = 2, 1
	old := matrixReport("6.1.0-57-amd64", "debian:6.1 TCG, 2 vCPUs",
		same,
		sc("pool/unsync-keys", v("pool outcomes", false), v("probe", true)),
		Scenario{Name: "blackhole/linear", Unsupported: Unsupported + ": lacks sysctl net.ipv4.tcp_syn_linear_timeouts"},
	)
	newer := matrixReport("6.12.118+deb12-amd64", "debian:6.12 TCG, 2 vCPUs",
		same,
		sc("pool/unsync-keys", v("pool outcomes", false), v("probe", true)),
		sc("blackhole/linear", v("SYN schedule", true)),
	)
	host := matrixReport("6.18.0", "",
		same,
		sc("pool/unsync-keys", v("pool outcomes", true), v("probe", true)),
		sc("blackhole/linear", v("SYN schedule", true)),
		sc("only/host", v("x", true)),
	)
	m := BuildMatrix([]MatrixColumn{{"debian:6.1", old}, {"debian:6.12", newer}, {"host", host}})
	if len(m.Rows) != 4 || m.Rows[3].Scenario != "only/host" {
		t.Fatalf("rows: %+v", m.Rows)
	}
	if want := []string{"pool/unsync-keys", "blackhole/linear", "only/host"}; strings.Join(m.Differ, ",") != strings.Join(want, ",") {
		t.Errorf("differ: got %v, want %v", m.Differ, want)
	}
	pool := m.Rows[1]
	if len(pool.Changed) != 1 || pool.Changed[0].Name != "pool outcomes" || strings.Join(pool.Changed[0].FailsOn, ",") != "debian:6.1,debian:6.12" {
		t.Errorf("pool's changed expectations: %+v", pool.Changed)
	}
	if c := m.Rows[2].Cells[0]; c.Status != "unsupported" || !strings.Contains(c.String(), "tcp_syn_linear_timeouts") {
		t.Errorf("an unsupported cell: %+v %q", c, c.String())
	}
	if c := m.Rows[0].Cells[2]; c.String() != "✓ 2/2 · first byte 2.00 ms, TFO 1/2" && !strings.HasPrefix(c.String(), "✓ 2/2 · first byte") {
		t.Errorf("a cell: %q", c.String())
	}
	if c := m.Rows[3].Cells[0]; c.Status != "absent" || c.String() != "—" {
		t.Errorf("absent: %+v", c)
	}
	md := MatrixMarkdown(m)
	di, ev := strings.Index(md, "## What differs"), strings.Index(md, "## Every scenario")
	if di < 0 || ev < di || !strings.Contains(md[di:ev], "pool outcomes fails under debian:6.1, debian:6.12: evidence of pool outcomes") {
		t.Errorf("markdown:\n%s", md)
	}
	if !strings.Contains(md, "| debian:6.1 | 6.1.0-57-amd64 | VM: debian:6.1 TCG, 2 vCPUs, 4 at a time | 1/3 (1 not supported by this kernel) |") {
		t.Errorf("kernels table:\n%s", md)
	}
	dir := t.TempDir()
	mdPath, js, err := WriteMatrix(m, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{mdPath, js} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 || filepath.Dir(p) != dir {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestDiffUnsupportedIsNoRegression(t *testing.T) {
	newer := matrixReport("6.12", "debian:6.12 TCG, 2 vCPUs", sc("blackhole/linear", v("SYN schedule", true)))
	newer.Scenarios[0].Sysctls = map[string]map[string]string{"client": {"net.ipv4.tcp_syn_linear_timeouts": "0"}}
	old := matrixReport("6.1", "debian:6.1 TCG, 2 vCPUs", Scenario{Name: "blackhole/linear", Unsupported: Unsupported + ": lacks sysctl net.ipv4.tcp_syn_linear_timeouts"})
	c := Diff(newer, old)
	if c.Regressed() != 0 || len(c.Changed) != 1 || !strings.Contains(c.Changed[0].Behaviour[0], "candidate: not supported by this kernel") {
		t.Errorf("regressed %d, changed %+v", c.Regressed(), c.Changed)
	}
	if md := c.Markdown(); strings.Contains(md, "tcp_syn_linear_timeouts`: 0 →") {
		t.Errorf("an unsupported scenario's sysctls are no setting change:\n%s", md)
	}
}

// Two runs of a pool whose connections ECMP placed differently: the
// servers' own counters move, their sum does not, and the diff is quiet;
// a change of the sum is still reported, for the group.
func TestDiffComparesECMPGroupsSummed(t *testing.T) {
	spec := topology.Pool(3)
	groups := ecmpGroups(spec)
	if len(groups) != 1 || strings.Join(groups[0], ",") != "server1,server2,server3" {
		t.Fatalf("ecmpGroups(Pool(3)) = %v, want the one group server1..server3 (IPv4 and IPv6 routes name it once)", groups)
	}
	pool := func(passive ...int64) Scenario {
		s := Scenario{Name: "pool/sync-keys/n3/ipv4", Pass: true, Verdicts: []assertions.Verdict{{Name: "every connection", Pass: true}},
			Behaviour: Behaviour{Connections: 30, TFOData: 27, ECMP: groups, Counters: map[string]map[string]int64{"client": {lab.TCPFastOpenActive: 27}}}}
		for i, p := range passive {
			s.Behaviour.Counters[fmt.Sprintf("server%d", i+1)] = map[string]int64{lab.TCPFastOpenPassive: p}
		}
		return s
	}
	c := Diff(reportOf("a.conf", pool(10, 10, 7)), reportOf("a.conf", pool(5, 15, 7)))
	if len(c.Changed) != 0 {
		t.Errorf("placement alone reported as a change:\n%s", c.Markdown())
	}
	c = Diff(reportOf("a.conf", pool(10, 10, 7)), reportOf("a.conf", pool(5, 15, 8)))
	wantAll(t, "diff", c.Markdown(), "counters: server1+server2+server3 Passive +27 → +28")
	if strings.Contains(c.Markdown(), "server1 Passive") {
		t.Errorf("a member's own counter reported:\n%s", c.Markdown())
	}
}
