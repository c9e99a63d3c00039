package lab

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/tfo"
)

// A client port reused for a later connection to the same server port must
// not hand the earlier connection's packets to the later one, or the other
// way round; a connection on another tuple keeps all of its packets.
func TestConnPacketsReusedTuple(t *testing.T) {
	local := netip.MustParseAddrPort("10.34.1.2:40000")
	other := netip.MustParseAddrPort("10.34.1.2:40001")
	server := netip.MustParseAddrPort("10.34.2.2:7001")
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	syn := func(src, dst netip.AddrPort, ms int) capture.Packet {
		return capture.Packet{Src: src, Dst: dst, Time: at(ms), Flags: capture.FlagSYN}
	}
	o := &Observation{
		Conns: []tfo.Result{
			{Local: local, Remote: server, Start: at(0)},
			{Local: other, Remote: server, Start: at(5)},
			{Local: local, Remote: server, Start: at(10)},
		},
		Packets: map[string][]capture.Packet{"client": {
			syn(local, server, 1), syn(server, local, 2), syn(other, server, 6),
			syn(local, server, 11), syn(server, local, 12),
		}},
	}
	for i, want := range [][]int{{1, 2}, {6}, {11, 12}} {
		got := o.ConnPackets(i, "client")
		if len(got) != len(want) {
			t.Fatalf("connection %d: %d packets, want %d: %+v", i, len(got), len(want), got)
		}
		for k, p := range got {
			if !p.Time.Equal(at(want[k])) {
				t.Errorf("connection %d packet %d at %v, want %v", i, k, p.Time.Sub(t0), time.Duration(want[k])*time.Millisecond)
			}
		}
	}
}
