package diagnose

import (
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Both ends of the same traffic through a NAT: the client talks to a VIP,
// the server sees the NAT's address and its own; its clock runs 2.5 s
// ahead and the path takes owd each way.
const (
	vip      = "203.0.113.10:80"
	natCli   = "192.0.2.1:50000"
	realSrv  = "10.1.0.5:80"
	owd      = 150 * time.Microsecond
	skew     = 2500 * time.Millisecond
	clientIP = "10.0.0.1:40000"
)

type ends struct{ c, s *flow }

func pairFlow(cs, ss *synth, i uint16, isn uint32, serverAddr string) ends {
	return ends{
		cs.flow(bumpPort(clientIP, i), vip, isn),
		ss.flow(bumpPort(natCli, i), serverAddr, isn).atServer(),
	}
}

// grantedBoth: a cookie request answered with a cookie, at both ends.
func grantedBoth(e ends, at time.Duration) {
	e.c.syn(at, ptr(tfoOpt(nil, false)), 0).synack(at+2*owd+10*time.Microsecond, 0, ptr(tfoOpt(cookieA, false))).ack(at + 2*owd + 20*time.Microsecond)
	e.s.syn(at+owd, ptr(tfoOpt(nil, false)), 0).synack(at+owd+10*time.Microsecond, 0, ptr(tfoOpt(cookieA, false))).ack(at + 3*owd + 20*time.Microsecond)
}

func writeBoth(t *testing.T, cs, ss *synth) (string, string) {
	dir := t.TempDir()
	return cs.write(t, dir, "client.pcap", capOpts{}), ss.write(t, dir, "server.pcapng", capOpts{ng: true, link: layers.LinkTypeLinuxSLL, offset: skew})
}

func TestBothSidesStripped(t *testing.T) {
	var cs, ss synth
	grantedBoth(pairFlow(&cs, &ss, 0, 1000, realSrv), 0)
	e := pairFlow(&cs, &ss, 1, 2000, realSrv)
	at := time.Second
	e.c.syn(at, ptr(tfoOpt(cookieA, false)), 19).synack(at+2*owd+10*time.Microsecond, 0, nil).ack(at + 2*owd + 20*time.Microsecond)
	e.s.syn(at+owd, nil, 19).synack(at+owd+10*time.Microsecond, 0, nil).ack(at + 3*owd + 20*time.Microsecond)
	cp, sp := writeBoth(t, &cs, &ss)
	for _, order := range [][]string{{cp, sp}, {sp, cp}} {
		rep := run(t, order...)
		r := wantVerdict(t, rep, vip, OptionStripped)
		wantAll(t, "reason", r.Reason, "missing when")
		if rep.Matched != 2 || r.Matched != 2 || len(rep.Servers) != 1 {
			t.Errorf("matched %d/%d, servers %d", rep.Matched, r.Matched, len(rep.Servers))
		}
		if len(r.SeenAs) != 1 || r.SeenAs[0] != realSrv {
			t.Errorf("seen as %v", r.SeenAs)
		}
		if !near(rep.ClockOffsetMS, ms(skew+owd), 0.01) {
			t.Errorf("clock offset %v ms", rep.ClockOffsetMS)
		}
		if len(r.EvidenceFiles) != len(r.Evidence) || len(r.Evidence) != 3 ||
			!strings.Contains(r.Evidence[0], "tfo cookie") || strings.Contains(r.Evidence[1], "tfo") ||
			!strings.HasSuffix(r.EvidenceFiles[1], "server.pcapng") {
			t.Errorf("evidence %q from %q", r.Evidence, r.EvidenceFiles)
		}
		sides := map[string]string{}
		for _, f := range rep.Files {
			sides[f.Path] = f.Side
		}
		if sides[cp] != "client" || sides[sp] != "server" {
			t.Errorf("sides %v", sides)
		}
	}
}

func TestBothSidesDropped(t *testing.T) {
	var cs, ss synth
	grantedBoth(pairFlow(&cs, &ss, 0, 1000, realSrv), 0)
	e := pairFlow(&cs, &ss, 1, 2000, realSrv)
	at := time.Second
	e.c.syn(at, ptr(tfoOpt(cookieA, false)), 19).syn(at+time.Second, nil, 0).
		synack(at+time.Second+2*owd+10*time.Microsecond, 0, nil).ack(at + time.Second + 2*owd + 20*time.Microsecond)
	e.s.syn(at+time.Second+owd, nil, 0).synack(at+time.Second+owd+10*time.Microsecond, 0, nil).ack(at + time.Second + 3*owd + 20*time.Microsecond)
	rep := run(t, writeBothPaths(t, &cs, &ss)...)
	r := wantVerdict(t, rep, vip, SynDataDropped)
	if !strings.Contains(r.Reason, "never received") || !near(r.CostMS, 1000, 0.01) {
		t.Errorf("reason %q cost %v", r.Reason, r.CostMS)
	}
}

func writeBothPaths(t *testing.T, cs, ss *synth) []string {
	c, s := writeBoth(t, cs, ss)
	return []string{c, s}
}

// A data SYN that never reaches the server at all, not even retransmitted
// (the client gave up), while the server side captured that port all along.
func TestBothSidesNeverArrived(t *testing.T) {
	var cs, ss synth
	grantedBoth(pairFlow(&cs, &ss, 0, 1000, realSrv), 0)
	e := pairFlow(&cs, &ss, 1, 2000, realSrv)
	e.c.syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).syn(2*time.Second, nil, 0)
	grantedBoth(pairFlow(&cs, &ss, 2, 3000, realSrv), 5*time.Second)
	rep := run(t, writeBothPaths(t, &cs, &ss)...)
	r := wantVerdict(t, rep, vip, SynDataDropped)
	if r.Counts["dropped"] != 1 {
		t.Errorf("counts %v", r.Counts)
	}
}

func TestBothSidesSynackLost(t *testing.T) {
	var cs, ss synth
	grantedBoth(pairFlow(&cs, &ss, 0, 1000, realSrv), 0)
	e := pairFlow(&cs, &ss, 1, 2000, realSrv)
	at := time.Second
	e.c.syn(at, ptr(tfoOpt(cookieA, false)), 19)
	e.s.syn(at+owd, ptr(tfoOpt(cookieA, false)), 19).synack(at+owd+10*time.Microsecond, 19, nil)
	for _, rt := range []time.Duration{time.Second, 3 * time.Second} {
		e.c.syn(at+rt, nil, 0)
		e.s.syn(at+rt+owd, nil, 0).synack(at+rt+owd+10*time.Microsecond, 19, nil)
	}
	rep := run(t, writeBothPaths(t, &cs, &ss)...)
	r := wantVerdict(t, rep, vip, SynackLost)
	if r.Counts["synack-lost"] != 1 || !strings.Contains(r.Reason, "both captures") || !near(r.CostMS, 3000, 0.01) {
		t.Errorf("counts %v reason %q cost %v", r.Counts, r.Reason, r.CostMS)
	}
	var server bool
	for _, f := range r.EvidenceFiles {
		server = server || strings.HasSuffix(f, "server.pcapng")
	}
	if !server {
		t.Errorf("no server-side SYN-ACK in the evidence: %q", r.Evidence)
	}
}

// The option reaches the server, which answers without a cookie: the
// server's TFO is off, nothing was stripped.
func TestBothSidesServerNoTFO(t *testing.T) {
	var cs, ss synth
	e := pairFlow(&cs, &ss, 0, 1000, realSrv)
	e.c.syn(0, ptr(tfoOpt(nil, false)), 0).synack(2*owd+10*time.Microsecond, 0, nil).ack(2*owd + 20*time.Microsecond)
	e.s.syn(owd, ptr(tfoOpt(nil, false)), 0).synack(owd+10*time.Microsecond, 0, nil).ack(3*owd + 20*time.Microsecond)
	rep := run(t, writeBothPaths(t, &cs, &ss)...)
	wantVerdict(t, rep, vip, ServerNoTFO)
}

// A NAT that also rewrites the server port (80 → 8080): matched by ISN.
func TestBothSidesPortRewritten(t *testing.T) {
	var cs, ss synth
	grantedBoth(pairFlow(&cs, &ss, 0, 1000, "10.1.0.5:8080"), 0)
	e := pairFlow(&cs, &ss, 1, 2000, "10.1.0.5:8080")
	e.c.syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).synack(time.Second+2*owd, 0, nil).ack(time.Second + 2*owd + time.Microsecond)
	e.s.syn(time.Second+owd, nil, 19).synack(time.Second+owd+time.Microsecond, 0, nil).ack(time.Second + 3*owd + time.Microsecond)
	rep := run(t, writeBothPaths(t, &cs, &ss)...)
	r := wantVerdict(t, rep, vip, OptionStripped)
	if rep.Matched != 2 || len(rep.Servers) != 1 || r.SeenAs[0] != "10.1.0.5:8080" {
		t.Errorf("matched %d servers %+v", rep.Matched, rep.Servers)
	}
}

// Two captures that share nothing: a warning, and each diagnosed alone.
func TestUnrelatedCaptures(t *testing.T) {
	var a, b synth
	tfoWorks(&a, cli, srv) // the same ISNs as dropSynData's, 10 s apart
	for i := range b.pkts {
		b.pkts[i].at += 10 * time.Second
	}
	dropSynData(&b, "172.16.0.1:40000", "172.16.0.2:443")
	for i := range b.pkts {
		b.pkts[i].at += 10 * time.Second
	}
	dir := t.TempDir()
	rep := run(t, a.write(t, dir, "a.pcap", capOpts{}), b.write(t, dir, "b.pcap", capOpts{}))
	if rep.Matched != 0 || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "share no connection") {
		t.Fatalf("matched %d warnings %q", rep.Matched, rep.Warnings)
	}
	wantVerdict(t, rep, srv, TFOWorks)
	wantVerdict(t, rep, "172.16.0.2:443", SynDataDropped)
}
