package scenarios

import (
	"embed"
	"fmt"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/rules"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"

	. "github.com/tfolab/tfolab/assertions"
)

// StallBound is how long a middlebox scenario waits for a connection that
// the middlebox black-holes. It is not a tuning knob: it covers the first
// SYN and two SYN retransmissions (1 s and 2 s on this kernel's schedule),
// enough evidence that the kernel keeps retransmitting into the hole, which
// it would go on doing for about two minutes (tcp_syn_retries).
const StallBound = 2500 * time.Millisecond

// Middleboxes is the middlebox catalogue's scenarios: one family of specs
// per TFO-hostile firewall, in the router of the Routed topology unless the
// name says otherwise.
func Middleboxes() []Scenario {
	var out []Scenario
	fams := []topology.Family{topology.IPv4, topology.IPv6}
	modes := []tfo.Mode{tfo.ModeSendto, tfo.ModeConnect}
	for _, fam := range fams {
		for _, mode := range modes {
			out = append(out,
				DropSynData(fam, mode, middlebox.Router),
				ResetSynData(fam, mode),
				RejectSynData(fam, mode),
				LowMTU(fam, mode),
				StripTFOOption(fam, mode),
				DropCookieRequest(fam, mode),
			)
		}
	}
	// Stalling middleboxes cost StallBound per connection: both families,
	// one mode each way round, is enough to show the mode does not matter.
	for _, c := range []struct {
		fam  topology.Family
		mode tfo.Mode
	}{{topology.IPv4, tfo.ModeSendto}, {topology.IPv6, tfo.ModeSendto}, {topology.IPv4, tfo.ModeConnect}} {
		out = append(out, DropTFOSynAck(c.fam, c.mode), BlackholeAfterHandshake(c.fam, c.mode))
	}
	out = append(out,
		DropSynData(topology.IPv4, tfo.ModeSendto, middlebox.ClientSide),
		DropSynData(topology.IPv4, tfo.ModeSendto, middlebox.ServerSide),
		StripTFOOptionFromStart(topology.IPv4, tfo.ModeSendto),
		CustomRules(topology.IPv4, tfo.ModeSendto),
	)
	return append(out, SynAckData()...)
}

// middleboxScenario is the common frame: Routed topology, TFO client and
// server, three connections (a cookie request, then two that would carry
// data), the middlebox in place from the start unless after says otherwise.
func middleboxScenario(box middlebox.Middlebox, pl middlebox.Placement, fam topology.Family, mode tfo.Mode, desc string) Scenario {
	return Scenario{
		Name:        fmt.Sprintf("middlebox/%s/%s/%s/%s", box.Name, pl, strings.ToLower(fam.String()), mode),
		Description: desc,
		Labels:      []string{"middlebox", "routed", strings.ToLower(fam.String())},
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     tfoSysctls(tfoClient, tfoServer),
		Services:    []Service{listener(serverQueue)},
		Clients:     []Client{labClient(mode, 3)},
		Middleboxes: []MiddleboxSpec{{Box: box, Placement: pl}},
	}
}

// threeConns is the expectations of a three-connection frame: first for
// connection 0 (the cookie request), checks for each of connections 1 and
// 2 (which would carry data), then the rest.
func threeConns(first types.GomegaMatcher, checks []ConnCheck, rest ...types.GomegaMatcher) []types.GomegaMatcher {
	return append([]types.GomegaMatcher{first, Conn(1, checks...), Conn(2, checks...)}, rest...)
}

// unansweredTFOSyn is the client link of a TFO connection that gets no
// SYN-ACK: its SYN with cookie and data, then n retransmissions that carry
// neither option 34 nor data (tcp_send_syn_data excludes both from
// retries).
func unansweredTFOSyn(n int) ConnCheck {
	steps := []Step{ClientSYN().WithCookie().WithPayload(payloadLen)}
	for i := 0; i < n; i++ {
		steps = append(steps, ClientSYN().WithoutFastOpen().WithoutPayload())
	}
	return Dialogue(AtClient, steps...)
}

// DropSynData: a firewall that silently drops SYNs carrying payload.
//
// Router or server side: the cookie request (no payload) passes, so the
// client learns a cookie; every later connection sends SYN+cookie+data,
// loses it, and after one initial RTO retransmits a plain SYN (no option 34,
// no data), which passes; the data follows the handshake. The kernel keeps
// trying TFO on each new connection and pays the RTO every time: no
// blackhole detection fires, because only one timeout happens per
// connection. Server side, the server's capture still shows the SYN with
// data (AF_PACKET sees it before the INPUT chain drops it).
//
// Client side (the client's own OUTPUT chain): the drop is a local send
// error, and tcp_send_syn_data falls back on the spot to a SYN with a cookie
// request: no RTO, no failure counted, but no TFO either.
func DropSynData(fam topology.Family, mode tfo.Mode, pl middlebox.Placement) Scenario {
	s := middleboxScenario(middlebox.DropSynData, pl, fam, mode,
		"SYNs with payload dropped: each TFO connection falls back after one RTO, and the next tries TFO again")
	s.Diagnosis = diagnosed(diagnose.SynDataDropped)
	if pl == middlebox.ClientSide {
		// Its data SYNs never leave the host: on the wire, a client that
		// keeps asking for the cookie it was given.
		s.Diagnosis = diagnosed(diagnose.ClientNoTFO)
		s.Description = "the client's own OUTPUT chain drops SYNs with payload: an immediate local fallback to a cookie request, no RTO"
		s.Expect = []types.GomegaMatcher{
			cookieLearned(),
			EveryConn(
				Dialogue(AtClient,
					ClientSYN().WithCookieRequest().WithoutPayload(),
					ServerSYNACK().WithCookie().AckingSYNOnly(),
					ClientData().WithPayload(payloadLen)),
				NoPacket(AtClient, ClientSYN().WithPayload(payloadLen)),
				SynDataAcked(false),
				Responded(),
				FirstByteAfterSynRetransmissions(0)),
			MiddleboxMatched(2),
			clientTFO(0, 0, 0),
			serverTFO(0, 3),
			CookieCached(topology.Client, true),
		}
		return s
	}
	fallback := labEndpoints.synDataDropped(pl == middlebox.ServerSide)
	s.Expect = threeConns(cookieLearned(), fallback, synDataDroppedTotals()...)
	return s
}

// ResetSynData: the firewall answers a SYN with payload with a RST. The
// kernel does not fall back: the RST ends the connection and the
// application gets ECONNREFUSED, on every connection, since the cookie stays
// cached and nothing is counted against TFO.
func ResetSynData(fam topology.Family, mode tfo.Mode) Scenario {
	s := middleboxScenario(middlebox.ResetSynData, middlebox.Router, fam, mode,
		"SYNs with payload answered with RST: every TFO connection is refused, no fallback")
	refused := []ConnCheck{
		Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(payloadLen)),
		NoPacket(AtServer, ClientSYN().WithPayload(payloadLen)),
		Refused(),
		SynDataAcked(false),
	}
	s.Expect = threeConns(cookieLearned(), refused,
		MiddleboxMatched(2),
		clientTFO(0, 0, 0),
		serverTFO(0, 1),
		CookieCached(topology.Client, true))
	s.Diagnosis = diagnosed(diagnose.SynDataDropped)
	return s
}

// StripTFOOption: the firewall appears after the client has learned a
// cookie and strips options 34 and 254 from SYNs. The server gets a SYN
// with data but no cookie, acknowledges only the SYN (RFC 7413 §4.2.2), and
// the client resends its data straight after the handshake: no RTO, but
// TCPFastOpenActiveFail on every connection.
func StripTFOOption(fam topology.Family, mode tfo.Mode) Scenario {
	s := middleboxScenario(middlebox.StripTFOOption, middlebox.Router, fam, mode,
		"options 34/254 stripped after a cookie was learned: the server sees data without a cookie and acks only the SYN")
	s.Middlebox().When = AfterConnections(1)
	stripped := labEndpoints.optionStripped()
	s.Expect = threeConns(cookieLearned(), stripped, optionStrippedTotals()...)
	s.Diagnosis = diagnosed(diagnose.OptionStripped)
	return s
}

// StripTFOOptionFromStart: with the option stripped from the first SYN on,
// the server never sees a cookie request and the client never gets a
// cookie: plain handshakes at no extra cost, the client alternating between
// the standard (34) and the experimental (254) request form.
func StripTFOOptionFromStart(fam topology.Family, mode tfo.Mode) Scenario {
	s := middleboxScenario(middlebox.StripTFOOption, middlebox.Router, fam, mode,
		"options 34/254 stripped from the first SYN: no cookie is ever learned, plain handshakes at no extra cost")
	s.Name = fmt.Sprintf("middlebox/strip-tfo-option-from-start/router/%s/%s", strings.ToLower(fam.String()), mode)
	s.Expect = []types.GomegaMatcher{
		Conn(0, Dialogue(AtClient, ClientSYN().WithCookieRequest().Experimental(false))),
		Conn(1, Dialogue(AtClient, ClientSYN().WithCookieRequest().Experimental(true))),
		EveryConn(
			Dialogue(AtClient, ClientSYN().WithCookieRequest().WithoutPayload(), ServerSYNACK().WithoutFastOpen()),
			Dialogue(AtServer, ClientSYN().WithoutFastOpen().WithoutPayload()),
			ClientFail(tfo.ClientFailNoCookie),
			Responded(),
			FirstByteAfterSynRetransmissions(0)),
		MiddleboxMatched(3),
		clientTFO(0, 0, 0),
		CountersOf(topology.Server, HaveCounterDeltas(Delta(lab.TCPFastOpenCookieReqd, 0))),
		CookieCached(topology.Client, false),
	}
	s.Diagnosis = Diagnosis{ClientSide: diagnose.ServerNoTFO, BothSides: diagnose.OptionStripped}
	return s
}

// dropCookieRequestExpect is what a firewall that drops every SYN with a TFO
// option does: the cookie request is lost, the retransmitted SYN carries no
// option and passes, so every connection pays one RTO and no cookie is ever
// learned. Worse than no TFO at all, and nothing TFO-specific is counted.
func dropCookieRequestExpect(matched uint64) []types.GomegaMatcher {
	return []types.GomegaMatcher{
		EveryConn(
			Dialogue(AtClient,
				ClientSYN().WithCookieRequest().Experimental(false).WithoutPayload(),
				ClientSYN().WithoutFastOpen().WithoutPayload(),
				ServerSYNACK().WithoutFastOpen().AckingSYNOnly(),
				ClientData().WithPayload(payloadLen)),
			NoPacket(AtServer, ClientSYN().WithCookieRequest()),
			ClientFail(tfo.ClientFailNoCookie),
			Responded(),
			FirstByteAfterSynRetransmissions(1)),
		MiddleboxMatched(matched),
		clientTFO(0, 0, 3, Delta(lab.TCPFastOpenBlackhole, 0)),
		CountersOf(topology.Server, HaveCounterDeltas(Delta(lab.TCPFastOpenCookieReqd, 0))),
		CookieCached(topology.Client, false),
	}
}

// DropCookieRequest: a firewall that drops SYNs carrying option 34 or 254.
func DropCookieRequest(fam topology.Family, mode tfo.Mode) Scenario {
	s := middleboxScenario(middlebox.DropCookieRequest, middlebox.Router, fam, mode,
		"SYNs with a TFO option dropped: every connection pays one RTO and no cookie is ever learned")
	s.Expect = dropCookieRequestExpect(3)
	s.Diagnosis = diagnosed(diagnose.SynDataDropped)
	return s
}

// DropTFOSynAck: a stateful firewall drops the SYN-ACKs of flows whose SYN
// carried data. The server accepts the data (its application has the
// request) but the client never completes the handshake: its plain SYN
// retransmissions belong to the same marked flow, so every SYN-ACK is
// dropped and the connection stalls until tcp_syn_retries runs out. The
// cookie stays cached, so the next connection stalls the same way.
func DropTFOSynAck(fam topology.Family, mode tfo.Mode) Scenario {
	s := middleboxScenario(middlebox.DropTFOSynAck, middlebox.Router, fam, mode,
		"SYN-ACKs of flows whose SYN carried data dropped: the server has the request, the client stalls in SYN-SENT")
	s.Client().ConnTimeout = StallBound
	stalled := synAckLost(Dialogue(AtServer,
		ClientSYN().WithCookie().WithPayload(payloadLen),
		ServerSYNACK().AckingSYNData()))
	s.Expect = threeConns(cookieLearned(), stalled,
		CountersOf(topology.Client, HaveCounterDeltas(
			Delta(lab.TCPFastOpenActive, 0),
			Delta(lab.TCPFastOpenBlackhole, 0))),
		serverTFO(2, 1),
		CookieCached(topology.Client, true))
	s.Diagnosis = diagnosed(diagnose.SynackLost)
	return s
}

// synAckLost is a TFO connection whose SYN-ACKs a firewall drops: the
// client's TFO SYN and two plain retransmissions go unanswered, while the
// server accepts the data and answers (atServer shows how); the client
// stalls in SYN-SENT.
func synAckLost(atServer ...ConnCheck) []ConnCheck {
	// The retransmissions within StallBound follow the client's own SYN
	// schedule: 2 with linear timeouts (6.5+), 1 without (6.1: 1 s, 3 s).
	checks := []ConnCheck{UnansweredSynDataBySchedule(StallBound, payloadLen), NoPacket(AtClient, ServerSYNACK())}
	checks = append(checks, atServer...)
	return append(checks, ServerAcceptedSynData(true), Stalled())
}

// BlackholeAfterHandshake: the firewall lets a TFO flow's handshake through
// (the server acks the SYN's data) and then drops every segment with
// payload. It appears after the client has learned a cookie. The client's
// request already arrived in the SYN; the server's answer never comes back:
// the application stalls in read, the server's FIN arriving alone, out of
// order (the pattern the kernel's OFO-FIN blackhole check looks for).
func BlackholeAfterHandshake(fam topology.Family, mode tfo.Mode) Scenario {
	s := middleboxScenario(middlebox.BlackholeAfterHandshake, middlebox.Router, fam, mode,
		"TFO flow's handshake passes, then its data is dropped: the SYN data is acked, the response never arrives")
	s.Middlebox().When = AfterConnections(1)
	s.Client().ConnTimeout = StallBound
	blackholed := append(replyLost(), ServerAcceptedSynData(true), Stalled())
	s.Expect = threeConns(cookieLearned(), blackholed,
		CountersOf(topology.Client, HaveCounterDeltas(
			Delta(lab.TCPFastOpenActive, 2),
			Delta(lab.TCPFastOpenBlackhole, 0))),
		CountersOf(topology.Server, HaveCounterDeltas(Delta(lab.TCPFastOpenPassive, 2))),
		CookieCached(topology.Client, true))
	s.Diagnosis = diagnosed(diagnose.DataBlackholed)
	return s
}

//go:embed testdata/*.rules
var rulesFiles embed.FS

// CustomRulesFile is the iptables-save file the built-in custom scenario
// applies: a guard chain that drops SYNs with option 34.
const CustomRulesFile = "testdata/unknown-option-guard.rules"

// CustomRules: a user's own firewall, loaded from an iptables-save file and
// applied as written in the router. The built-in example drops SYNs with
// option 34 through a user chain, so it must behave exactly as
// drop-cookie-request does (the experimental form passes it, but the kernel
// never sends one here: the retransmitted plain SYN gets through first).
func CustomRules(fam topology.Family, mode tfo.Mode) Scenario {
	s := middleboxScenario(middlebox.Custom(nil), middlebox.Router, fam, mode,
		"rules from "+CustomRulesFile+" (drop SYNs with option 34 via a guard chain): same as drop-cookie-request")
	s.Name = fmt.Sprintf("middlebox/custom/%s/%s/%s", strings.TrimSuffix(strings.TrimPrefix(CustomRulesFile, "testdata/"), ".rules"), strings.ToLower(fam.String()), mode)
	rules, err := LoadRules(CustomRulesFile)
	if err != nil {
		s.Middlebox().Box = middlebox.Middlebox{Name: "custom", Rules: func(lab.Family, middlebox.Params) ([]middlebox.Rule, error) { return nil, err }} // Validate reports it
	} else {
		s.Middlebox().Box = middlebox.Custom(rules)
	}
	// The jump into the guard chain sees all six SYNs (three cookie
	// requests, three plain retransmissions); the drop, the three requests.
	s.Expect = dropCookieRequestExpect(9)
	s.Diagnosis = diagnosed(diagnose.SynDataDropped)
	return s
}

// LoadRules parses one of the embedded example rule files.
func LoadRules(name string) ([]middlebox.Rule, error) {
	f, err := rulesFiles.Open(name)
	if err != nil {
		return nil, fmt.Errorf("rules file %s: %w", name, err)
	}
	defer f.Close()
	rules, err := rules.ParseRulesFile(f)
	if err != nil {
		return nil, fmt.Errorf("rules file %s: %w", name, err)
	}
	return rules, nil
}

// Boxes are the middleboxes the catalogue builds beside middlebox's
// behaviours, each going by its name, as a behaviour does: the server's
// own drop of a silent port and rejections of its SYN-ACKs (packetdrill),
// the pool's hold and release of handshakes, a peer's stray-traffic
// guard, and a path of low MTU.
func Boxes() []middlebox.Middlebox {
	return []middlebox.Middlebox{silentPortBox, rejectSynAckBox, rejectSynAckFatalBox, HoldHandshakes, ReleaseHandshakes, strayGuard, middlebox.LowMTU}
}

// BoxByName finds a behaviour of package middlebox or one of Boxes.
func BoxByName(name string) (middlebox.Middlebox, bool) {
	if b, ok := middlebox.ByName(name); ok {
		return b, true
	}
	for _, b := range Boxes() {
		if b.Name == name {
			return b, true
		}
	}
	return middlebox.Middlebox{}, false
}

// Emptied is the box of that name (BoxByName) with its rules taken away,
// for a self-check: the same name and description, nothing installed.
func Emptied(name string) middlebox.Middlebox {
	b, ok := BoxByName(name)
	if !ok {
		b.Name = name
	}
	b.Rules = func(lab.Family, middlebox.Params) ([]middlebox.Rule, error) { return nil, nil }
	b.Made = &middlebox.Made{Fn: "Emptied", Args: []any{name}}
	return b
}
