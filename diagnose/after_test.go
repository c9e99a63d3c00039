package diagnose

import (
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/tfolab/tfolab/lab/capture"
)

// Segments after the handshake. Offsets count from the first byte after
// the SYN (the client's) or the SYN-ACK (the server's).

// cseg is a client segment: payload n at offset off, acking the server's
// stream up to sack.
func (f *flow) cseg(at time.Duration, flags capture.TCPFlags, off uint32, n int, sack uint32) *flow {
	return f.add(spkt{at: at, src: f.c, dst: f.sv, flags: flags | capture.FlagACK, seq: f.isn + 1 + off,
		ack: f.sisn + 1 + sack, win: 502, payload: n, ttl: f.cTTL})
}

// sseg is a server segment: payload n at offset off, acking the client's
// stream up to cack.
func (f *flow) sseg(at time.Duration, flags capture.TCPFlags, off uint32, n int, cack uint32) *flow {
	return f.add(spkt{at: at, src: f.sv, dst: f.c, flags: flags | capture.FlagACK, seq: f.sisn + 1 + off,
		ack: f.isn + 1 + cack, win: 502, payload: n, ttl: f.sTTL})
}

// answered: a cookie request granted, a request and its answer, both
// acked, both FINs: a connection whose data went both ways.
func (f *flow) answered(at time.Duration, ck []byte) *flow {
	f.syn(at, ptr(tfoOpt(nil, false)), 0).synack(at+rtt, 0, ptr(tfoOpt(ck, false)))
	f.cseg(at+rtt+10*time.Microsecond, 0, 0, 0, 0)
	f.cseg(at+rtt+20*time.Microsecond, capture.FlagPSH, 0, 21, 0)
	f.sseg(at+2*rtt, capture.FlagPSH, 0, 21, 21)
	f.cseg(at+2*rtt+10*time.Microsecond, 0, 21, 0, 21)
	f.sseg(at+2*rtt+20*time.Microsecond, capture.FlagFIN, 21, 0, 21)
	f.cseg(at+2*rtt+30*time.Microsecond, capture.FlagFIN, 21, 0, 22)
	return f.sseg(at+3*rtt, 0, 22, 0, 22)
}

// tfoHandshake: cookie and data in the SYN, acked, and the client's ACK.
func (f *flow) tfoHandshake(at time.Duration, ck []byte, data int) *flow {
	f.syn(at, ptr(tfoOpt(ck, false)), data).synack(at+rtt, data, nil)
	return f.cseg(at+rtt+10*time.Microsecond, 0, uint32(data), 0, 0)
}

// loneFIN: a TFO handshake, then the server's 21-byte answer is dropped
// and only its FIN arrives; the client waits and closes with close.
func loneFIN(s *synth, port uint16, isn uint32, at time.Duration, close capture.TCPFlags) {
	f := s.flow(bumpPort(cli, port), srv, isn).tfoHandshake(at, cookieA, 21)
	f.sseg(at+2*rtt, capture.FlagFIN, 21, 0, 21)            // after 21 bytes the client never got
	f.cseg(at+2*rtt+10*time.Microsecond, 0, 21, 0, 0)       // dup ACK (SACKing the FIN)
	f.cseg(at+2*rtt+2500*time.Millisecond, close, 21, 0, 0) // gives up
	f.sseg(at+3*rtt+2500*time.Millisecond, 0, 22, 0, 22)    // acked
}

// The server's data never reaches the client, only its FIN; the client's
// next TFO SYN still offers the cookie: its kernel did not pause, the
// data is blackholed.
func TestDataBlackholedLoneFIN(t *testing.T) {
	var s synth
	s.flow(cli, srv, 1000).answered(0, cookieA)
	loneFIN(&s, 1, 2000, 10*time.Millisecond, capture.FlagFIN)
	loneFIN(&s, 2, 3000, 3*time.Second, capture.FlagFIN)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, DataBlackholed)
	if r.Counts["server-data-lost"] != 2 || r.Counts["accepted"] != 2 || r.Connections != 2 || r.TotalConnections != 3 {
		t.Errorf("counts %v, %d of %d", r.Counts, r.Connections, r.TotalConnections)
	}
	wantAll(t, "reason", r.Reason, "handshake passed", "FIN got through", "detection is off", "tcp_fastopen_blackhole_timeout_sec")
	if !r.Problem || r.Reproduce == nil || r.Reproduce.Scenario != "middlebox/blackhole-after-handshake/router/ipv4/sendto" ||
		r.Reproduce.Middlebox != "blackhole-after-handshake" || !strings.Contains(r.Reproduce.Rules, "--sport 80 -m connmark") {
		t.Errorf("problem %v reproducer %+v", r.Problem, r.Reproduce)
	}
	if !near(r.CostMS, 2500.3, 0.1) {
		t.Errorf("cost %v ms", r.CostMS)
	}
	var fin bool
	for _, e := range r.Evidence {
		fin = fin || strings.Contains(e, "Flags [F.]")
	}
	if !fin || !strings.Contains(r.Evidence[0], "tfo cookie") {
		t.Errorf("evidence %q", r.Evidence)
	}
	if len(r.Also) != 1 || r.Also[0].Verdict != TFOWorks {
		t.Errorf("also %+v", r.Also)
	}
}

// The same lone FIN, then the client's next SYNs go out plain: the
// kernel's out-of-order-FIN check fired when the socket closed, and it
// paused TFO.
func TestBlackholeDetectedByLoneFIN(t *testing.T) {
	for _, close := range []capture.TCPFlags{capture.FlagFIN, capture.FlagRST} {
		var s synth
		s.flow(cli, srv, 1000).answered(0, cookieA)
		loneFIN(&s, 1, 2000, 10*time.Millisecond, close)
		s.flow(bumpPort(cli, 2), srv, 3000).plain(2600 * time.Millisecond)
		s.flow(bumpPort(cli, 3), srv, 4000).plain(2700 * time.Millisecond)
		s.flow(bumpPort(cli, 4), srv, 5000).tfoHandshake(4*time.Second, cookieA, 21)
		rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
		r := wantVerdict(t, rep, srv, BlackholePaused)
		if !strings.Contains(r.Reason, "out-of-order") || len(r.Pauses) != 1 || r.Pauses[0].Plain != 2 || r.Pauses[0].Open {
			t.Errorf("%v: reason %q pauses %+v", close, r.Reason, r.Pauses)
		}
		if r.Counts["paused"] != 2 || r.Counts["server-data-lost"] != 1 {
			t.Errorf("counts %v", r.Counts)
		}
		if len(r.Also) == 0 || r.Also[0].Verdict != DataBlackholed {
			t.Errorf("also %+v", r.Also)
		}
	}
}

// clientDataLost: a TFO handshake, then the client's request after it
// is retransmitted rtx times (RTO 200 ms, doubling), never acked; the
// client then resets.
func clientDataLost(s *synth, port uint16, isn uint32, at time.Duration, rtx int) time.Duration {
	f := s.flow(bumpPort(cli, port), srv, isn).tfoHandshake(at, cookieA, 21)
	t := at + rtt + 20*time.Microsecond
	f.cseg(t, capture.FlagPSH, 21, 1400, 0)
	f.cseg(t+5*time.Millisecond, capture.FlagPSH, 1000, 400, 0) // a tail loss probe: not at the head
	rto := 200 * time.Millisecond
	for range rtx {
		t += rto
		rto *= 2
		f.cseg(t, capture.FlagPSH, 21, 1000, 0)
	}
	t += 5 * time.Millisecond
	f.cseg(t, capture.FlagRST, 1421, 0, 0)
	f.sseg(t+rtt, 0, 0, 0, 21) // the server acks only the SYN's data
	return t + rtt
}

// The client's data after the handshake is retransmitted into a hole:
// twice and then the client gives up (no third timeout, no detection),
// its next TFO SYN still with the cookie: data-blackholed.
func TestDataBlackholedClientData(t *testing.T) {
	var s synth
	s.flow(cli, srv, 1000).answered(0, cookieA)
	end := clientDataLost(&s, 1, 2000, 10*time.Millisecond, 2)
	s.flow(bumpPort(cli, 2), srv, 3000).accepted(end+10*time.Millisecond, cookieA, 21)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, DataBlackholed)
	if r.Counts["client-data-lost"] != 1 || !strings.Contains(r.Reason, "retransmitted and never acked") {
		t.Errorf("counts %v reason %q", r.Counts, r.Reason)
	}
	if len(r.Pauses) != 0 || len(r.Notes) != 0 {
		t.Errorf("pauses %+v notes %q", r.Pauses, r.Notes)
	}
}

// The third timeout of the data: the kernel detects a blackhole then, and
// the client's next SYN goes out plain.
func TestBlackholeDetectedByDataTimeouts(t *testing.T) {
	var s synth
	s.flow(cli, srv, 1000).answered(0, cookieA)
	end := clientDataLost(&s, 1, 2000, 10*time.Millisecond, 3)
	s.flow(bumpPort(cli, 2), srv, 3000).plain(end + 10*time.Millisecond)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, BlackholePaused)
	if !strings.Contains(r.Reason, "third retransmission timeout") || len(r.Pauses) != 1 || !r.Pauses[0].Open {
		t.Errorf("reason %q pauses %+v", r.Reason, r.Pauses)
	}
	// The pause starts at the third retransmission.
	if d := r.Pauses[0].Start.Sub(t0); d != 10*time.Millisecond+rtt+20*time.Microsecond+1400*time.Millisecond {
		t.Errorf("pause from %v", d)
	}
}

// noAnswer: the server acks the SYN's data, then nothing comes back; the
// client resets after waiting.
func noAnswer(s *synth, port uint16, isn uint32, at, wait time.Duration) {
	f := s.flow(bumpPort(cli, port), srv, isn).tfoHandshake(at, cookieA, 21)
	f.cseg(at+rtt+wait, capture.FlagRST, 21, 0, 0)
}

// The server's answer and FIN are both lost: the client waits, then
// resets, while a connection without SYN data got its answer.
func TestDataBlackholedNoAnswer(t *testing.T) {
	var s synth
	s.flow(cli, srv, 1000).answered(0, cookieA)
	noAnswer(&s, 1, 2000, 10*time.Millisecond, 2500*time.Millisecond)
	noAnswer(&s, 2, 3000, 3*time.Second, 1500*time.Millisecond)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, DataBlackholed)
	if r.Counts["no-answer"] != 2 || !strings.Contains(r.Reason, "answer never came") || !strings.Contains(r.Reason, "1 TFO connection to this server did get data back") {
		t.Errorf("counts %v reason %q", r.Counts, r.Reason)
	}
	if !near(r.CostMS, 1999.99, 0.01) {
		t.Errorf("cost %v", r.CostMS)
	}
}

// Not a blackhole: a server that never answers anyone (nothing to compare
// with), a client that hangs up at once, a capture that ends before the
// client acks, a healthy exchange.
func TestAfterHandshakeNoFalseAlarm(t *testing.T) {
	t.Run("never answers anyone", func(t *testing.T) {
		var s synth
		s.flow(cli, srv, 1000).granted(0, cookieA)
		noAnswer(&s, 1, 2000, 10*time.Millisecond, 2500*time.Millisecond)
		rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
		r := wantVerdict(t, rep, srv, TFOWorks)
		if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "does not answer") {
			t.Errorf("notes %q", r.Notes)
		}
	})
	t.Run("client hangs up at once", func(t *testing.T) {
		var s synth
		s.flow(cli, srv, 1000).answered(0, cookieA)
		noAnswer(&s, 1, 2000, 10*time.Millisecond, 100*time.Millisecond)
		rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
		wantVerdict(t, rep, srv, TFOWorks)
	})
	t.Run("capture ends before the ack", func(t *testing.T) {
		var s synth
		s.flow(cli, srv, 1000).answered(0, cookieA)
		f := s.flow(bumpPort(cli, 1), srv, 2000).tfoHandshake(10*time.Millisecond, cookieA, 21)
		f.sseg(10*time.Millisecond+2*rtt, capture.FlagPSH, 0, 2000, 21)
		later(&s, 5*time.Second)
		rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
		wantVerdict(t, rep, srv, TFOWorks)
	})
	t.Run("healthy", func(t *testing.T) {
		var s synth
		s.flow(cli, srv, 1000).answered(0, cookieA)
		for i := 1; i < 30; i++ {
			at := time.Duration(i) * 10 * time.Millisecond
			f := s.flow(bumpPort(cli, uint16(i)), srv, uint32(1000*(i+1))).tfoHandshake(at, cookieA, 21)
			f.sseg(at+2*rtt, capture.FlagPSH|capture.FlagFIN, 0, 300, 21)
			f.cseg(at+2*rtt+10*time.Microsecond, capture.FlagFIN, 21, 0, 301)
			f.sseg(at+3*rtt, 0, 301, 0, 22)
		}
		rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
		if r := wantVerdict(t, rep, srv, TFOWorks); len(r.Notes) != 0 || len(r.Counts) != 2 {
			t.Errorf("counts %v notes %q", r.Counts, r.Notes)
		}
	})
}

// From the server's end alone: its answer is retransmitted, never acked,
// the client acks only the SYN-ACK and closes.
func TestDataBlackholedServerSide(t *testing.T) {
	var s synth
	s.flow(cli, srv, 1000).atServer().answered(0, cookieA)
	f := s.flow(bumpPort(cli, 1), srv, 2000).atServer()
	at := 10 * time.Millisecond
	f.syn(at, ptr(tfoOpt(cookieA, false)), 21).synack(at+10*time.Microsecond, 21, nil)
	f.cseg(at+rtt, 0, 21, 0, 0)
	for i, d := range []time.Duration{1, 200, 600, 1400} {
		f.sseg(at+rtt+d*time.Millisecond, capture.FlagPSH, 0, 21, 21)
		if i == 0 {
			f.sseg(at+rtt+d*time.Millisecond+10*time.Microsecond, capture.FlagFIN, 21, 0, 21)
			f.cseg(at+2*rtt+d*time.Millisecond, 0, 21, 0, 0) // the client SACKs the FIN: it never got the data
		}
	}
	f.cseg(at+2*rtt+2500*time.Millisecond, capture.FlagFIN, 21, 0, 0)
	rep := run(t, s.write(t, t.TempDir(), "s.pcap", capOpts{}))
	if rep.Files[0].Side != "server" {
		t.Fatalf("side %s", rep.Files[0].Side)
	}
	r := wantVerdict(t, rep, srv, DataBlackholed)
	if r.Counts["server-data-lost"] != 1 || !strings.Contains(r.Reason, "retransmitted it in vain") {
		t.Errorf("counts %v reason %q", r.Counts, r.Reason)
	}
}

// A TFO SYN unanswered, retransmitted once, and the connection gives up
// (tcp_syn_retries = 1): the kernel counts that as a blackhole at once,
// and the client's next connection goes out without its cookie.
func TestBlackholeDetectedAtGiveUp(t *testing.T) {
	build := func(next time.Duration) string {
		var s synth
		s.flow(cli, srv, 1000).answered(0, cookieA)
		s.flow(bumpPort(cli, 1), srv, 2000).syn(10*time.Millisecond, ptr(tfoOpt(cookieA, false)), 21).syn(1010*time.Millisecond, nil, 0)
		s.flow(bumpPort(cli, 2), srv, 3000).plain(next)
		return s.write(t, t.TempDir(), "c.pcap", capOpts{})
	}
	// The next connection comes when the first gives up, at its next
	// timeout (2 s after the retransmission), or sooner (a user timeout).
	for _, next := range []time.Duration{3010 * time.Millisecond, 1025 * time.Millisecond} {
		rep := run(t, build(next))
		r := wantVerdict(t, rep, srv, BlackholePaused)
		if !strings.Contains(r.Reason, "gave up") || r.Counts["stalled-tfo"] != 1 || r.Counts["paused"] != 1 {
			t.Errorf("next at %v: reason %q counts %v", next, r.Reason, r.Counts)
		}
	}
	// Much later, the plain SYN is no longer the pause's doing.
	rep := run(t, build(30*time.Second))
	if r := serverOf(t, rep, srv); r.Verdict == BlackholePaused || r.Counts["paused"] != 0 {
		t.Errorf("a plain SYN long after: %s %v", r.Verdict, r.Counts)
	}

	// The connection did not give up: it sent its SYN again after the
	// plain one, so that was the application's choice, and no pause.
	var s synth
	s.flow(cli, srv, 1000).answered(0, cookieA)
	s.flow(bumpPort(cli, 1), srv, 2000).syn(10*time.Millisecond, ptr(tfoOpt(cookieA, false)), 21).
		syn(1010*time.Millisecond, nil, 0).syn(3010*time.Millisecond, nil, 0)
	s.flow(bumpPort(cli, 2), srv, 3000).plain(1500 * time.Millisecond)
	s.flow(bumpPort(cli, 3), srv, 4000).accepted(4500*time.Millisecond, cookieA, 21)
	rep = run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	if r := serverOf(t, rep, srv); r.Verdict == BlackholePaused || len(r.Pauses) != 0 || len(r.Notes) != 0 {
		t.Errorf("belied give-up: %s %v pauses %+v notes %q", r.Verdict, r.Counts, r.Pauses, r.Notes)
	}
}

// A client that asks again and again for the cookie it was given, with
// the same SYN, and never sends data: the client does not use TFO (its
// data SYNs cannot leave the host). Different SYNs asking (a probe, other
// stacks) are no such client.
func TestClientNeverSendsData(t *testing.T) {
	var s synth
	for i := range 3 {
		s.flow(bumpPort(cli, uint16(i)), srv, uint32(1000*(i+1))).granted(time.Duration(i)*10*time.Millisecond, cookieA)
	}
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, ClientNoTFO)
	if r.Counts["cookie-reasked"] != 2 || r.Counts["granted"] != 1 || r.Problem ||
		!strings.Contains(r.Reason, "never sent data in its SYN although it was granted a cookie") {
		t.Errorf("counts %v problem %v reason %q", r.Counts, r.Problem, r.Reason)
	}

	var p synth
	for i := range 3 {
		f := p.flow(bumpPort(cli, uint16(i)), srv, uint32(1000*(i+1)))
		at := time.Duration(i) * 10 * time.Millisecond
		f.add(spkt{at: at, src: f.c, dst: f.sv, flags: capture.FlagSYN, seq: f.isn, win: 29200 - uint16(i),
			opts: synOpts(0, ptr(tfoOpt(nil, false))), ttl: f.cTTL})
		f.synack(at+rtt, 0, ptr(tfoOpt(cookieA, false))).ack(at + 2*rtt)
	}
	rep = run(t, p.write(t, t.TempDir(), "p.pcap", capOpts{}))
	if r := wantVerdict(t, rep, srv, TFOWorks); r.Counts["granted"] != 3 {
		t.Errorf("probes: counts %v", r.Counts)
	}
	// Once the client sends data, it uses TFO.
	s.flow(bumpPort(cli, 9), srv, 9000).accepted(time.Second, cookieA, 21)
	rep = run(t, s.write(t, t.TempDir(), "c2.pcap", capOpts{}))
	wantVerdict(t, rep, srv, TFOWorks)
}

// pooledTFO writes into cs and ss a cookie grant, then n TFO connections
// 10 ms apart through the VIP; the server-side capture sees connection i
// only when here(i) (it landed on the captured server).
func pooledTFO(cs, ss *synth, n uint16, here func(i uint16) bool) {
	grantedBoth(pairFlow(cs, ss, 0, 1000, realSrv), 0)
	for i := uint16(1); i <= n; i++ {
		at := time.Duration(i) * 10 * time.Millisecond
		e := pairFlow(cs, ss, i, 1000+uint32(i)*1000, realSrv)
		e.c.syn(at, ptr(tfoOpt(cookieA, false)), 19).synack(at+2*owd+10*time.Microsecond, 19, nil).ack(at + 2*owd + 20*time.Microsecond)
		if here(i) {
			e.s.syn(at+owd, ptr(tfoOpt(cookieA, false)), 19).synack(at+owd+10*time.Microsecond, 19, nil).ack(at + 3*owd + 20*time.Microsecond)
		}
	}
}

// A pool of three servers behind a VIP, the server-side capture from one
// of them: the connections that landed on the others are not "dropped".
func TestPartialServerCapture(t *testing.T) {
	var cs, ss synth
	pooledTFO(&cs, &ss, 12, func(i uint16) bool { return i%3 == 0 }) // this server's share
	rep := run(t, writeBothPaths(t, &cs, &ss)...)
	r := wantVerdict(t, rep, vip, TFOWorks)
	if r.Counts["dropped"] != 0 || r.Counts["accepted"] != 12 || rep.Matched != 5 {
		t.Errorf("counts %v matched %d", r.Counts, rep.Matched)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "covers only some of the servers") {
		t.Errorf("warnings %q", rep.Warnings)
	}

	// A single server that really never saw a data SYN keeps "dropped".
	var c1, s1 synth
	pooledTFO(&c1, &s1, 6, func(uint16) bool { return true })
	e := pairFlow(&c1, &s1, 7, 9000, realSrv)
	e.c.syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).syn(2*time.Second, nil, 0)
	grantedBoth(pairFlow(&c1, &s1, 8, 9500, realSrv), 5*time.Second)
	rep = run(t, writeBothPaths(t, &c1, &s1)...)
	r = serverOf(t, rep, vip)
	if r.Counts["dropped"] != 1 || len(rep.Warnings) != 0 {
		t.Errorf("single server: counts %v warnings %q", r.Counts, rep.Warnings)
	}
}

// The server's TFO queue overflows: cookie and data arrive intact, the
// server answers some of those SYNs without TFO and without a fresh
// cookie. From the client alone that looks like a stripped option; with
// the server's capture it is the server refusing.
func TestOverflowBothSides(t *testing.T) {
	var cs, ss synth
	grantedBoth(pairFlow(&cs, &ss, 0, 1000, realSrv), 0)
	for i := uint16(1); i <= 6; i++ {
		at := time.Duration(i) * 10 * time.Millisecond
		acked := 19
		if i%2 == 0 {
			acked = 0 // the queue was full
		}
		e := pairFlow(&cs, &ss, i, 1000+uint32(i)*1000, realSrv)
		e.c.syn(at, ptr(tfoOpt(cookieA, false)), 19).synack(at+2*owd+10*time.Microsecond, acked, nil).ack(at + 2*owd + 20*time.Microsecond)
		e.s.syn(at+owd, ptr(tfoOpt(cookieA, false)), 19).synack(at+owd+10*time.Microsecond, acked, nil).ack(at + 3*owd + 20*time.Microsecond)
	}
	cp, sp := writeBoth(t, &cs, &ss)
	r := wantVerdict(t, run(t, cp), vip, OptionStripped)
	if !strings.Contains(r.Reason, "TFO queue full") {
		t.Errorf("client side: reason %q", r.Reason)
	}
	r = wantVerdict(t, run(t, cp, sp), vip, ServerNoTFO)
	if r.Counts["refused-by-server"] != 3 || !strings.Contains(r.Reason, "TFO queue was full") || !strings.Contains(r.Reason, "no fresh cookie") ||
		r.Reproduce == nil || r.Reproduce.Scenario != "pool/overflow/n1/q1/ipv4" {
		t.Errorf("both sides: counts %v reason %q reproducer %+v", r.Counts, r.Reason, r.Reproduce)
	}
	r = wantVerdict(t, run(t, sp), realSrv, ServerNoTFO)
	if r.Counts["refused-by-server"] != 3 {
		t.Errorf("server side: counts %v", r.Counts)
	}
}

// A refused cookie replaced by a fresh one is never a lost packet: one in
// thirty is enough (a key rotation without the old key kept).
func TestOneRejectedCookieCounts(t *testing.T) {
	var s synth
	s.flow(cli, srv, 1000).granted(0, cookieA)
	for i := uint16(1); i <= 30; i++ {
		f := s.flow(bumpPort(cli, i), srv, 1000+uint32(i)*1000)
		at := time.Duration(i) * 10 * time.Millisecond
		if i == 15 {
			f.syn(at, ptr(tfoOpt(cookieA, false)), 19).synack(at+rtt, 0, ptr(tfoOpt(cookieB, false))).ack(at + 2*rtt)
			continue
		}
		ck := cookieA
		if i > 15 {
			ck = cookieB
		}
		f.accepted(at, ck, 19)
	}
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{ng: true, link: layers.LinkTypeLinuxSLL2}))
	if r := wantVerdict(t, rep, srv, CookieRejected); r.Connections != 1 {
		t.Errorf("connections %d", r.Connections)
	}
}
