package assertions

import (
	"context"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/observation"
)

func batchObs(name, link string, flags []capture.TCPFlags, opt34 []bool) *observation.Observation {
	o := observation.New(name, lab.IPv4)
	var pkts []capture.Packet
	for i, f := range flags {
		p := capture.Packet{Flags: f, Frame: make([]byte, 60+i)}
		if opt34[i] {
			p.Options = []layers.TCPOption{{OptionType: capture.OptionKindFastOpen, OptionLength: 2}}
		}
		pkts = append(pkts, p)
	}
	o.Links[link] = &observation.Link{Packets: pkts}
	return o
}

// The batch runs the dissector once over every spooled check and splits
// its frame numbers back: a check whose frames the dissector selected as
// the lab did passes, one it disagrees with fails and names the frame.
func TestDissectBatchSplitsOneRun(t *testing.T) {
	syn, synack, ack := capture.FlagSYN, capture.FlagSYN|capture.FlagACK, capture.FlagACK
	a := batchObs("a", "client/to-router", []capture.TCPFlags{syn, synack, ack}, []bool{true, false, false})
	b := batchObs("b", "server/to-router", []capture.TCPFlags{syn, synack}, []bool{true, true})
	batch := &DissectBatch{Dir: t.TempDir()}
	DeferDissection(batch)
	defer DeferDissection(nil)
	runs := 0
	dissector := func(_ context.Context, pcap string) ([]int, error) {
		runs++
		n, err := pcapFrames(pcap)
		if err != nil {
			return nil, err
		}
		if n != 5 {
			t.Errorf("the merged pcap has %d frames, want 5", n)
		}
		return []int{1, 4}, nil // a's SYN; b's SYN but not its SYN-ACK
	}
	m := DissectorAgrees("tshark agrees", "f", dissector)
	for _, o := range []*observation.Observation{a, b} {
		if ok, ev := m.check(o); !ok {
			t.Fatalf("a deferred check fails at once: %s", ev)
		}
	}
	if runs != 0 {
		t.Fatalf("the dissector ran %d times before the batch", runs)
	}
	vs, err := batch.Run(context.Background(), dissector)
	if err != nil {
		t.Fatal(err)
	}
	if runs != 1 || len(vs) != 2 {
		t.Fatalf("%d dissector runs, %d verdicts; want 1 run, 2 verdicts", runs, len(vs))
	}
	if !vs[0].Pass || vs[0].Scenario != "a" {
		t.Errorf("a: %+v, want a pass", vs[0])
	}
	if vs[1].Pass || !strings.Contains(vs[1].Evidence, "only the lab:       2") {
		t.Errorf("b: %+v, want a failure naming frame 2", vs[1])
	}
	verdicts := []Verdict{{Name: "tshark agrees", Pass: true}}
	if !vs[1].Apply(verdicts) || verdicts[0].Pass {
		t.Errorf("Apply left %+v", verdicts)
	}
}
