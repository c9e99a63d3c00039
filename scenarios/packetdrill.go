package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"
	"golang.org/x/sys/unix"

	. "github.com/tfolab/tfolab/assertions"
)

// Packetdrill parity (issue 23; docs/packetdrill.md maps every script of
// google/packetdrill's gtests/net/tcp/fastopen to the scenarios here and
// elsewhere in the catalogue). Packetdrill fakes the peer; here both ends
// are real Linux sockets, and the calls each end makes are recorded with
// their results (observation.Conn.Calls).

func init() {
	register(PacketdrillScenarios)
	registerMutants(packetdrillMutants)
}

// Ports of the lifecycle scenario's other listeners, on the service's
// address (the client's cookie is per address, so it is good for them all).
const (
	plainPort     = 7003 // a listener without TCP_FASTOPEN
	closingPort   = 7004 // a TFO listener the timeline closes with a child queued
	icmpPort      = 7005 // a TFO listener whose SYN-ACKs the server's own firewall rejects with an ICMP error
	icmpPlainPort = 7007 // the same without TCP_FASTOPEN
	silentPort    = 7006 // SYNs dropped: a connection stays in SYN-SENT
	refusingPort  = 7009 // nothing listens: the kernel answers with an RST
)

// pdPayload is what the lifecycle's clients put in their SYN: 10 bytes,
// as packetdrill's server scripts do.
const pdPayload = "tfolab-pd\n"

// TFO option forms of the lifecycle scenario: option 34 (RFC 7413), or
// the experimental kind 254 with magic 0xF989 that a Linux client falls
// back to after an unanswered request, and a Linux server answers in kind.
const (
	formOpt34 = "opt34"
	formExp   = "exp"
)

// PacketdrillScenarios is the parity part of the catalogue.
func PacketdrillScenarios() []Scenario {
	var out []Scenario
	for _, fam := range []topology.Family{topology.IPv4, topology.IPv6} {
		for _, form := range []string{formOpt34, formExp} {
			out = append(out, ChildLifecycle(form, fam))
		}
		for _, mode := range []tfo.Mode{tfo.ModeSendto, tfo.ModeConnect} {
			out = append(out, ClientAPI(fam, mode))
		}
		out = append(out, PureSynData(fam), SimultaneousFastOpen(fam), RTTFromSynData(fam), SynDataPartlyAcked(fam))
	}
	// One family is enough to show a cookie's length checked.
	return append(out, InvalidCookie(topology.IPv4))
}

// pdLabels are the parity scenarios' labels. They all run on Routed: the
// router's TTL decrement is what tells the diagnoser which end a capture
// was taken at; on Direct it falls back to the handshake's timing, which
// a loaded machine can tip.
func pdLabels(fam topology.Family, more ...string) []string {
	return append([]string{"packetdrill", "routed", strings.ToLower(fam.String())}, more...)
}

// ChildLifecycle is the server scripts' TFO child, with a real client: a
// SYN with a cookie and data makes a child that sits in the accept queue
// with the data; what the acceptor gets after an RST, a FIN, an ICMP-less
// close, a close of the listener, a zero-byte SYN; a cookie sent to a
// listener without TCP_FASTOPEN; and an ordinary socket reset before
// accept. In the exp form the client learns its cookie in the
// experimental option (the server's TFO is off for its first, option-34
// request), and every SYN after carries kind 254.
func ChildLifecycle(form string, fam topology.Family) Scenario {
	main := newScriptedListener(serverQueue, 0)
	closing := newScriptedListener(serverQueue, 0)
	plain := newScriptedListener(0, 0)
	icmp := newScriptedListener(serverQueue, 0)
	icmpPlain := newScriptedListener(0, 0)
	server := tfoServer
	if form == formExp {
		server = tfoClient // off for the first request; on after it
	}
	s := Scenario{
		Name:        fmt.Sprintf("packetdrill/server/child-lifecycle/%s/%s", form, strings.ToLower(fam.String())),
		Description: "the TFO child's lifecycle before and after accept, real client, cookie in the " + form + " form",
		Labels:      pdLabels(fam, "server"),
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     tfoSysctls(tfoClient, server),
		// The child is judged at accept by TCPI_OPT_TFO_CHILD (6.16+),
		// as the scripts judge it.
		KernelNeeds: []string{tfo.FeatureTFOChild},
		Services: []Service{
			{Kind: main},
			{Name: "plain", Port: plainPort, Kind: plain},
			{Name: "closing", Port: closingPort, Kind: closing},
			{Name: "icmp", Port: icmpPort, Kind: icmp},
			{Name: "icmp-plain", Port: icmpPlainPort, Kind: icmpPlain},
		},
		Clients: []Client{{Kind: LabClient{Mode: tfo.ModeSendto}}},
		Middleboxes: []MiddleboxSpec{
			{Box: rejectSynAckBox, Placement: middlebox.ServerSide, Port: icmpPort},
			{Box: rejectSynAckFatalBox, Placement: middlebox.ServerSide, Port: icmpPlainPort},
		},
		Timeout: 10 * time.Second,
	}
	s.Script(ChildLifecycleTimeline(form))
	exp := form == formExp
	tfoSYN := func() Step { return ClientSYN().WithCookie().Experimental(exp).WithPayload(len(pdPayload)) }
	data := []ConnCheck{
		Dialogue(AtServer, tfoSYN(), ServerSYNACK().AckingSYNData()),
		OptionsHave("server", "tcp_info at accept", tcpiOptSynData|tcpiOptTFOChild, true),
	}
	s.Expect = []types.GomegaMatcher{
		// reset-before-accept.pkt: the child stays queued; the acceptor
		// reads the SYN's data, then the reset.
		Labelled("reset-before-accept", append(data,
			Dialogue(AtServer, tfoSYN(), ClientRST()),
			Reported("server", "tcp_info at accept", "CLOSE"),
			Returned("server", "read", len(pdPayload)),
			FailedWith("server", "read again", "ECONNRESET"))...),
		// reset-after-accept.pkt: the same, the RST after accept.
		Labelled("reset-after-accept", append(data,
			Reported("server", "tcp_info at accept", "ESTABLISHED"),
			Returned("server", "read", len(pdPayload)),
			FailedWith("server", "read again", "ECONNRESET"))...),
		// reset-close-with-unread-data.pkt: write fails, close sends no RST.
		Labelled("reset-close-with-unread-data", append(data,
			FailedWith("server", "write", "ECONNRESET"),
			Returned("server", "close", 0),
			NoPacket(AtServer, ServerRST()))...),
		// unread-data-closed-trigger-rst.pkt: close with the SYN's data
		// unread resets the connection.
		Labelled("unread-data-closed-trigger-rst", append(data,
			Dialogue(AtClient, ServerSYNACK(), ServerRST()),
			FailedWith("client", "read", "ECONNRESET"))...),
		// fin-close-socket.pkt: a FIN before accept; the child is in
		// CLOSE_WAIT, the data and then EOF read, close sends the FIN.
		Labelled("fin-close-socket", append(data,
			Reported("server", "tcp_info at accept", "CLOSE_WAIT"),
			Returned("server", "read", len(pdPayload)),
			Returned("server", "read again", 0),
			Dialogue(AtServer, ClientFIN(), ServerFIN()),
			Returned("client", "read", 0))...),
		// basic-zero-payload.pkt: a cookie without data still makes a
		// TFO child, writable at once; read waits for the data.
		Labelled("zero-payload",
			FailedWith("client", "sendto", "EINPROGRESS"),
			Dialogue(AtServer, ClientSYN().WithCookie().Experimental(exp).WithoutPayload(), ServerSYNACK().AckingSYNOnly()),
			OptionsHave("server", "tcp_info at accept", tcpiOptTFOChild, true),
			OptionsHave("server", "tcp_info at accept", tcpiOptSynData, false),
			Returned("server", "write", 100),
			FailedWith("server", "read before data", "EAGAIN"),
			Returned("server", "read", len(pdPayload))),
		// listener-closed-trigger-rst.pkt: closing the listener resets
		// every child it never accepted.
		Labelled("listener-closed-trigger-rst",
			Dialogue(AtServer, tfoSYN(), ServerSYNACK().AckingSYNData(), ServerRST()),
			FailedWith("client", "read", "ECONNRESET")),
		// basic-non-tfo-listener.pkt: a listener without TCP_FASTOPEN
		// ignores the cookie and the data; the client sends it again.
		Labelled("non-tfo-listener",
			Returned("client", "sendto", len(pdPayload)),
			Dialogue(AtServer, tfoSYN(), ServerSYNACK().WithoutFastOpen().AckingSYNOnly(), ClientData().WithPayload(len(pdPayload))),
			OptionsHave("server", "tcp_info at accept", tcpiOptSynData|tcpiOptTFOChild, false),
			Returned("server", "read", len(pdPayload))),
		// reset-non-tfo-socket.pkt: an ordinary established socket reset
		// before accept: queued in CLOSE, write fails, the data then EOF.
		Labelled("reset-non-tfo-socket",
			Dialogue(AtServer, tfoSYN(), ServerSYNACK().WithoutFastOpen().AckingSYNOnly(), ClientData().WithPayload(len(pdPayload)), ClientRST()),
			Reported("server", "tcp_info at accept", "CLOSE"),
			OptionsHave("server", "tcp_info at accept", tcpiOptSynData|tcpiOptTFOChild, false),
			FailedWith("server", "write", "ECONNRESET"),
			Returned("server", "read", len(pdPayload)),
			Returned("server", "read again", 0)),
		// icmp-before-accept.pkt: an ICMP error for the child's SYN-ACK
		// closes it, but it stays queued: the acceptor reads the SYN's
		// data, then the error; the socket is no longer writable.
		Labelled("icmp-before-accept",
			Returned("client", "sendto", len(pdPayload)),
			Dialogue(AtServer, tfoSYN()),
			NoPacket(AtClient, ServerSYNACK()),
			OptionsHave("server", "tcp_info at accept", tcpiOptSynData|tcpiOptTFOChild, true),
			Reported("server", "tcp_info at accept", "CLOSE"),
			Returned("server", "read", len(pdPayload)),
			FailedWith("server", "read again", "EHOSTUNREACH"),
			FailedWith("server", "write", "EPIPE")),
		// icmp-baseline.pkt: the same ICMP error for an ordinary request's
		// SYN-ACK drops the request (counted as a listen drop): nothing
		// to accept.
		Labelled("icmp-baseline",
			Returned("client", "sendto", len(pdPayload)),
			Dialogue(AtServer, tfoSYN()),
			NoPacket(AtClient, ServerSYNACK()),
			FailedWith("server", "accept", "EAGAIN")),
		// Eight TFO children, counted as such; one request dropped.
		CountersOf(topology.Server, HaveCounterDeltas(Delta(lab.TCPFastOpenPassive, 8), Delta(lab.TCPFastOpenPassiveFail, 0), Delta("ListenDrops", 1))),
	}
	// The listener without TCP_FASTOPEN is the worst the diagnoser finds:
	// from the client alone, cookie and data answered by a SYN-ACK without
	// option look like a stripped option; with the server's capture, like
	// a server without TFO, which it is.
	s.Diagnosis = Diagnosis{ClientSide: diagnose.OptionStripped, BothSides: diagnose.ServerNoTFO}
	return s
}

// learnCookieAPI makes the connection that learns the cookie: the
// client's sendto of nothing sends the request; in the exp form the first
// (option 34) goes unanswered, the server's TFO comes on, and the second
// request is in the experimental form.
func learnCookieAPI(ctx context.Context, env *Env, form string, slot *listenerSlot) error {
	if form == formExp {
		learnOnce(env, "learn-34", slot)
		if err := env.WriteSysctl(topology.Server, "net.ipv4.tcp_fastopen", tfoServer); err != nil {
			return err
		}
	}
	learnOnce(env, "learn", slot)
	return ctx.Err()
}

func learnOnce(env *Env, label string, slot *listenerSlot) {
	c := env.newAPIConn(label, "", 0, slot, false)
	c.client(func(s *tfo.Sock) tfo.CallResult {
		return s.Sendto("sendto", nil, unix.MSG_FASTOPEN, c.remote)
	})
	c.client(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
	c.accept()
	c.done()
}

// settle is how long the timeline lets a packet the client just sent
// reach the server's socket before the server's next call: the veth hands
// it over in the sender's own softirq, so this is ample.
const settle = 30 * time.Millisecond

// rejectSynAckBox is the server's own firewall answering its SYN-ACKs
// from the guarded port with an ICMP host (IPv6: address) unreachable,
// delivered to the server's own stack: icmp-before-accept.pkt's ICMP
// error, from a real stack.
var rejectSynAckBox = rejectOwnSynAck("reject-own-synack", "icmp6-addr-unreachable")

// rejectSynAckFatalBox is rejectSynAckBox with, for IPv6, an error that is
// fatal to a request socket (administratively prohibited): an address
// unreachable is not (icmpv6_err_convert), so it would not drop the
// request that icmp-baseline shows dropped.
var rejectSynAckFatalBox = rejectOwnSynAck("reject-own-synack-fatal", "icmp6-adm-prohibited")

func rejectOwnSynAck(name, v6 string) middlebox.Middlebox {
	return middlebox.Middlebox{
		Name:        name,
		Description: "rejects the server's own SYN-ACKs from the guarded port (OUTPUT, REJECT with ICMP host unreachable, IPv6 " + v6 + "): the ICMP error goes to the server's socket",
		Rules: func(f lab.Family, p middlebox.Params) ([]middlebox.Rule, error) {
			with := "icmp-host-unreachable"
			if f == lab.IPv6 {
				with = v6
			}
			return []middlebox.Rule{{Table: "filter", Chain: "OUTPUT", Spec: []string{"-p", "tcp", "--sport", strconv.Itoa(int(p.ServicePort)),
				"--tcp-flags", "SYN,ACK", "SYN,ACK", "-j", "REJECT", "--reject-with", with}}}, nil
		},
	}
}

// ChildLifecycleTimeline is ChildLifecycle's: it drives the scripted
// listeners of the services "" (the main one), plain, closing, icmp and
// icmp-plain, the client learning its cookie in form.
func ChildLifecycleTimeline(form string) Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		var slots []*listenerSlot
		for _, name := range []string{"", "plain", "closing", "icmp", "icmp-plain"} {
			slot, err := env.scriptedSlot(name)
			if err != nil {
				return err
			}
			slots = append(slots, slot)
		}
		return lifecycleTimeline(ctx, env, form, slots[0], slots[1], slots[2], slots[3], slots[4])
	}, "ChildLifecycleTimeline", form)
}

func lifecycleTimeline(ctx context.Context, env *Env, form string, main, plain, closing, icmp, icmpPlain *listenerSlot) error {
	if err := learnCookieAPI(ctx, env, form, main); err != nil {
		return err
	}
	payload := []byte(pdPayload)
	// synData opens connection label to service's listener slot with a
	// SYN that carries the payload.
	synData := func(label, service string, slot *listenerSlot) *apiConn {
		c := env.newAPIConn(label, service, 0, slot, false)
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Sendto("sendto", payload, unix.MSG_FASTOPEN, c.remote) })
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
		return c
	}
	reset := func(c *apiConn) {
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Linger0("SO_LINGER 0") })
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Close("close") })
	}
	// resetAccepted: a SYN-data connection to the main listener, accepted,
	// then reset by the client, the server's socket polled for the RST
	// (POLLRDHUP).
	resetAccepted := func(label string) *apiConn {
		c := synData(label, "", main)
		c.accept()
		reset(c)
		c.server(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLRDHUP, time.Second) })
		return c
	}
	// resetReached resets the connection and waits until the server's
	// established socket has taken the RST (Tcp.EstabResets moves).
	resetReached := func(c *apiConn) {
		base := env.serverCounter("Tcp.EstabResets")
		reset(c)
		waitFor(ctx, time.Second, func() bool { return env.serverCounter("Tcp.EstabResets") > base })
	}
	srvRead := func(c *apiConn, op string) {
		c.server(func(s *tfo.Sock) tfo.CallResult { r, _ := s.Read(op, 512); return r })
	}

	// reset-before-accept
	c := synData("reset-before-accept", "", main)
	resetReached(c)
	c.accept()
	srvRead(c, "read")
	srvRead(c, "read again")
	c.done()

	// reset-after-accept
	c = resetAccepted("reset-after-accept")
	srvRead(c, "read")
	srvRead(c, "read again")
	c.done()

	// reset-close-with-unread-data
	c = resetAccepted("reset-close-with-unread-data")
	c.server(func(s *tfo.Sock) tfo.CallResult { return s.Write("write", make([]byte, 100)) })
	c.server(func(s *tfo.Sock) tfo.CallResult { return s.Close("close") })
	_ = sleepCtx(ctx, settle)
	c.done()

	// unread-data-closed-trigger-rst
	c = synData("unread-data-closed-trigger-rst", "", main)
	c.accept()
	c.server(func(s *tfo.Sock) tfo.CallResult { return s.Close("close") })
	c.client(func(s *tfo.Sock) tfo.CallResult { r, _ := s.ReadWait("read", 512, time.Second); return r })
	c.done()

	// fin-close-socket
	c = synData("fin-close-socket", "", main)
	c.client(func(s *tfo.Sock) tfo.CallResult { return s.Shutdown("shutdown(SHUT_WR)", unix.SHUT_WR) })
	// The server has the FIN once it has acked it: the client is then in
	// FIN_WAIT2.
	waitFor(ctx, time.Second, func() bool { return c.clientState() == "FIN_WAIT2" })
	c.accept()
	srvRead(c, "read")
	srvRead(c, "read again")
	c.server(func(s *tfo.Sock) tfo.CallResult { return s.Close("close") })
	c.client(func(s *tfo.Sock) tfo.CallResult { r, _ := s.ReadWait("read", 512, time.Second); return r })
	c.done()

	// zero-payload
	c = env.newAPIConn("zero-payload", "", 0, main, false)
	c.client(func(s *tfo.Sock) tfo.CallResult { return s.Sendto("sendto", nil, unix.MSG_FASTOPEN, c.remote) })
	c.client(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
	c.accept()
	c.server(func(s *tfo.Sock) tfo.CallResult { return s.Write("write", make([]byte, 100)) })
	c.server(func(s *tfo.Sock) tfo.CallResult {
		r, _ := s.ReadWait("read before data", 512, settle)
		return r
	})
	c.client(func(s *tfo.Sock) tfo.CallResult { return s.Write("write", payload) })
	c.server(func(s *tfo.Sock) tfo.CallResult { r, _ := s.ReadWait("read", 512, time.Second); return r })
	c.done()

	// non-tfo-listener
	c = synData("non-tfo-listener", "plain", plain)
	c.accept()
	c.server(func(s *tfo.Sock) tfo.CallResult { r, _ := s.ReadWait("read", 512, time.Second); return r })
	c.done()

	// reset-non-tfo-socket: as the script, a SYN whose data the server
	// does not take (here the listener without TCP_FASTOPEN), the data
	// after the handshake, then the RST. (A plain connect would do, but a
	// plain SYN from a client that holds a cookie for the address reads,
	// in the client's capture, as a fallback after a lost data SYN.)
	c = synData("reset-non-tfo-socket", "plain", plain)
	resetReached(c)
	c.accept()
	c.server(func(s *tfo.Sock) tfo.CallResult { return s.Write("write", make([]byte, 100)) })
	srvRead(c, "read")
	srvRead(c, "read again")
	c.done()

	// listener-closed-trigger-rst: a child queued, the listener closed
	c = synData("listener-closed-trigger-rst", "closing", closing)
	if ln, err := closing.listener(); err == nil {
		c.add("server", ln.Close("close listener"))
	}
	c.client(func(s *tfo.Sock) tfo.CallResult { r, _ := s.ReadWait("read", 512, time.Second); return r })
	c.done()

	// icmp-before-accept: the SYN-ACK is answered by an ICMP error; the
	// client, which never sees it, is closed before its SYN timer fires.
	c = env.newAPIConn("icmp-before-accept", "icmp", 0, icmp, false)
	unreach := env.serverCounter("Icmp.InDestUnreachs")
	c.client(func(s *tfo.Sock) tfo.CallResult { return s.Sendto("sendto", payload, unix.MSG_FASTOPEN, c.remote) })
	if env.site.Family == topology.IPv4 {
		waitFor(ctx, time.Second, func() bool { return env.serverCounter("Icmp.InDestUnreachs") > unreach })
	} else {
		_ = sleepCtx(ctx, settle) // ICMPv6's counters are in snmp6, which the lab does not read
	}
	c.accept()
	srvRead(c, "read")
	srvRead(c, "read again")
	c.server(func(s *tfo.Sock) tfo.CallResult {
		return s.Sendto("write", make([]byte, 100), unix.MSG_NOSIGNAL, netip.AddrPort{})
	})
	reset(c)
	c.done()

	// icmp-baseline: the same to a listener without TCP_FASTOPEN; the
	// request is gone once ListenDrops moves.
	c = env.newAPIConn("icmp-baseline", "icmp-plain", 0, icmpPlain, false)
	drops := env.serverCounter("ListenDrops")
	c.client(func(s *tfo.Sock) tfo.CallResult { return s.Sendto("sendto", payload, unix.MSG_FASTOPEN, c.remote) })
	waitFor(ctx, time.Second, func() bool { return env.serverCounter("ListenDrops") > drops })
	c.acceptWithin(settle)
	reset(c)
	c.done()
	return ctx.Err()
}

// packetdrillMutants are the parity scenarios' self-checks.
func packetdrillMutants() []Mutant {
	noQueue := ChildLifecycle(formOpt34, topology.IPv4)
	noQueue.Services[0].Kind = newScriptedListener(0, 0)
	// The timeline takes each listener from its service by name: the new
	// one too.
	noMSS := clientAPI(topology.IPv4, tfo.ModeSendto, 0)
	cookieNotReqd := pureSynData(topology.IPv4, tfoServerNoCookie)
	return []Mutant{
		mutant("invalid-cookie: the scripted server's cookie is a valid 16 bytes", invalidCookie(topology.IPv4, bytes.Repeat([]byte{0xc0, 0x0c}, 8)),
			`"again" connections`, "client cookie cache"),
		mutant("syn-data-partial-ack: the scripted server acks all of the SYN's data", synDataPartlyAcked(topology.IPv4, 0),
			`"partial" connections`, "client counters"),
		mutant("rtt-from-syn-data: the router holds packets 30 ms each way, not 15: the sample is twice the RTT expected",
			rttFromSynData(topology.IPv4, 2*rttOneWay), `"data-acked" connections`, `"syn-acked" connections`),
		mutant("simultaneous open without the router's hold: the SYNs do not cross, the first meets a closed port",
			simultaneousFastOpen(topology.IPv4, false), `"simultaneous" connections`),
		mutant("pure-syn-data: the server takes data without a cookie (0x202)", cookieNotReqd,
			`"server-0x2" connections`, "server counters"),
		mutant("client api: the server advertises its full MSS (no TCP_MAXSEG 940): the SYN carries 1420 bytes, not 900", noMSS,
			`"mss" connections`, `"multi-iov" connections`, `"blocking" connections`),
		mutant("child-lifecycle: the main listener without TCP_FASTOPEN (no TFO child)", noQueue,
			`"reset-before-accept" connections`, `"zero-payload" connections`, "server counters"),
	}
}

// PureSynData is pure-syn-data.pkt with a real client: a SYN with data
// and no TFO option at all (the client in no-cookie mode, 0x5) to a TFO
// server that requires cookies, by setsockopt (0x2) or on every listener
// (0x402), or with its TFO off (0x1). Each time the SYN-ACK carries no TFO
// option and acks only the SYN; the client sends its data again.
func PureSynData(fam topology.Family) Scenario {
	return pureSynData(fam, tfoServer)
}

// pureSynDataSteps are the server's sysctl for each connection, by label.
var pureSynDataSteps = []struct{ label, sysctl string }{
	{"server-0x2", ""}, // the scenario's own
	{"server-0x402", "1026"},
	{"server-off", tfoClient},
}

func pureSynData(fam topology.Family, server string) Scenario {
	s := Scenario{
		Name:        fmt.Sprintf("packetdrill/server/pure-syn-data/%s", strings.ToLower(fam.String())),
		Description: "a SYN with data and no TFO option to a server that requires cookies (0x2, 0x402) or has TFO off: a plain SYN-ACK, the data again after it",
		Labels:      pdLabels(fam, "server"),
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     tfoSysctls(tfoClientNoCookie, server),
		Services:    []Service{listener(serverQueue)},
		Clients:     []Client{labClient(tfo.ModeSendto, 0)},
		Timeout:     3 * DefaultConnTimeout,
	}
	s.Script(PureSynDataTimeline())
	for _, st := range pureSynDataSteps {
		s.Expect = append(s.Expect, Labelled(st.label,
			Dialogue(AtServer,
				ClientSYN().WithoutFastOpen().WithPayload(payloadLen),
				ServerSYNACK().WithoutFastOpen().AckingSYNOnly(),
				ClientData().WithPayload(payloadLen)),
			SynDataAcked(false),
			ServerAcceptedSynData(false),
			Responded(),
			FirstByteAfterSynRetransmissions(0)))
	}
	s.Expect = append(s.Expect, serverTFO(0, 0, Delta(lab.TCPFastOpenPassiveFail, 0)))
	s.Diagnosis = diagnosed(diagnose.CookieRejected)
	return s
}

// PureSynDataTimeline is PureSynData's: one connection per server
// sysctl of pureSynDataSteps.
func PureSynDataTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		for _, st := range pureSynDataSteps {
			if st.sysctl != "" {
				if err := env.WriteSysctl(topology.Server, "net.ipv4.tcp_fastopen", st.sysctl); err != nil {
					return err
				}
			}
			env.Dial(ctx, Dial{Label: st.label, Timeout: DefaultConnTimeout})
		}
		return ctx.Err()
	}, "PureSynDataTimeline")
}
