package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"
	"golang.org/x/sys/unix"

	. "github.com/tfolab/tfolab/assertions"
)

// rttOneWay is the router's hold each way in the RTT scenario: an RTT of
// 2 × rttOneWay between client and server.
const rttOneWay = 15 * time.Millisecond

// RTTFromSynData is syn-data-rtt-from-syn-data.pkt over a real path: the
// client's first RTT sample is the SYN-ACK's, whether it acks the SYN's
// data (a TFO listener) or only the SYN (a listener without
// TCP_FASTOPEN): tcpi_rtt right after the handshake is the path's RTT.
func RTTFromSynData(fam topology.Family) Scenario {
	return rttFromSynData(fam, rttOneWay)
}

func rttFromSynData(fam topology.Family, oneWay time.Duration) Scenario {
	main := newScriptedListener(serverQueue, 0)
	plain := newScriptedListener(0, 0)
	s := Scenario{
		Name:        fmt.Sprintf("packetdrill/client/rtt-from-syn-data/%s", strings.ToLower(fam.String())),
		Description: fmt.Sprintf("the RTT sample of a SYN-data's SYN-ACK (acking the data, or only the SYN) over a %v round trip", 2*rttOneWay),
		Labels:      append([]string{"packetdrill", "routed", strings.ToLower(fam.String())}, "client"),
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     tfoSysctls(tfoClient, tfoServer),
		Services:    []Service{{Kind: main}, {Name: "plain", Port: plainPort, Kind: plain}},
		Clients:     []Client{{Kind: LabClient{Mode: tfo.ModeSendto}}},
		Middleboxes: []MiddleboxSpec{{Box: middlebox.Delay(oneWay)}},
		Timeout:     5 * time.Second,
	}
	s.Script(RTTTimeline())
	// The sample is the SYN-ACK's round trip, as the client's capture
	// times it (a late delay verdict on a loaded machine lengthens both
	// alike), and that round trip is the path's: the holds both ways, less
	// than twice them.
	within := RTTSampleIsHandshake("tcpi_rtt", 2*rttOneWay)
	s.Expect = []types.GomegaMatcher{
		Labelled("data-acked",
			Returned("client", "sendto", 700),
			Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(700), ServerSYNACK().AckingSYNData()),
			within),
		Labelled("syn-acked",
			Returned("client", "sendto", 700),
			Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(700), ServerSYNACK().AckingSYNOnly()),
			within),
	}
	// As in the child lifecycle: the listener without TCP_FASTOPEN reads
	// as a stripped option from the client's side.
	s.Diagnosis = Diagnosis{ClientSide: diagnose.OptionStripped, BothSides: diagnose.ServerNoTFO}
	return s
}

// RTTTimeline is RTTFromSynData's: a cookie, then a SYN whose data is
// acked and one whose data is not, each reading tcpi_rtt.
func RTTTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		slot, err := env.scriptedSlot("")
		if err != nil {
			return err
		}
		learnOnce(env, "learn", slot)
		for _, d := range []struct{ label, service string }{{"data-acked", ""}, {"syn-acked", "plain"}} {
			c := env.newAPIConn(d.label, d.service, 0, nil, false)
			c.client(func(s *tfo.Sock) tfo.CallResult {
				return s.Sendto("sendto", make([]byte, 700), unix.MSG_FASTOPEN, c.remote)
			})
			c.client(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
			c.client(func(s *tfo.Sock) tfo.CallResult { return s.TCPInfoRTT("tcpi_rtt") })
			c.done()
		}
		return ctx.Err()
	}, "RTTTimeline")
}
