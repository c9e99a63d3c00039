package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"

	. "github.com/tfolab/tfolab/assertions"
)

// Data in the SYN-ACK (issue 3, item 6; the seed's second firewall case).
// A Linux server never sends any, so these scenarios replace the service
// with lab/rawpeer (Scenario.Server.Greeting): a server that speaks first
// and, for a TFO client, puts its greeting in the SYN-ACK, acknowledging
// the SYN's data as a TFO server does.

// Greeting is what the scripted server says first: in the SYN-ACK of a TFO
// SYN, after the handshake otherwise.
const Greeting = "220 tfolab speaks first\r\n"

// greetingLen is the greeting's size in bytes, as the captures see it.
var greetingLen = len(Greeting)

// scriptedCookie is the cookie the scripted server hands out. It does not
// check cookies, so any even length from 4 to 16 bytes would do.
var scriptedCookie = []byte{0x74, 0x13, 0x74, 0x13, 0xfa, 0xce, 0xfe, 0xed}

// SynAckData is the catalogue's SYN-ACK-with-data scenarios: the open path
// in every family and mode, the middlebox that drops such SYN-ACKs (both
// families, both modes once: each stalls for StallBound twice), and what
// blackhole detection does about it.
func SynAckData() []Scenario {
	var out []Scenario
	for _, fam := range []topology.Family{topology.IPv4, topology.IPv6} {
		for _, mode := range []tfo.Mode{tfo.ModeSendto, tfo.ModeConnect} {
			out = append(out, SynAckDataOpenPath(fam, mode))
		}
	}
	return append(out,
		DropSynAckData(topology.IPv4, tfo.ModeSendto),
		DropSynAckData(topology.IPv6, tfo.ModeSendto),
		DropSynAckData(topology.IPv4, tfo.ModeConnect),
		DropSynAckDataDetected(),
	)
}

// synAckDataScenario is the frame: Routed topology, TFO client, the
// scripted server, three connections (a cookie request, then two with
// data in the SYN).
func synAckDataScenario(name string, fam topology.Family, mode tfo.Mode, desc string) Scenario {
	return Scenario{
		Name:        fmt.Sprintf("%s/%s/%s", name, strings.ToLower(fam.String()), mode),
		Description: desc,
		Labels:      []string{"middlebox", "rawpeer", "routed", strings.ToLower(fam.String())},
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     map[string]map[string]string{topology.Client: {"net.ipv4.tcp_fastopen": tfoClient}},
		Services:    []Service{{Kind: ScriptedPeer{Greeting: []byte(Greeting), Cookie: scriptedCookie}}},
		Clients:     []Client{labClient(mode, 3)},
	}
}

// greetedWithCookie is the cookie request on an open path: the SYN-ACK
// brings the cookie and the greeting, and the client reads it without a
// round trip of its own.
//
// tcpi_options then reports TCPI_OPT_SYN_DATA although the client's SYN
// carried none: the client queues the SYN-ACK's payload with
// tcp_fastopen_add_skb, written for the passive side, which sets
// syn_data_acked. A quirk to know before reading that flag on a client.
func greetedWithCookie() []ConnCheck {
	return []ConnCheck{
		Dialogue(AtClient,
			ClientSYN().WithCookieRequest().WithoutPayload(),
			ServerSYNACK().WithCookie().WithPayload(greetingLen)),
		SynDataAcked(true),
		ClientFail(tfo.ClientFailNoCookie),
		RepliedWith([]byte(Greeting)),
		FirstByteAfterSynRetransmissions(0),
	}
}

// SynAckDataOpenPath: nothing in the way. The Linux client takes the
// SYN-ACK's payload: after a cookie request it learns the cookie and reads
// the greeting; with a cookie its SYN data is acked in the same SYN-ACK
// that brings the greeting: request and reply in one round trip.
func SynAckDataOpenPath(fam topology.Family, mode tfo.Mode) Scenario {
	s := synAckDataScenario("synack-data/open-path", fam, mode,
		"a server that greets in its SYN-ACK, nothing in the way: the client reads the greeting from the SYN-ACK")
	s.Expect = threeConns(Conn(0, greetedWithCookie()...), fullTFOWithGreeting(),
		clientTFO(2, 0, 0),
		// The server namespace's kernel served nothing: the peer did.
		CountersOf(topology.Server, HaveCounterDeltas(Delta(lab.TCPFastOpenPassive, 0))),
		CookieCached(topology.Client, true))
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	return s
}

func fullTFOWithGreeting() []ConnCheck {
	return []ConnCheck{
		Dialogue(AtClient,
			ClientSYN().WithCookie().WithPayload(payloadLen),
			ServerSYNACK().AckingSYNData().WithPayload(greetingLen)),
		// The request went in the SYN and nowhere else.
		NoPacket(AtClient, ClientData()),
		SynDataAcked(true),
		ServerAcceptedSynData(true),
		RepliedWith([]byte(Greeting)),
		FirstByteAfterSynRetransmissions(0),
	}
}

// DropSynAckData: after the client has learned a cookie, a firewall starts
// dropping SYN-ACKs that carry payload. The server takes the request from
// the SYN and greets in its SYN-ACK, which never arrives. The kernel's
// fallback, a retransmitted SYN without option or data, does not help: it
// is the same connection, so the server answers it with the same SYN-ACK,
// payload and all. Unlike drop-syn-data there is no fallback at all: the
// connection is stuck in SYN-SENT until tcp_syn_retries runs out (131 s
// by the schedule), every connection, and the kernel learns nothing from it
// (no SYN-ACK, so no fo_syn_drops; only ActiveFail at the 3rd SYN timeout,
// as for any TFO SYN that times out three times).
func DropSynAckData(fam topology.Family, mode tfo.Mode) Scenario {
	s := synAckDataScenario("middlebox/drop-synack-data/router", fam, mode,
		"SYN-ACKs with payload dropped: the server greets in its SYN-ACK, the client stalls in SYN-SENT, no fallback")
	s.Middleboxes = []MiddleboxSpec{{Box: middlebox.DropSynAckData, When: AfterConnections(1)}}
	s.Client().ConnTimeout = StallBound
	stalled := synAckLost(
		// The retransmitted plain SYN gets the same SYN-ACK as the first:
		// that is why the kernel's fallback cannot work here.
		Dialogue(AtServer,
			ClientSYN().WithCookie().WithPayload(payloadLen),
			ServerSYNACK().AckingSYNData().WithPayload(greetingLen),
			ClientSYN().WithoutFastOpen().WithoutPayload(),
			ServerSYNACK().AckingSYNData().WithPayload(greetingLen)),
		NoPacket(AtServer, ServerSYNACK().WithoutPayload()))
	s.Expect = threeConns(Conn(0, greetedWithCookie()...), stalled,
		// Per stalled connection: the first SYN-ACK and the answers to
		// two SYN retransmissions, at least (the peer's own timer adds
		// more).
		MiddleboxMatchedAtLeast(6),
		// ActiveFail is left out: the kernel counts it at the 3rd SYN
		// timeout (3 s), and whether a stalled connection lives that long
		// depends on how late the lab gives it up on a loaded VM.
		CountersOf(topology.Client, HaveCounterDeltas(
			Delta(lab.TCPFastOpenActive, 0),
			Delta(lab.TCPFastOpenBlackhole, 0))),
		CookieCached(topology.Client, true),
		SynDropsCached(topology.Client, 0))
	s.Diagnosis = diagnosed(diagnose.SynackLost)
	return s
}

// DropSynAckDataDetected: the same firewall with blackhole detection on
// (tcp_fastopen_blackhole_timeout_sec 60). The connection into the hole
// still stalls, but its 3rd SYN timeout pauses active TFO, and the next
// connection goes out as a plain SYN despite the cached cookie: the server
// answers it with a plain SYN-ACK and greets after the handshake, so the
// client is served with no RTO. Detection is the only way out here; it is
// off by default in a new namespace (0 since Linux 5.14).
func DropSynAckDataDetected() Scenario {
	s := synAckDataScenario("middlebox/drop-synack-data/router/detected", topology.IPv4, tfo.ModeSendto,
		"SYN-ACKs with payload dropped, blackhole detection on: the stalled connection pauses TFO, the next one is served plainly")
	s.Labels = append(s.Labels, "blackhole")
	s.Sysctls[topology.Client]["net.ipv4.tcp_fastopen_blackhole_timeout_sec"] = "60"
	s.Middleboxes = []MiddleboxSpec{{Box: middlebox.DropSynAckData, When: cookieLearnedMoment}}
	s.Script(DetectThenPlainTimeline())
	// The detection bound (4th SYN retransmission + 1 RTO) and two
	// connections that take a round trip each.
	s.Timeout = 5*time.Second + 2*lab.InitialRTO
	s.Expect = []types.GomegaMatcher{
		Labelled("learn", greetedWithCookie()...),
		Labelled("detect",
			unansweredTFOSyn(3),
			NoPacket(AtClient, ServerSYNACK())),
		Labelled("after",
			Dialogue(AtClient,
				ClientSYN().WithoutFastOpen().WithoutPayload(),
				ServerSYNACK().WithoutFastOpen().AckingSYNOnly().WithoutPayload(),
				ServerData().WithPayload(greetingLen)),
			Dialogue(AtClient, ClientData().WithPayload(payloadLen)),
			SynDataAcked(false),
			RepliedWith([]byte(Greeting)),
			FirstByteAfterSynRetransmissions(0)),
		blackholesCounted(1,
			Delta(lab.TCPFastOpenActiveFail, 1),
			Delta(lab.TCPFastOpenActive, 0)),
	}
	s.Diagnosis = diagnosed(diagnose.BlackholePaused)
	return s
}

// DetectThenPlainTimeline is DropSynAckDataDetected's: a cookie, the
// moment the box goes in, detection 1, then one connection.
func DetectThenPlainTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		learnCookie(ctx, env)
		if err := env.Moment(cookieLearnedMoment); err != nil {
			return err
		}
		if _, ok, err := detect(ctx, env, 1); err != nil || !ok {
			return err
		}
		env.Dial(ctx, Dial{Label: "after", Timeout: lab.InitialRTO})
		return nil
	}, "DetectThenPlainTimeline")
}
