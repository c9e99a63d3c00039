package scenarios

import (
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
// write, read, poll and sendmsg return, and what goes in the SYN.

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
	// The diagnoser reads the RST that a closed port puts on the SYN-data
	// ("refused") as a path that rejects SYNs with data: from the capture
	// alone the two look alike.
	s.Diagnosis = diagnosed(diagnose.SynDataDropped)
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
