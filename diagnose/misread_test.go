package diagnose

import (
	"strings"
	"testing"
	"time"
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
	t.Run("cookie from another port", func(t *testing.T) {
		var s synth
		s.flow(cli, srvOther, 500).granted(0, cookieA)
		s.flow(bumpPort(cli, 1), srv, 600).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).
			synack(time.Second+rtt, 0, nil).ack(time.Second + rtt + time.Microsecond)
		rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
		r := wantVerdict(t, rep, srv, OptionStripped)
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
	t.Run("cookie from this port", func(t *testing.T) {
		var s synth
		s.flow(cli, srv, 500).granted(0, cookieA)
		s.flow(bumpPort(cli, 1), srv, 600).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).
			synack(time.Second+rtt, 0, nil).ack(time.Second + rtt + time.Microsecond)
		rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
		r := wantVerdict(t, rep, srv, OptionStripped)
		wantAll(t, "reason", r.Reason, "stripped", "handed out", "server-side capture")
		if strings.Contains(r.Reason, "most likely") {
			t.Errorf("reason leans to one reading: %s", r.Reason)
		}
	})
}
