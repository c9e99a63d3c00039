package assertions

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/probe"
	"github.com/tfolab/tfolab/observation"
)

// TestDiagnose tells a server with TFO off from an option stripped on the
// way, by the captures on both ends.
func TestDiagnose(t *testing.T) {
	src := netip.AddrPortFrom(poolCli, 50000)
	req := &capture.FastOpenOption{}
	build := func(serverSeesOption bool) *observation.Observation {
		o := observation.New("probe", lab.IPv4)
		synAt := func(d time.Duration, fo *capture.FastOpenOption) capture.Packet {
			return capture.Packet{Time: t0.Add(d), Src: src, Dst: poolSvc, Flags: capture.FlagSYN, FastOpen: fo}
		}
		plainSynack := capture.Packet{Time: t0.Add(time.Millisecond), Src: poolSvc, Dst: src, Flags: capture.FlagSYN | capture.FlagACK}
		serverFO := req
		if !serverSeesOption {
			serverFO = nil
		}
		o.Links["client/to-router"] = &observation.Link{Node: "client", Packets: []capture.Packet{synAt(0, req), plainSynack}}
		o.Links["server2/to-router"] = &observation.Link{Node: "server2", Packets: []capture.Packet{synAt(time.Microsecond, serverFO), plainSynack}}
		o.Probes = []probe.Result{{Target: poolSvc, Source: src, Answered: true}}
		return o
	}
	if got, server := Diagnose(build(true), 0); got != CauseServerOff || server != "server2" {
		t.Errorf("option reached the server: %s (%s)", got, server)
	}
	if got, _ := Diagnose(build(false), 0); got != CauseStrippedOnWay {
		t.Errorf("option stripped: %s", got)
	}
}
