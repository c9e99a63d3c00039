package scenarios

import (
	"context"
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
