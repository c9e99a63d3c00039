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

// The client scripts' API contracts (google/packetdrill
// gtests/net/tcp/fastopen/client), on a real socket against a real
// server: what sendto(MSG_FASTOPEN), connect() with TCP_FASTOPEN_CONNECT,
// write, read, poll and sendmsg return, and what goes in the SYN. Then the
// client scripts that need a path or a peer of their own: the
// simultaneous open (SYNs held on the router until they cross), the RTT
// sample of a SYN-data's SYN-ACK (over a delayed path), and a scripted
// server's partial ack and invalid cookie (PartialAckPeer).

// apiMSS is the MSS the server advertises (TCP_MAXSEG on its listener),
// as the scripts' servers do ("mss 940"): the client caches it with the
// cookie and bounds the next SYN's data by it.
const apiMSS = 940

// userMSS is the client's own TCP_MAXSEG in "user-mss", below the cached
// MSS.
const userMSS = 800

// synDataSpace is what the SYN then carries of a larger write: the cached
// MSS less the 40 bytes of option space the kernel keeps free for
// middleboxes that add options (tcp_send_syn_data).
const synDataSpace = apiMSS - 40

// silentPortBox drops every segment to the guarded port on the server
// node: a connection there stays in SYN-SENT for as long as the timeline
// needs (a real server's SYN-ACK would end SYN-SENT within microseconds).
var silentPortBox = middlebox.Middlebox{
	Name:        "drop-port",
	Description: "drops every TCP segment to the guarded port on the server's INPUT: connections to it stay in SYN-SENT",
	Rules: func(_ lab.Family, p middlebox.Params) ([]middlebox.Rule, error) {
		return []middlebox.Rule{{Table: "filter", Chain: "INPUT", Spec: []string{"-p", "tcp", "--dport", strconv.Itoa(int(p.ServicePort)), "-j", "DROP"}}}, nil
	},
}

// ClientAPI is the client scripts' errno, poll, MSS and sendmsg contracts
// in one mode and family.
func ClientAPI(fam topology.Family, mode tfo.Mode) Scenario {
	return clientAPI(fam, mode, apiMSS)
}

func clientAPI(fam topology.Family, mode tfo.Mode, maxseg int) Scenario {
	main := newScriptedListener(serverQueue, maxseg)
	s := Scenario{
		Name:        fmt.Sprintf("packetdrill/client/api/%s/%s", strings.ToLower(fam.String()), mode),
		Description: "the TFO client's socket API contracts (errnos, poll, SYN-data size, sendmsg) against a real server advertising MSS 940",
		Labels:      pdLabels(fam, "client"),
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     tfoSysctls(tfoClient, tfoServer),
		Services:    []Service{{Kind: main}},
		Clients:     []Client{{Kind: LabClient{Mode: mode}}},
		Middleboxes: []MiddleboxSpec{{Box: silentPortBox, Placement: middlebox.ServerSide, Port: silentPort}},
		Timeout:     10 * time.Second,
	}
	s.Script(ClientAPITimeline(mode))
	sendto := mode == tfo.ModeSendto
	first := "sendto"
	if !sendto {
		first = "connect"
	}
	s.Expect = []types.GomegaMatcher{
		// nonblocking-*-errnos: TFO off in the sysctl.
		Labelled("disabled", FailedWith("client", wantOp(sendto, "sendto", "TCP_FASTOPEN_CONNECT"), "EOPNOTSUPP")),
		// sendto-af-unspec: no disconnect through sendto(MSG_FASTOPEN).
		Labelled("af-unspec", FailedWith("client", "sendto AF_UNSPEC", "EOPNOTSUPP")),
		// No cookie: a cookie request, no data, EINPROGRESS; then
		// EALREADY, EAGAIN while in SYN-SENT; poll reports nothing.
		Labelled("syn-sent-no-cookie",
			FailedWith("client", first, "EINPROGRESS"),
			FailedWith("client", "sendto again", "EALREADY"),
			FailedWith("client", "write", "EAGAIN"),
			FailedWith("client", "read", "EAGAIN"),
			Reported("client", "poll", "none"),
			Reported("client", "tcp_info", "SYN_SENT"),
			Dialogue(AtClient, ClientSYN().WithCookieRequest().WithoutPayload())),
		Labelled("learn",
			FailedWith("client", first, "EINPROGRESS"),
			Reported("client", "poll", "POLLOUT"),
			Dialogue(AtClient, ClientSYN().WithCookieRequest(), ServerSYNACK().WithCookie())),
		// A cookie: the data goes in the SYN at once, no EINPROGRESS;
		// still EALREADY and EAGAIN in SYN-SENT.
		Labelled("syn-sent-cookie", append(synSentCookie(sendto),
			Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(800)),
			FailedWith("client", "sendto again", "EALREADY"),
			FailedWith("client", "write again", "EAGAIN"),
			Reported("client", "tcp_info", "SYN_SENT"))...),
		// nonblocking-sendto-empty-buf: nothing to send is a plain connect
		// even with a cookie.
		Labelled("empty-buf",
			FailedWith("client", "sendto", "EINPROGRESS"),
			Reported("client", "poll", "POLLOUT"),
			OptionsHave("client", "tcp_info", tcpiOptSynData, false),
			Dialogue(AtClient, ClientSYN().WithCookie().WithoutPayload())),
		// syn-data-mss, nonblocking-sendto-over-mss: the SYN takes the
		// cached MSS less 40 bytes, the rest follows the handshake.
		Labelled("mss",
			Returned("client", wantOp(sendto, "sendto", "write"), synDataSpace),
			Reported("client", "poll", "POLLOUT"),
			OptionsHave("client", "tcp_info", tcpiOptSynData, true),
			Returned("client", "write rest", 2000-synDataSpace),
			Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(synDataSpace), ServerSYNACK().AckingSYNData(), ClientData().WithPayload(2000-synDataSpace))),
		// syn-data-mss: the socket's own TCP_MAXSEG bounds the SYN's data
		// too (min of it and the cached MSS, less 40).
		Labelled("user-mss",
			Returned("client", "TCP_MAXSEG", 0),
			Returned("client", wantOp(sendto, "sendto", "write"), userMSS-40),
			Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(userMSS-40), ServerSYNACK().AckingSYNData())),
		// nonblocking-sendmsg-multi-iov: three iovecs, the SYN's share.
		Labelled("multi-iov",
			Returned("client", "sendmsg", synDataSpace),
			Reported("client", "poll", "POLLOUT"),
			Returned("client", "sendmsg again", 1000),
			Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(synDataSpace), ServerSYNACK().AckingSYNData(), ClientData())),
		// blocking-sendmsg-multi-iov, blocking-connect-bypass: a blocking
		// call returns everything once the handshake is done.
		Labelled("blocking",
			Returned("client", "sendmsg", 1900),
			OptionsHave("client", "tcp_info", tcpiOptSynData, true),
			Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(synDataSpace), ServerSYNACK().AckingSYNData(), ClientData().WithPayload(1900-synDataSpace))),
		// *-errnos, poll: an RST to the SYN-data: POLLERR|POLLHUP, then
		// ECONNREFUSED, and the SYN's data counted as not acked.
		Labelled("refused",
			Returned("client", wantOp(sendto, "sendto", "write"), synDataSpace),
			Reported("client", "poll", "POLLIN|POLLOUT|POLLERR|POLLHUP"),
			FailedWith("client", "write again", "ECONNREFUSED"),
			OptionsHave("client", "tcp_info", tcpiOptSynData, false),
			Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(synDataSpace), ServerRST())),
		// poll: the same for a plain connect with TFO on.
		Labelled("plain-refused",
			FailedWith("client", "connect", "EINPROGRESS"),
			Reported("client", "poll", "POLLIN|POLLOUT|POLLERR|POLLHUP"),
			Dialogue(AtClient, ClientSYN().WithoutFastOpen().WithoutPayload(), ServerRST())),
		CookieCached(topology.Client, true),
		// Four SYNs' data acked (mss, user-mss, multi-iov, blocking); the
		// refused one and those left in SYN-SENT are no failure of TFO's.
		CountersOf(topology.Client, HaveCounterDeltas(Delta(lab.TCPFastOpenActive, 4), Delta(lab.TCPFastOpenActiveFail, 0))),
		// Those four and empty-buf's cookie without data made TFO
		// children; one cookie request reached the server.
		serverTFO(5, 1),
	}
	if !sendto {
		// fastopen-connect-keepalive, nonblocking-connect-bypass-errno: a
		// deferred connect with SO_KEEPALIVE sends nothing, not even a
		// keepalive probe after TCP_KEEPIDLE; connect again is EISCONN.
		s.Expect = append(s.Expect, Labelled("keepalive",
			Returned("client", "connect", 0),
			Returned("client", "TCP_KEEPIDLE", 0),
			FailedWith("client", "connect again", "EISCONN"),
			Returned("client", "close", 0),
			NoPackets(AtClient)))
	}
	// From the capture, the server's port 7000 works; the closed port's
	// RSTs ("refused", 7009: it refuses plain SYNs too) and the dropped
	// port (7006: the capture ends before a SYN timeout) are inconclusive,
	// not a finding about TFO.
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	return s
}

func wantOp(sendto bool, ifSendto, ifConnect string) string {
	if sendto {
		return ifSendto
	}
	return ifConnect
}

// synSentCookie: how the SYN-data leaves with a cookie cached, per mode.
func synSentCookie(sendto bool) []ConnCheck {
	if sendto {
		return []ConnCheck{Returned("client", "sendto", 800)}
	}
	// nonblocking-connect-bypass: connect() returns at once, writable,
	// and the write sends the SYN with the data; connect() again while
	// it is in flight is EALREADY (nonblocking-connect-bypass-errno).
	return []ConnCheck{
		Returned("client", "connect", 0),
		Reported("client", "poll", "POLLOUT"),
		Returned("client", "write", 800),
		FailedWith("client", "connect again", "EALREADY"),
	}
}

// ClientAPITimeline is ClientAPI's in mode, against the main service's
// scripted listener.
func ClientAPITimeline(mode tfo.Mode) Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		slot, err := env.scriptedSlot("")
		if err != nil {
			return err
		}
		return clientAPITimeline(ctx, env, mode, slot)
	}, "ClientAPITimeline", mode)
}

func clientAPITimeline(ctx context.Context, env *Env, mode tfo.Mode, slot *listenerSlot) error {
	sendto := mode == tfo.ModeSendto
	mk := func(label string, port uint16, blocking bool) *apiConn {
		c := env.newAPIConn(label, "", port, slot, blocking)
		if !sendto {
			c.client(func(s *tfo.Sock) tfo.CallResult {
				return s.SetsockoptInt("TCP_FASTOPEN_CONNECT", unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1)
			})
		}
		return c
	}
	buf := func(n int) []byte { return make([]byte, n) }
	call := func(c *apiConn, f func(s *tfo.Sock) tfo.CallResult) { c.client(f) }
	// open is the first call that puts the connection on the wire.
	open := func(c *apiConn, n int) {
		if sendto {
			call(c, func(s *tfo.Sock) tfo.CallResult { return s.Sendto("sendto", buf(n), unix.MSG_FASTOPEN, c.remote) })
			return
		}
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Connect("connect", c.remote) })
		if n > 0 {
			call(c, func(s *tfo.Sock) tfo.CallResult { return s.Write("write", buf(n)) })
		}
	}
	poll := func(c *apiConn, d time.Duration) {
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLIN|unix.POLLOUT, d) })
	}
	info := func(c *apiConn) { call(c, func(s *tfo.Sock) tfo.CallResult { return s.TCPInfo("tcp_info") }) }
	remote := func(c *apiConn) netip.AddrPort { return c.remote }

	// disabled
	if err := env.WriteSysctl(topology.Client, "net.ipv4.tcp_fastopen", "0"); err != nil {
		return err
	}
	c := env.newAPIConn("disabled", "", 0, slot, false)
	if sendto {
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Sendto("sendto", buf(1000), unix.MSG_FASTOPEN, remote(c)) })
	} else {
		call(c, func(s *tfo.Sock) tfo.CallResult {
			return s.SetsockoptInt("TCP_FASTOPEN_CONNECT", unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1)
		})
	}
	c.done()
	if err := env.WriteSysctl(topology.Client, "net.ipv4.tcp_fastopen", tfoClient); err != nil {
		return err
	}

	// af-unspec
	c = mk("af-unspec", 0, false)
	call(c, func(s *tfo.Sock) tfo.CallResult { return s.SendtoUnspec("sendto AF_UNSPEC", nil, unix.MSG_FASTOPEN) })
	c.done()

	// syn-sent-no-cookie: to the silent port, before any cookie
	c = mk("syn-sent-no-cookie", silentPort, false)
	if sendto {
		open(c, 1000)
	} else {
		open(c, 0) // connect() itself sends the cookie request
	}
	call(c, func(s *tfo.Sock) tfo.CallResult {
		return s.Sendto("sendto again", buf(1000), unix.MSG_FASTOPEN, remote(c))
	})
	call(c, func(s *tfo.Sock) tfo.CallResult { return s.Write("write", buf(1000)) })
	call(c, func(s *tfo.Sock) tfo.CallResult { r, _ := s.Read("read", 1000); return r })
	poll(c, 0)
	info(c)
	c.done()

	// learn
	c = mk("learn", 0, false)
	open(c, 0)
	poll(c, time.Second)
	c.done()

	// syn-sent-cookie
	c = mk("syn-sent-cookie", silentPort, false)
	if sendto {
		open(c, 800)
	} else {
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Connect("connect", c.remote) })
		poll(c, 0)
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Write("write", buf(800)) })
	}
	call(c, func(s *tfo.Sock) tfo.CallResult {
		return s.Sendto("sendto again", buf(1000), unix.MSG_FASTOPEN, remote(c))
	})
	call(c, func(s *tfo.Sock) tfo.CallResult { return s.Write("write again", buf(1000)) })
	if !sendto {
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Connect("connect again", c.remote) })
	}
	info(c)
	c.done()

	// empty-buf
	c = mk("empty-buf", 0, false)
	if sendto {
		open(c, 0)
	} else {
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Connect("connect", c.remote) })
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Sendto("sendto", nil, 0, netip.AddrPort{}) })
	}
	poll(c, time.Second)
	info(c)
	c.done()

	// mss
	c = mk("mss", 0, false)
	open(c, 2000)
	poll(c, time.Second)
	info(c)
	call(c, func(s *tfo.Sock) tfo.CallResult { return s.Write("write rest", buf(2000-synDataSpace)) })
	c.done()

	// user-mss
	c = mk("user-mss", 0, false)
	call(c, func(s *tfo.Sock) tfo.CallResult {
		return s.SetsockoptInt("TCP_MAXSEG", unix.IPPROTO_TCP, unix.TCP_MAXSEG, userMSS)
	})
	open(c, 2000)
	poll(c, time.Second)
	c.done()

	// multi-iov
	c = mk("multi-iov", 0, false)
	flags, to := unix.MSG_FASTOPEN, c.remote
	if !sendto {
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Connect("connect", c.remote) })
		flags, to = 0, netip.AddrPort{}
	}
	call(c, func(s *tfo.Sock) tfo.CallResult {
		return s.Sendmsg("sendmsg", [][]byte{buf(500), buf(1000), buf(400)}, flags|unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, to)
	})
	poll(c, time.Second)
	call(c, func(s *tfo.Sock) tfo.CallResult {
		return s.Sendmsg("sendmsg again", [][]byte{buf(600), buf(400)}, flags|unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, to)
	})
	c.done()

	// blocking
	c = mk("blocking", 0, true)
	if !sendto {
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Connect("connect", c.remote) })
	}
	call(c, func(s *tfo.Sock) tfo.CallResult {
		return s.Sendmsg("sendmsg", [][]byte{buf(500), buf(1000), buf(400)}, flags|unix.MSG_NOSIGNAL, to)
	})
	info(c)
	c.done()

	// refused
	c = mk("refused", refusingPort, false)
	open(c, 2000)
	poll(c, time.Second)
	call(c, func(s *tfo.Sock) tfo.CallResult { return s.Write("write again", buf(2000)) })
	info(c)
	c.done()

	// plain-refused
	c = env.newAPIConn("plain-refused", "", refusingPort, slot, false)
	call(c, func(s *tfo.Sock) tfo.CallResult { return s.Connect("connect", c.remote) })
	poll(c, time.Second)
	c.done()

	if !sendto {
		// keepalive: past TCP_KEEPIDLE, nothing may leave
		c = mk("keepalive", 0, false)
		call(c, func(s *tfo.Sock) tfo.CallResult {
			return s.SetsockoptInt("SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		})
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Connect("connect", c.remote) })
		call(c, func(s *tfo.Sock) tfo.CallResult {
			return s.SetsockoptInt("TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 1)
		})
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Connect("connect again", c.remote) })
		_ = sleepCtx(ctx, 1200*time.Millisecond)
		call(c, func(s *tfo.Sock) tfo.CallResult { return s.Close("close") })
		c.done()
	}
	return ctx.Err()
}

// pdClientScenario is the client scripts' scenario NAME in family fam
// beyond the API contracts: one lab client in sendto mode on Routed, with
// the sysctls and services given and 5 s to run; the caller adds its
// middleboxes, timeline and expectations.
func pdClientScenario(name string, fam topology.Family, desc string, sysctls map[string]map[string]string, services ...Service) Scenario {
	return Scenario{
		Name:        fmt.Sprintf("packetdrill/client/%s/%s", name, strings.ToLower(fam.String())),
		Description: desc,
		Labels:      pdLabels(fam, "client"),
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     sysctls,
		Services:    services,
		Clients:     []Client{{Kind: LabClient{Mode: tfo.ModeSendto}}},
		Timeout:     5 * time.Second,
	}
}

// rawPeerClientScenario is a pdClientScenario against peer, a scripted
// server no Linux server could stand in for: the client alone has TFO on.
func rawPeerClientScenario(name string, fam topology.Family, desc string, peer PartialAckPeer) Scenario {
	s := pdClientScenario(name, fam, desc,
		map[string]map[string]string{topology.Client: {"net.ipv4.tcp_fastopen": tfoClient}}, Service{Kind: peer})
	s.Labels = append(s.Labels, "rawpeer")
	return s
}

// Ports of the simultaneous open: each end binds its own and sends to the
// other's.
const (
	simServerPort = 7100
	simClientPort = 7101
)

// simOneWay is the router's hold on every packet. The SYNs cross only if
// the second end is in SYN-SENT before the first end's SYN arrives, so the
// hold must outlast the gap between the two sendto calls, which is
// scheduling (105 ms once beside two CPU hogs, against a 40 ms hold). Its
// bound is the protocol's: a quarter of the initial SYN RTO (1 s), so that
// the held SYN-ACKs are back at half the RTO and neither SYN is
// retransmitted (without its data) before the crossing completes.
const simOneWay = 250 * time.Millisecond

// SimultaneousFastOpen is simultaneous-fast-open.pkt with two real ends:
// both send a SYN with data (no-cookie mode, 0x5, on both nodes) to the
// other's bound port, the router holds the SYNs until both are in
// SYN-SENT, so they cross. Linux does not take data from a crossing SYN:
// each end answers with a SYN-ACK that acks only the other's SYN, both
// connections are established, and each end sends its data again.
func SimultaneousFastOpen(fam topology.Family) Scenario {
	return simultaneousFastOpen(fam, true)
}

func simultaneousFastOpen(fam topology.Family, delayed bool) Scenario {
	s := pdClientScenario("simultaneous-open", fam,
		"both ends send a SYN with data to each other, the SYNs cross: established, each SYN's data sent again",
		tfoSysctls(tfoClientNoCookie, tfoClientNoCookie), Service{Kind: newScriptedListener(0, 0)})
	if delayed {
		s.Middleboxes = []MiddleboxSpec{{Box: middlebox.Delay(simOneWay)}}
	}
	s.Script(SimultaneousTimeline())
	n := len(pdPayload)
	s.Expect = []types.GomegaMatcher{
		Labelled("simultaneous",
			Returned("client", "sendto", n),
			Returned("server", "sendto", n),
			Dialogue(AtClient,
				ClientSYN().WithoutFastOpen().WithPayload(n),
				ServerSYN().WithPayload(n),
				ClientSYNACK().WithoutPayload(),
				ServerSYNACK().AckingSYNOnly().WithoutPayload()),
			Dialogue(AtClient, ClientSYN(), ClientData().WithPayload(n)),
			Dialogue(AtClient, ServerSYN(), ServerData().WithPayload(n)),
			Reported("client", "poll", "POLLOUT"),
			Reported("server", "poll", "POLLOUT"),
			Returned("client", "read", n),
			Returned("server", "read", n),
			OptionsHave("client", "tcp_info", tcpiOptSynData, false),
			OptionsHave("server", "tcp_info", tcpiOptSynData, false)),
	}
	// The diagnoser knows no simultaneous open: each end's SYN meets the
	// other's SYN, never a SYN-ACK to it, so it reads one direction.
	s.Diagnosis = diagnosed(diagnose.Inconclusive)
	return s
}

// SimultaneousTimeline is SimultaneousFastOpen's: both ends connect to
// each other at once.
func SimultaneousTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		topo, fam := env.site.Topo, env.site.Family
		a, err := topo.Addr(topology.Client, fam)
		if err != nil {
			return err
		}
		b, err := topo.ServiceAddr(topology.Server, fam)
		if err != nil {
			return err
		}
		pa, pb := netip.AddrPortFrom(a, simClientPort), netip.AddrPortFrom(b, simServerPort)
		c := &apiConn{env: env, label: "simultaneous", remote: pb, start: time.Now()}
		if c.cli, err = tfo.NewSock(env.Client().Runner(), b, false); err != nil {
			return err
		}
		if c.srv, err = tfo.NewSock(topo.Namespace(topology.Server).Runner(), a, false); err != nil {
			c.cli.Close("close")
			return err
		}
		payload := []byte(pdPayload)
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Bind("bind", pa) })
		c.server(func(s *tfo.Sock) tfo.CallResult { return s.Bind("bind", pb) })
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Sendto("sendto", payload, unix.MSG_FASTOPEN, pb) })
		c.server(func(s *tfo.Sock) tfo.CallResult { return s.Sendto("sendto", payload, unix.MSG_FASTOPEN, pa) })
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
		c.server(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
		c.client(func(s *tfo.Sock) tfo.CallResult { r, _ := s.ReadWait("read", 512, 2*time.Second); return r })
		c.server(func(s *tfo.Sock) tfo.CallResult { r, _ := s.ReadWait("read", 512, 2*time.Second); return r })
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.TCPInfo("tcp_info") })
		c.server(func(s *tfo.Sock) tfo.CallResult { return s.TCPInfo("tcp_info") })
		c.done()
		return ctx.Err()
	}, "SimultaneousTimeline")
}

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
	s := pdClientScenario("rtt-from-syn-data", fam,
		fmt.Sprintf("the RTT sample of a SYN-data's SYN-ACK (acking the data, or only the SYN) over a %v round trip", 2*rttOneWay),
		tfoSysctls(tfoClient, tfoServer), Service{Kind: main}, Service{Name: "plain", Port: plainPort, Kind: plain})
	s.Middleboxes = []MiddleboxSpec{{Box: middlebox.Delay(oneWay)}}
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

// partialPayload is the SYN's data in the partial-ack scenario: 18 bytes,
// as in the script; the peer acks the first partialAcked.
const (
	partialPayload = "tfolab-partial-ack\n"
	partialAcked   = 9
)

// SynDataPartlyAcked is syn-data-partial-or-over-ack.pkt's partial ack,
// against a Linux client: the SYN-ACK acks 9 of the SYN's 18 bytes. The
// client sends the other 9 at once, does not report TCPI_OPT_SYN_DATA
// (the data was not all acked), counts an active TFO failure, and keeps
// the cookie: its next SYN carries it again.
func SynDataPartlyAcked(fam topology.Family) Scenario {
	return synDataPartlyAcked(fam, partialAcked)
}

func synDataPartlyAcked(fam topology.Family, acked int) Scenario {
	s := rawPeerClientScenario("syn-data-partial-ack", fam,
		"a scripted server acks 9 of the SYN's 18 bytes of data: the client sends the rest at once and keeps the cookie",
		PartialAckPeer{AckBytes: acked, Cookie: scriptedCookie})
	s.Script(PartialAckTimeline())
	n := len(partialPayload)
	partly := []ConnCheck{
		Returned("client", "sendto", n),
		Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(n), ServerSYNACK(), ClientData().WithPayload(n-partialAcked)),
		SynAckAcked(AtClient, partialAcked),
		OptionsHave("client", "tcp_info", tcpiOptSynData, false),
		Returned("client", "read", 0),
	}
	s.Expect = []types.GomegaMatcher{
		Labelled("partial", partly...),
		// The cache entry survives: the next SYN carries the cookie.
		Labelled("again", partly...),
		CountersOf(topology.Client, HaveCounterDeltas(Delta(lab.TCPFastOpenActive, 0), Delta(lab.TCPFastOpenActiveFail, 2))),
		CookieCached(topology.Client, true),
	}
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	return s
}

// InvalidCookie is valid-cookie-format.pkt's cookies of a forbidden
// length (RFC 7413 §4.1.1: 4 to 16 bytes, even), from lab/rawpeer: 18
// bytes, too long. The client must not cache it: its next SYN asks for a
// cookie again (in the experimental form, the standard request having
// gone, as far as the kernel can tell, unanswered).
func InvalidCookie(fam topology.Family) Scenario {
	return invalidCookie(fam, bytes.Repeat([]byte{0xc0, 0x0c}, 9))
}

func invalidCookie(fam topology.Family, cookie []byte) Scenario {
	s := rawPeerClientScenario("invalid-cookie", fam,
		"a scripted server hands out an 18-byte cookie: the client ignores it and asks again",
		PartialAckPeer{Cookie: cookie, AnyCookieLength: true})
	s.Script(InvalidCookieTimeline())
	s.Expect = []types.GomegaMatcher{
		Labelled("learn", Dialogue(AtClient, ClientSYN().WithCookieRequest().Experimental(false))),
		Labelled("again",
			FailedWith("client", "sendto", "EINPROGRESS"),
			Dialogue(AtClient, ClientSYN().WithCookieRequest().Experimental(true).WithoutPayload())),
		CookieCached(topology.Client, false),
	}
	// The diagnoser takes the 18-byte option for a cookie handed out,
	// where the client, rightly, took none.
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	return s
}

// PartialAckTimeline is SynDataPartlyAcked's: a cookie, then two
// connections whose SYN data the peer acks in part.
func PartialAckTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		learnOnce(env, "learn", nil)
		for _, label := range []string{"partial", "again"} {
			c := env.newAPIConn(label, "", 0, nil, false)
			c.client(func(s *tfo.Sock) tfo.CallResult {
				return s.Sendto("sendto", []byte(partialPayload), unix.MSG_FASTOPEN, c.remote)
			})
			c.client(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
			c.client(func(s *tfo.Sock) tfo.CallResult { return s.TCPInfo("tcp_info") })
			// The peer closes once it has the whole line.
			c.client(func(s *tfo.Sock) tfo.CallResult { r, _ := s.ReadWait("read", 512, time.Second); return r })
			c.done()
		}
		return ctx.Err()
	}, "PartialAckTimeline")
}

// InvalidCookieTimeline is InvalidCookie's: a cookie request, then one
// more connection.
func InvalidCookieTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		learnOnce(env, "learn", nil)
		c := env.newAPIConn("again", "", 0, nil, false)
		c.client(func(s *tfo.Sock) tfo.CallResult {
			return s.Sendto("sendto", []byte(partialPayload), unix.MSG_FASTOPEN, c.remote)
		})
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
		c.done()
		return ctx.Err()
	}, "InvalidCookieTimeline")
}
