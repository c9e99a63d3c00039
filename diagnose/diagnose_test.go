package diagnose

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const (
	cli = "10.0.0.1:40000"
	srv = "10.0.0.2:80"
)

func run(t *testing.T, paths ...string) *Report {
	t.Helper()
	rep, err := Diagnose(context.Background(), paths, Options{})
	if err != nil {
		t.Fatalf("Diagnose: %v", err)
	}
	return rep
}

func serverOf(t *testing.T, rep *Report, server string) ServerReport {
	t.Helper()
	for _, s := range rep.Servers {
		if s.Server == server {
			return s
		}
	}
	t.Fatalf("no server %s in %+v", server, rep.Servers)
	return ServerReport{}
}

func wantVerdict(t *testing.T, rep *Report, server string, v Verdict) ServerReport {
	t.Helper()
	s := serverOf(t, rep, server)
	if s.Verdict != v {
		t.Fatalf("%s: verdict %s (%s), want %s\nalso %+v\nnotes %v\ncounts %v", server, s.Verdict, s.Reason, v, s.Also, s.Notes, s.Counts)
	}
	if s.Reason == "" {
		t.Errorf("%s: empty reason", server)
	}
	return s
}

// wantAll fails t for each of wants that text (what it is: "reason")
// lacks.
func wantAll(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, text)
		}
	}
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

// Scenario builders, client side unless said.

func tfoWorks(s *synth, client, server string) {
	s.flow(client, server, 3248579141-1000).granted(0, cookieA)
	s.flow(bumpPort(client, 1), server, 3248579141).accepted(10*time.Millisecond, cookieA, 19)
}

func bumpPort(ap string, n uint16) string {
	a := netip.MustParseAddrPort(ap)
	return netip.AddrPortFrom(a.Addr(), a.Port()+n).String()
}

func TestTFOWorks(t *testing.T) {
	var s synth
	tfoWorks(&s, cli, srv)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, TFOWorks)
	if r.Problem || rep.Problem() {
		t.Errorf("tfo-works is not a problem")
	}
	if r.Connections != 2 || r.TotalConnections != 2 {
		t.Errorf("connections %d of %d, want 2 of 2", r.Connections, r.TotalConnections)
	}
	if rep.Files[0].Side != "client" {
		t.Errorf("side %q, want client", rep.Files[0].Side)
	}
	if r.Reproduce == nil || r.Reproduce.Scenario != "baseline/routed/ipv4/sendto/cookie-then-data" {
		t.Errorf("reproducer %+v", r.Reproduce)
	}
}

func TestClientNoTFO(t *testing.T) {
	var s synth
	for i := range uint16(3) {
		s.flow(bumpPort(cli, i), srv, 1000+uint32(i)).plain(time.Duration(i) * time.Second)
	}
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, ClientNoTFO)
	if r.Problem || r.Connections != 3 {
		t.Errorf("problem %v connections %d", r.Problem, r.Connections)
	}
}

func TestServerNoTFO(t *testing.T) {
	var s synth
	s.flow(cli, srv, 100).syn(0, ptr(tfoOpt(nil, false)), 0).synack(rtt, 0, nil).ack(rtt + time.Microsecond)
	s.flow(bumpPort(cli, 1), srv, 200).syn(time.Second, ptr(tfoOpt(nil, true)), 0).synack(time.Second+rtt, 0, nil).ack(time.Second + rtt + time.Microsecond)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, ServerNoTFO)
	if !r.Problem || !strings.Contains(r.Reason, "both option forms") {
		t.Errorf("problem %v reason %q", r.Problem, r.Reason)
	}
	if r.Reproduce.Scenario != "baseline/routed/ipv4/sendto/server-tfo-off" {
		t.Errorf("reproducer %+v", r.Reproduce)
	}
	if len(r.Evidence) != 4 || !strings.Contains(r.Evidence[0], "tfo cookiereq") {
		t.Errorf("evidence %q", r.Evidence)
	}
}

// dropSynData: the data SYN is lost, the plain retransmission 1 s later is
// answered with a SYN-only ack.
func dropSynData(s *synth, client, server string) {
	s.flow(client, server, 500).granted(0, cookieA)
	f := s.flow(bumpPort(client, 1), server, 3248579141)
	f.syn(10*time.Millisecond, ptr(tfoOpt(cookieA, false)), 19).
		syn(1010*time.Millisecond, nil, 0).
		synack(1010*time.Millisecond+rtt, 0, nil).
		ack(1010*time.Millisecond + rtt + 10*time.Microsecond)
}

func TestSynDataDropped(t *testing.T) {
	var s synth
	dropSynData(&s, cli, srv)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, SynDataDropped)
	if !near(r.CostMS, 1000, 1) {
		t.Errorf("cost %.3f ms, want 1000", r.CostMS)
	}
	if r.Connections != 1 {
		t.Errorf("connections %d, want 1", r.Connections)
	}
	rp := r.Reproduce
	if rp.Scenario != "middlebox/drop-syn-data/router/ipv4/sendto" || rp.Command != "tfolab run middlebox/drop-syn-data/router/ipv4/sendto --keep" {
		t.Errorf("reproducer %+v", rp)
	}
	if !strings.Contains(rp.Rules, "-A FORWARD -p tcp --syn --dport 80 -m bpf --bytecode \""+synDataBPF4+"\" -j DROP") {
		t.Errorf("rules:\n%s", rp.Rules)
	}
	if len(r.Evidence) != 3 || !strings.Contains(r.Evidence[1], "Flags [S], seq 3248579141, win") {
		t.Errorf("evidence %q", r.Evidence)
	}
}

func TestSynDataReset(t *testing.T) {
	var s synth
	s.flow(cli, srv, 500).granted(0, cookieA)
	s.flow(bumpPort(cli, 1), srv, 600).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).rst(time.Second + rtt)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, SynDataDropped)
	if r.Reproduce.Middlebox != "reset-syn-data" || !strings.Contains(r.Reproduce.Rules, "REJECT --reject-with tcp-reset") {
		t.Errorf("reproducer %+v", r.Reproduce)
	}
	wantAll(t, "reason", r.Reason, "RST")
}

// cookieThenBareSynAck is a client capture: a cookie from granter, then a
// SYN to srv with that cookie and 19 bytes, answered by a SYN-ACK that acks
// only the SYN and carries no option (the option stripped on the way, or
// a listener without TFO: from the client the two look alike).
func cookieThenBareSynAck(t *testing.T, granter string) *Report {
	t.Helper()
	var s synth
	s.flow(cli, granter, 500).granted(0, cookieA)
	s.flow(bumpPort(cli, 1), srv, 600).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).
		synack(time.Second+rtt, 0, nil).ack(time.Second + rtt + time.Microsecond)
	return run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
}

func TestOptionStrippedClientSide(t *testing.T) {
	r := wantVerdict(t, cookieThenBareSynAck(t, srv), srv, OptionStripped)
	// Both readings, the cookie having come from this very port.
	wantAll(t, "reason", r.Reason, "stripped", "handed out", "server-side capture")
	if strings.Contains(r.Reason, "most likely") {
		t.Errorf("reason leans to one reading: %s", r.Reason)
	}
	if !near(r.CostMS, ms(rtt), 0.001) {
		t.Errorf("cost %v, want one RTT %v", r.CostMS, ms(rtt))
	}
	if !strings.Contains(r.Reproduce.Rules, "*mangle") || !strings.Contains(r.Reproduce.Rules, "TCPOPTSTRIP --strip-options 34,254") {
		t.Errorf("rules:\n%s", r.Reproduce.Rules)
	}
}

func TestOptionStrippedServerSide(t *testing.T) {
	var s synth
	// Seen at the server: the data arrives without the option.
	s.flow(cli, srv, 600).atServer().syn(0, nil, 19).synack(10*time.Microsecond, 0, nil).ack(rtt)
	rep := run(t, s.write(t, t.TempDir(), "s.pcap", capOpts{}))
	wantVerdict(t, rep, srv, OptionStripped)
	if rep.Files[0].Side != "server" {
		t.Errorf("side %q, want server", rep.Files[0].Side)
	}
}

func TestCookieLessClientRefused(t *testing.T) {
	var s synth
	s.flow(cli, srv, 600).syn(0, nil, 19).synack(rtt, 0, nil).ack(rtt + time.Microsecond)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, CookieRejected)
	if r.Reproduce.Scenario != "pool/no-cookie/client-only/n3/ipv4" {
		t.Errorf("reproducer %+v", r.Reproduce)
	}
}

func TestCookieLessAccepted(t *testing.T) {
	var s synth
	s.flow(cli, srv, 600).syn(0, nil, 19).synack(rtt, 19, nil).ack(rtt + time.Microsecond)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, TFOWorks)
	wantAll(t, "reason", r.Reason, "without a cookie")
}

func TestSynackLostServerSide(t *testing.T) {
	var s synth
	f := s.flow(cli, srv, 700).atServer()
	f.syn(0, ptr(tfoOpt(cookieA, false)), 19).synack(20*time.Microsecond, 19, nil).
		syn(time.Second, nil, 0).synack(time.Second+20*time.Microsecond, 19, nil).
		syn(3*time.Second, nil, 0).synack(3*time.Second+20*time.Microsecond, 19, nil)
	rep := run(t, s.write(t, t.TempDir(), "s.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, SynackLost)
	if !near(r.CostMS, 3000, 1) {
		t.Errorf("cost %v, want 3000 (stalled 3 s)", r.CostMS)
	}
	if r.Reproduce.Middlebox != "drop-tfo-synack" || !strings.Contains(r.Reproduce.Rules, "-m connmark --mark 0x7413 -j DROP") {
		t.Errorf("reproducer %+v", r.Reproduce)
	}
}

func TestSynackLostClientSide(t *testing.T) {
	var s synth
	s.flow(cli, srv, 500).granted(0, cookieA)
	s.flow(bumpPort(cli, 1), srv, 700).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).
		syn(2*time.Second, nil, 0).syn(4*time.Second, nil, 0)
	later(&s, 10*time.Second)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, SynackLost)
	wantAll(t, "reason", r.Reason, "no SYN-ACK at all")
}

// later adds an unrelated handshake at: the capture goes on.
func later(s *synth, at time.Duration) {
	s.flow("10.9.9.1:1000", "10.9.9.2:22", 1).plain(at)
}

// A SYN right before the capture ends may still have been answered.
func TestUnfinishedAtCaptureEnd(t *testing.T) {
	var s synth
	s.flow(cli, srv, 500).granted(0, cookieA)
	s.flow(bumpPort(cli, 1), srv, 700).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).syn(2*time.Second, nil, 0)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, TFOWorks)
	if r.Counts["unfinished"] != 1 {
		t.Errorf("counts %v", r.Counts)
	}
}

func TestServerDownInconclusive(t *testing.T) {
	var s synth
	s.flow(cli, srv, 700).syn(0, nil, 0).syn(time.Second, nil, 0).syn(3*time.Second, nil, 0)
	later(&s, 10*time.Second)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, Inconclusive)
	if rep.Problem() || !strings.Contains(r.Reason, "down or unreachable") {
		t.Errorf("reason %q", r.Reason)
	}
}

func TestOneDirectionInconclusive(t *testing.T) {
	var s synth
	// Only client→server packets: SYN, then ACK, no SYN-ACK.
	f := s.flow(cli, srv, 700)
	f.syn(0, ptr(tfoOpt(nil, false)), 0)
	f.add(spkt{at: rtt, src: f.c, dst: f.sv, flags: 0x10, seq: f.isn + 1, ack: 12345, ttl: 64})
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, Inconclusive)
	wantAll(t, "reason", r.Reason, "one direction")
}

func TestServerFilterNoSYN(t *testing.T) {
	var s synth
	tfoWorks(&s, cli, srv)
	path := s.write(t, t.TempDir(), "c.pcap", capOpts{})
	rep, err := Diagnose(context.Background(), []string{path}, Options{Server: netip.MustParseAddrPort("10.0.0.9:443")})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Servers) != 1 || rep.Servers[0].Verdict != Inconclusive || !strings.Contains(rep.Servers[0].Reason, "no SYN") {
		t.Fatalf("servers %+v", rep.Servers)
	}
	rep, err = Diagnose(context.Background(), []string{path}, Options{Server: netip.MustParseAddrPort(srv)})
	if err != nil || len(rep.Servers) != 1 || rep.Servers[0].Verdict != TFOWorks {
		t.Fatalf("servers %+v, %v", rep.Servers, err)
	}
}

// blackhole: a cookie, then three detections each followed by plain SYNs
// and a pause of base<<k.
func blackhole(s *synth, base time.Duration) (pauses []time.Duration) {
	s.flow(cli, srv, 100).granted(0, cookieA)
	at := time.Second
	port := uint16(1)
	next := func() *flow { port++; return s.flow(bumpPort(cli, port), srv, 1000+uint32(port)) }
	for k := range 3 {
		// The detecting connection: a TFO SYN and three plain retransmissions.
		next().syn(at, ptr(tfoOpt(cookieA, false)), 19).syn(at+time.Second, nil, 0).
			syn(at+3*time.Second, nil, 0).syn(at+7*time.Second, nil, 0)
		detect := at + 7*time.Second
		pause := base << k
		// Plain connections during the pause, every 0.4 s.
		for p := detect + 100*time.Millisecond; p < detect+pause; p += 400 * time.Millisecond {
			next().plain(p)
		}
		end := detect + pause + 50*time.Millisecond
		next().accepted(end, cookieA, 19)
		pauses = append(pauses, end-detect)
		at = end + 200*time.Millisecond
	}
	return pauses
}

func TestBlackholePaused(t *testing.T) {
	var s synth
	want := blackhole(&s, time.Second)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, BlackholePaused)
	if len(r.Pauses) != 3 {
		t.Fatalf("pauses %+v", r.Pauses)
	}
	for i, p := range r.Pauses {
		if !near(p.Seconds, want[i].Seconds(), 0.001) || p.Open {
			t.Errorf("pause %d: %.3f s (open %v), want %.3f", i, p.Seconds, p.Open, want[i].Seconds())
		}
	}
	wantAll(t, "reason", r.Reason, "twice the last")
	if r.Reproduce.Command != "tfolab run blackhole/backoff-1x-2x-4x --keep" {
		t.Errorf("reproducer %+v", r.Reproduce)
	}
	if !near(r.CostMS, 7000, 1) {
		t.Errorf("cost %v, want the 7 s stall", r.CostMS)
	}
	if r.Counts["paused"] == 0 || r.Counts["stalled-tfo"] != 3 {
		t.Errorf("counts %v", r.Counts)
	}
}

func TestBlackholeOpenAtEnd(t *testing.T) {
	var s synth
	s.flow(cli, srv, 100).granted(0, cookieA)
	s.flow(bumpPort(cli, 1), srv, 200).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).syn(2*time.Second, nil, 0).
		syn(4*time.Second, nil, 0).syn(8*time.Second, nil, 0)
	s.flow(bumpPort(cli, 2), srv, 300).plain(9 * time.Second)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, BlackholePaused)
	if len(r.Pauses) != 1 || !r.Pauses[0].Open || !near(r.Pauses[0].Seconds, 1, 0.01) {
		t.Errorf("pauses %+v", r.Pauses)
	}
}

// pool: the same client's cookie accepted by some connections, refused and
// replaced by others.
func TestCookieRejectedPool(t *testing.T) {
	var s synth
	s.flow(cli, srv, 100).granted(0, cookieA)
	s.flow(bumpPort(cli, 1), srv, 200).accepted(time.Second, cookieA, 19)
	s.flow(bumpPort(cli, 2), srv, 300).syn(2*time.Second, ptr(tfoOpt(cookieA, false)), 19).
		synack(2*time.Second+rtt, 0, ptr(tfoOpt(cookieB, false))).ack(2*time.Second + rtt + time.Microsecond)
	s.flow(bumpPort(cli, 3), srv, 400).accepted(3*time.Second, cookieB, 19)
	s.flow(bumpPort(cli, 4), srv, 500).syn(4*time.Second, ptr(tfoOpt(cookieB, false)), 19).
		synack(4*time.Second+rtt, 0, ptr(tfoOpt(cookieC, false))).ack(4*time.Second + rtt + time.Microsecond)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, CookieRejected)
	if !strings.Contains(r.Reason, "do not share a TFO key") || r.Connections != 2 {
		t.Errorf("reason %q, connections %d", r.Reason, r.Connections)
	}
	if r.Reproduce.Scenario != "pool/unsync-keys/n3/ipv4" {
		t.Errorf("reproducer %+v", r.Reproduce)
	}
	if len(r.Also) == 0 || r.Also[0].Verdict != TFOWorks {
		t.Errorf("also %+v", r.Also)
	}
}

func TestPrecedenceWorstWins(t *testing.T) {
	var s synth
	// One server, three failures: stripped, dropped, rejected.
	s.flow(cli, srv, 100).granted(0, cookieA)
	s.flow(bumpPort(cli, 1), srv, 200).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).synack(time.Second+rtt, 0, nil).ack(time.Second + 2*rtt)
	s.flow(bumpPort(cli, 2), srv, 300).syn(2*time.Second, ptr(tfoOpt(cookieA, false)), 19).syn(3*time.Second, nil, 0).synack(3*time.Second+rtt, 0, nil).ack(3*time.Second + 2*rtt)
	s.flow(bumpPort(cli, 3), srv, 400).syn(4*time.Second, ptr(tfoOpt(cookieA, false)), 19).synack(4*time.Second+rtt, 0, ptr(tfoOpt(cookieB, false))).ack(4*time.Second + 2*rtt)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, SynDataDropped)
	var also []Verdict
	for _, a := range r.Also {
		also = append(also, a.Verdict)
	}
	want := []Verdict{OptionStripped, CookieRejected, TFOWorks}
	if strings.Join(verdictStrings(also), ",") != strings.Join(verdictStrings(want), ",") {
		t.Errorf("also %v, want %v", also, want)
	}
}

func verdictStrings(vs []Verdict) []string {
	var s []string
	for _, v := range vs {
		s = append(s, string(v))
	}
	return s
}

func TestRareLossIsANote(t *testing.T) {
	var s synth
	s.flow(cli, srv, 100).granted(0, cookieA)
	for i := range uint16(40) {
		s.flow(bumpPort(cli, i+1), srv, 1000+uint32(i)).accepted(time.Duration(i+1)*time.Second, cookieA, 19)
	}
	f := s.flow(bumpPort(cli, 100), srv, 9999)
	f.syn(50*time.Second, ptr(tfoOpt(cookieA, false)), 19).syn(51*time.Second, nil, 0).synack(51*time.Second+rtt, 0, nil).ack(51*time.Second + 2*rtt)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, TFOWorks)
	if len(r.Notes) == 0 || !strings.Contains(r.Notes[0], "too rare") {
		t.Errorf("notes %q", r.Notes)
	}
}

func TestIPv6(t *testing.T) {
	var s synth
	dropSynData(&s, "[fd00::1]:40000", "[fd00::2]:443")
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, "[fd00::2]:443", SynDataDropped)
	if r.Reproduce.Scenario != "middlebox/drop-syn-data/router/ipv6/sendto" || r.Reproduce.Family != "ipv6" ||
		!strings.Contains(r.Reproduce.Rules, synDataBPF6) || !strings.Contains(r.Reproduce.Rules, "--dport 443") {
		t.Errorf("reproducer %+v", r.Reproduce)
	}
	if !strings.HasPrefix(r.Evidence[0], "07:03:45.452747 IP6 fd00::1.40001 > fd00::2.443: Flags [S]") {
		t.Errorf("evidence %q", r.Evidence[0])
	}
}

func TestManyServersSorted(t *testing.T) {
	var s synth
	tfoWorks(&s, cli, "10.0.0.3:80")
	dropSynData(&s, "10.0.0.1:41000", "10.0.0.4:80")
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	if len(rep.Servers) != 2 || rep.Servers[0].Server != "10.0.0.4:80" || !rep.Problem() {
		t.Fatalf("servers %+v", rep.Servers)
	}
}

func TestCancel(t *testing.T) {
	var s synth
	tfoWorks(&s, cli, srv)
	path := s.write(t, t.TempDir(), "c.pcap", capOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Diagnose(ctx, []string{path}, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// Seen from the server, drop-syn-data leaves plain SYNs from a client it
// had given a cookie.
func TestSynDataDroppedServerSide(t *testing.T) {
	var s synth
	s.flow(cli, srv, 500).atServer().syn(0, ptr(tfoOpt(nil, false)), 0).synack(10*time.Microsecond, 0, ptr(tfoOpt(cookieA, false))).ack(rtt)
	for i := range uint16(2) {
		at := time.Duration(i+1) * 2 * time.Second
		s.flow(bumpPort(cli, i+1), srv, 600+uint32(i)).atServer().syn(at, nil, 0).synack(at+10*time.Microsecond, 0, nil).ack(at + rtt)
	}
	rep := run(t, s.write(t, t.TempDir(), "s.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, SynDataDropped)
	if r.Counts["cookie-not-offered"] != 2 || !strings.Contains(r.Reason, "client-side capture") {
		t.Errorf("counts %v reason %q", r.Counts, r.Reason)
	}
}

// TCP, but no handshake: a warning, no server.
func TestMidstreamOnly(t *testing.T) {
	var s synth
	f := s.flow(cli, srv, 1)
	f.ack(0)
	path := s.write(t, t.TempDir(), "mid.pcap", capOpts{})
	rep := run(t, path)
	if len(rep.Servers) != 0 || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "no SYN") {
		t.Errorf("servers %+v warnings %q", rep.Servers, rep.Warnings)
	}
}

// Only the server's direction captured: SYN-ACKs without SYNs.
func TestOnlySynacks(t *testing.T) {
	var s synth
	for i := range uint16(3) {
		s.flow(bumpPort(cli, i), srv, 100+uint32(i)).synack(time.Duration(i)*time.Second, 0, ptr(tfoOpt(cookieA, false)))
	}
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, Inconclusive)
	wantAll(t, "reason", r.Reason, "one direction")
}
