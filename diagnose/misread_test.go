package diagnose

import (
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/tfolab/tfolab/lab/capture"
)

// Readings that were once wrong, each on the smallest capture that shows
// it.

// srvOther is another port of srv's host: the client's cookie cache is per
// host (tcp_metrics), so a cookie it got there goes to every port of it.
const srvOther = "10.0.0.2:81"

// A data SYN to a closed port: the host answers it with a RST as it
// answers any SYN there. Nothing about TFO: the port refused the
// connection.
func TestClosedPortRefusesDataSYN(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(s *synth)
	}{
		{"cookie from another port", func(s *synth) {
			s.flow(cli, srvOther, 500).granted(0, cookieA)
			s.flow(bumpPort(cli, 1), srv, 600).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).rst(time.Second + rtt)
		}},
		{"plain SYNs refused too", func(s *synth) {
			s.flow(cli, srvOther, 500).granted(0, cookieA)
			s.flow(bumpPort(cli, 1), srv, 600).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).rst(time.Second + rtt)
			s.flow(bumpPort(cli, 2), srv, 700).syn(2*time.Second, nil, 0).rst(2*time.Second + rtt)
		}},
		{"data SYNs only", func(s *synth) {
			for i := range uint16(3) {
				at := time.Duration(i) * time.Second
				s.flow(bumpPort(cli, i), srv, 600+uint32(i)).syn(at, ptr(tfoOpt(cookieA, false)), 19).rst(at + rtt)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s synth
			tc.build(&s)
			rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
			r := wantVerdict(t, rep, srv, Inconclusive)
			if r.Problem {
				t.Errorf("a closed port is a problem: %+v", r)
			}
			wantAll(t, "reason", r.Reason, "refused", "RST")
			if len(r.Evidence) == 0 || !strings.Contains(r.Evidence[len(r.Evidence)-1], "Flags [R.]") {
				t.Errorf("evidence %q lacks the RST", r.Evidence)
			}
			for _, a := range r.Also {
				if a.Verdict == SynDataDropped {
					t.Errorf("also %s: %s", a.Verdict, a.Reason)
				}
			}
		})
	}
}

// A listener without TFO (TCP_FASTOPEN not set) answers a cookie and data
// exactly as a server whose SYN lost its option on the way does: a SYN-ACK
// acking only the SYN, no option. From the client alone both are
// possible, and the reason must say so rather than lean to a middlebox.
func TestRefusedNoOptionNamesBothReadings(t *testing.T) {
	// The cookie from this port: TestOptionStrippedClientSide.
	t.Run("cookie from another port", func(t *testing.T) {
		r := wantVerdict(t, cookieThenBareSynAck(t, srvOther), srv, OptionStripped)
		wantAll(t, "reason", r.Reason, "stripped", "without TFO", "TCP_FASTOPEN", srvOther, "server-side capture")
		if strings.Contains(r.Reason, "most likely") {
			t.Errorf("reason leans to one reading: %s", r.Reason)
		}
	})
	// A cookie request answered without a cookie was server-no-tfo
	// already, its reason naming a stripping middlebox too.
	t.Run("cookie request", func(t *testing.T) {
		var s synth
		s.flow(cli, srv, 500).syn(0, ptr(tfoOpt(nil, false)), 0).synack(rtt, 0, nil).ack(rtt + time.Microsecond)
		rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
		r := wantVerdict(t, rep, srv, ServerNoTFO)
		wantAll(t, "reason", r.Reason, "TFO is off on the server", "strips the option")
	})
}

// A SYN-ACK that acks part of the SYN's data: Linux's client marks the
// rest lost and resends it at once after the handshake
// (tcp_rcv_fastopen_synack: TFO_DATA_NOT_ACKED, TCPFastOpenActiveFail).
// TFO works, partly: the reading says so.
func TestPartialSynDataAck(t *testing.T) {
	var s synth
	s.flow(cli, srv, 500).granted(0, cookieA)
	f := s.flow(bumpPort(cli, 1), srv, 600)
	f.syn(time.Second, ptr(tfoOpt(cookieA, false)), 100).synack(time.Second+rtt, 40, nil)
	// The client's ACK, and the rest of its data resent right after.
	at := time.Second + rtt + 20*time.Microsecond
	f.add(spkt{at: at, src: f.c, dst: f.sv, flags: capture.FlagACK, seq: f.isn + 41, ack: f.sisn + 1, win: 502, ttl: f.cTTL})
	f.add(spkt{at: at + time.Microsecond, src: f.c, dst: f.sv, flags: capture.FlagACK | capture.FlagPSH, seq: f.isn + 41, ack: f.sisn + 1, win: 502, payload: 60, ttl: f.cTTL})
	f.add(spkt{at: at + rtt, src: f.sv, dst: f.c, flags: capture.FlagACK | capture.FlagPSH, seq: f.sisn + 1, ack: f.isn + 101, win: 502, payload: 200, ttl: f.sTTL})
	f.add(spkt{at: at + rtt + time.Microsecond, src: f.c, dst: f.sv, flags: capture.FlagACK, seq: f.isn + 101, ack: f.sisn + 201, win: 502, ttl: f.cTTL})
	for _, o := range []capOpts{{}, {ng: true, link: layers.LinkTypeLinuxSLL2}} {
		rep := run(t, s.write(t, t.TempDir(), "c.pcap", o))
		r := wantVerdict(t, rep, srv, TFOWorks)
		wantAll(t, "reason", r.Reason, "part", "40 of 100", "resends")
		if r.Counts["partial-ack"] != 1 || r.Counts["accepted"] != 0 {
			t.Errorf("counts %v", r.Counts)
		}
		if r.Reproduce == nil || r.Reproduce.Scenario != "packetdrill/client/syn-data-partial-ack/ipv4" {
			t.Errorf("reproducer %+v", r.Reproduce)
		}
	}
}
