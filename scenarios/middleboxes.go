package scenarios

import (
	"context"
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

// Middleboxes that answer the data SYN with an ICMP error: a REJECT rule
// that sends destination-unreachable, and a hop whose MTU is below the
// data SYN.

// rejectErrno is what the application gets when reject-syn-data answers
// its SYN: tcp_v4_err maps ICMP type 3 code 13 (communication
// administratively prohibited) to EHOSTUNREACH, tcp_v6_err/icmpv6_err_convert
// ICMPv6 type 1 code 1 to EACCES; both fatal in SYN-SENT.
func rejectErrno(fam topology.Family) string {
	if fam == topology.IPv6 {
		return "EACCES"
	}
	return "EHOSTUNREACH"
}

// RejectSynData: the firewall answers a SYN with payload with ICMP
// "administratively prohibited". In SYN-SENT the kernel treats it as a
// hard error: the connection ends at once with EHOSTUNREACH (IPv4) or
// EACCES (IPv6), before any retransmission. Nothing is counted against TFO
// and the cookie stays cached, so every later connection fails the same
// way: as costly as reset-syn-data, with a misleading error.
func RejectSynData(fam topology.Family, mode tfo.Mode) Scenario {
	s := middleboxScenario(middlebox.RejectSynData, middlebox.Router, fam, mode,
		"SYNs with payload answered with ICMP administratively prohibited: every TFO connection fails at once ("+rejectErrno(fam)+"), no fallback")
	rejected := []ConnCheck{
		Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(payloadLen)),
		NoPacket(AtClient, ClientSYN().WithoutFastOpen().WithoutPayload()),
		NoPacket(AtClient, ServerSYNACK()),
		NoPacket(AtServer, ClientSYN().WithPayload(payloadLen)),
		ConnFailedWith(rejectErrno(fam), lab.InitialRTO),
		SynDataAcked(false),
	}
	// After the RTO a plain connection: the path is open to SYNs without
	// data, and the captures go on past the second the kernel would have
	// waited to retransmit: no retransmission of the refused SYNs came.
	s.Script(ThenPlainAfterRTO())
	s.Timeout = 3*DefaultConnTimeout + lab.InitialRTO + DefaultConnTimeout
	plain := Conn(3,
		Dialogue(AtClient, ClientSYN().WithoutFastOpen().WithoutPayload(), ServerSYNACK().WithoutFastOpen()),
		Responded())
	var icmp []CounterDelta
	if fam == topology.IPv4 {
		// /proc/net/snmp's Icmp line; IPv6 counts in snmp6, which the lab
		// does not read.
		icmp = []CounterDelta{Delta("Icmp.InDestUnreachs", 2)}
	}
	s.Expect = threeConns(cookieLearned(), rejected,
		plain,
		MiddleboxMatched(2),
		clientTFO(0, 0, 0, icmp...),
		serverTFO(0, 1),
		CookieCached(topology.Client, true))
	// A TCP capture shows data SYNs that got no TCP answer and were never
	// retransmitted though the capture went on past the RTO: the ICMP
	// error (not in a TCP capture) is what dropped them.
	s.Diagnosis = diagnosed(diagnose.SynDataDropped)
	return s
}

// ThenPlainAfterRTO is the sequential timeline, then, once the first
// SYN retransmission timeout has passed, one plain connection.
func ThenPlainAfterRTO() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		if err := Sequential(ctx, env); err != nil {
			return err
		}
		t := time.NewTimer(lab.InitialRTO + 250*time.Millisecond)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		env.Dial(ctx, Dial{Label: "plain-after-rto", Plain: true, Timeout: DefaultConnTimeout})
		return ctx.Err()
	}, "ThenPlainAfterRTO")
}

// lowMTUPayload is a request too big for a LowMTUBytes hop when it rides
// in a SYN sized for a 1,500-byte path, yet small enough for that SYN
// (tcp_send_syn_data: MSS of the path MTU less 40 bytes of option space).
var lowMTUPayload = "GET /" + strings.Repeat("x", 1294) + "\n"

// lowMTUReply is the listener's reply in the low-mtu scenarios: short, so
// that only the client's packets meet the lowered MTU.
const lowMTUReply = "ok\n"

// LowMTU: the path's MTU drops below the data SYN after the client has
// learned a cookie (a tunnel hop appears). The router answers the data
// SYN with ICMP fragmentation needed / packet too big.
func LowMTU(fam topology.Family, mode tfo.Mode) Scenario {
	s := middleboxScenario(middlebox.LowMTU, middlebox.Router, fam, mode,
		"the path MTU drops to 1280 after a cookie was learned: the router answers the data SYN with frag-needed/packet-too-big")
	s.Middlebox().When = AfterConnections(1)
	s.Client().Payload = []byte(lowMTUPayload)
	s.Service().Kind = Listener{Queue: serverQueue, Reply: []byte(lowMTUReply)}
	reply := RepliedWith([]byte(lowMTUReply))
	s.Expect = []types.GomegaMatcher{
		Conn(0,
			Dialogue(AtClient,
				ClientSYN().WithCookieRequest().WithoutPayload(),
				ServerSYNACK().WithCookie()),
			reply,
			FirstByteAfterSynRetransmissions(0)),
		Conn(1,
			Dialogue(AtClient,
				ClientSYN().WithCookie().WithPayload(len(lowMTUPayload)),
				ClientSYN().WithoutFastOpen().WithoutPayload(),
				ServerSYNACK().WithoutFastOpen().AckingSYNOnly()),
			NoPacket(AtServer, ClientSYN().WithPayload(len(lowMTUPayload))),
			SynDataAcked(false),
			ClientFail(tfo.ClientFailSynRetransmitted),
			ServerAcceptedSynData(false),
			reply,
			// The ICMP error, not the retransmission timer, sends the
			// plain SYN: no RTO is paid.
			FirstByteAfterSynRetransmissions(0)),
		Conn(2,
			Dialogue(AtClient,
				ClientSYN().WithCookie().WithPayload(lowMTUSynData(fam)),
				ServerSYNACK().AckingSYNData()),
			SynDataAcked(true),
			ServerAcceptedSynData(true),
			reply,
			FirstByteAfterSynRetransmissions(0)),
		MiddleboxMatched(1),
		clientTFO(1, 1, 1, lowMTUICMP(fam)...),
		serverTFO(1, 1),
		CookieCached(topology.Client, true),
	}
	// The data SYN went unanswered (the ICMP error is no TCP), the plain
	// retransmission was answered: a drop, at no RTO.
	s.Diagnosis = diagnosed(diagnose.SynDataDropped)
	return s
}

// lowMTUSynData is how much of the request a SYN carries once the client
// knows the LowMTUBytes path MTU (tcp_send_syn_data): the MSS of that MTU
// (less the IP and TCP headers) less MAX_TCP_OPTION_SPACE, 40 bytes.
func lowMTUSynData(fam topology.Family) int {
	ipHeader := 20
	if fam == topology.IPv6 {
		ipHeader = 40
	}
	return middlebox.LowMTUBytes - ipHeader - 20 - 40
}

// lowMTUICMP is the client's count of the router's one ICMP error, where
// the lab reads it: /proc/net/snmp has IPv4's Icmp line; IPv6 counts in
// snmp6, which it does not read.
func lowMTUICMP(fam topology.Family) []CounterDelta {
	if fam == topology.IPv6 {
		return nil
	}
	return []CounterDelta{Delta("Icmp.InDestUnreachs", 1)}
}

func init() { registerMutants(icmpMutants) }

// icmpMutants: low-mtu is an installer, so it gets no derived wrong-port
// mutant; its self-check puts the low hop on the path from the start,
// where the cookie-learning connection's own data finds the lower MTU
// first (path MTU discovery after the handshake) and every data SYN after
// it is sized to fit: connection 1 must then not look like a dropped SYN.
func icmpMutants() []Mutant {
	early := LowMTU(topology.IPv4, tfo.ModeSendto)
	early.Middlebox().When = AtStart
	return []Mutant{mutant("low-mtu hop present before the cookie was learned (its MTU found by the first connection's data)", early,
		"connection 1", "client counters")}
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
		if err := learnCookieThenBox(ctx, env); err != nil {
			return err
		}
		_, ok, err := detect(ctx, env, 1)
		return thenDial(ctx, env, ok, err, "after")
	}, "DetectThenPlainTimeline")
}
