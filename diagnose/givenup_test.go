package diagnose

import (
	"strings"
	"testing"
	"time"
)

// A data SYN with no TCP answer, never retransmitted though the capture
// goes on past the RTO (a plain connection 1.3 s later): an ICMP reject.
func TestSynDataGivenUp(t *testing.T) {
	var s synth
	s.flow(cli, srv, 500).granted(0, cookieA)
	s.flow(bumpPort(cli, 1), srv, 600).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19)
	s.flow(bumpPort(cli, 2), srv, 700).syn(time.Second+time.Millisecond, ptr(tfoOpt(cookieA, false)), 19)
	s.flow(bumpPort(cli, 3), srv, 800).plain(2300 * time.Millisecond)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	r := wantVerdict(t, rep, srv, SynDataDropped)
	if r.Reproduce.Middlebox != "reject-syn-data" || !strings.Contains(r.Reproduce.Rules, "REJECT --reject-with icmp-admin-prohibited") ||
		r.Reproduce.Scenario != "middlebox/reject-syn-data/router/ipv4/sendto" {
		t.Errorf("reproducer %+v", r.Reproduce)
	}
	wantAll(t, "reason", r.Reason, "2 TFO SYNs with data got no TCP answer and were never retransmitted")
}

// The same SYNs with the capture ending within the second: nothing shows
// they were given up (the kernel might still retransmit), so no verdict
// rests on them.
func TestSynDataUnansweredAtCaptureEnd(t *testing.T) {
	var s synth
	s.flow(cli, srv, 500).granted(0, cookieA)
	s.flow(bumpPort(cli, 1), srv, 600).syn(time.Second, ptr(tfoOpt(cookieA, false)), 19)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	for _, sv := range rep.Servers {
		if sv.Verdict == SynDataDropped {
			t.Errorf("verdict %s from a SYN the capture ended 0 s after", sv.Verdict)
		}
	}
}
