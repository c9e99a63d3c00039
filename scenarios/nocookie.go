package scenarios

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/topology"

	. "github.com/tfolab/tfolab/assertions"
)

// The cookie-less knobs besides the sysctl bits the baseline covers
// (0x4 on the client, 0x200 on the server): the per-route
// fastopen_no_cookie metric, the TCP_FASTOPEN_NO_COOKIE socket option on
// either end, and what 0x200 does with a data-less SYN since 5.15.
// tcp_fastopen_no_cookie() (net/ipv4/tcp_fastopen.c) ORs the sysctl bit,
// the socket's option and the route's metric; each scenario turns on one
// of them and shows, on the same run, a peer or destination without it.

func init() {
	register(NoCookie)
	registerMutants(noCookieMutants)
}

// NoCookie is the knob scenarios, both families each.
func NoCookie() []Scenario {
	var out []Scenario
	for _, fam := range []topology.Family{topology.IPv4, topology.IPv6} {
		out = append(out, NoCookieRoute(fam), NoCookieClientSockopt(fam), NoCookieServerSockopt(fam), DatalessNoCookie(fam))
	}
	return out
}

// NoCookieLabClient is the lab's socket in Mode with TCP_FASTOPEN_NO_COOKIE
// set before it connects.
type NoCookieLabClient struct {
	Mode tfo.Mode
}

func (c NoCookieLabClient) Kind() string { return "lab-" + c.Mode.String() + "-nocookie" }

func (c NoCookieLabClient) Connect(ctx context.Context, site Site, node string, o ConnectOptions) []observation.Conn {
	return labConnect(ctx, site, node, o, c.Mode, true)
}

// NoCookieListener is the kernel's TFO listener with TCP_FASTOPEN_NO_COOKIE
// set on the listening socket.
type NoCookieListener struct {
	Queue int
}

func (NoCookieListener) Kind() string { return "listener-nocookie" }

func (l NoCookieListener) Validate() error { return validQueue("listener-nocookie", l.Queue) }

func (l NoCookieListener) Start(_ context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	srv, err := tfo.Listen(tfo.ServerOptions{Addr: addr, Run: site.Topo.Namespace(node).Runner(), FastOpenQueue: l.Queue})
	if err != nil {
		return nil, err
	}
	site.Lab.Defer("server "+srv.Addr().String()+" on "+node, srv.Close)
	if err := srv.SetNoCookie(); err != nil {
		return nil, err
	}
	return listenerHandle{srv}, nil
}

// The route scenario's service addresses on the server's lo: the one the
// client's route with fastopen_no_cookie leads to, and one it reaches by
// its default route.
var (
	knobAddr4, otherAddr4 = netip.MustParseAddr("10.34.0.7"), netip.MustParseAddr("10.34.0.8")
	knobAddr6, otherAddr6 = netip.MustParseAddr("fd34::7"), netip.MustParseAddr("fd34::8")
)

// noCookieRouted is Routed with two service addresses on the server, the
// router's routes to them, and the client's route to the first with
// fastopen_no_cookie set as knob says (the second goes by the default
// route). Equivalent to, on the client:
// ip route add 10.34.0.7/32 via 10.34.1.1 fastopen_no_cookie 1
func noCookieRouted(knob bool) topology.Spec {
	s := topology.Routed()
	s.Name = "routed-nocookie-route"
	for i := range s.Nodes {
		n := &s.Nodes[i]
		switch n.Name {
		case topology.Server:
			n.Loopback = []netip.Addr{knobAddr4, otherAddr4, knobAddr6, otherAddr6}
		case topology.Router:
			for _, a := range []netip.Addr{knobAddr4, otherAddr4, knobAddr6, otherAddr6} {
				n.Routes = append(n.Routes, topology.Route{Dst: netip.PrefixFrom(a, a.BitLen()), Via: []string{topology.Server}})
			}
		case topology.Client:
			for _, a := range []netip.Addr{knobAddr4, knobAddr6} {
				n.Routes = append(n.Routes, topology.Route{Dst: netip.PrefixFrom(a, a.BitLen()), Via: []string{topology.Router}, FastOpenNoCookie: knob})
			}
		}
	}
	return s
}

// nocookieScenario is the knob scenarios' frame: Routed, the client's and
// the server's net.ipv4.tcp_fastopen, no services or clients yet.
func nocookieScenario(name string, fam topology.Family, desc, client, server string) Scenario {
	return Scenario{
		Name:        fmt.Sprintf("nocookie/%s/%s", name, strings.ToLower(fam.String())),
		Description: desc,
		Labels:      []string{"nocookie", "routed", strings.ToLower(fam.String())},
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     tfoSysctls(client, server),
	}
}

// modeFor is the client mode a knob scenario uses in fam: sendto for IPv4,
// TCP_FASTOPEN_CONNECT for IPv6, so that the pair covers both.
func modeFor(fam topology.Family) tfo.Mode {
	if fam == topology.IPv6 {
		return tfo.ModeConnect
	}
	return tfo.ModeSendto
}

// cookielessAccepted is a connection whose first SYN carried the request
// without option 34 and whose data the server acknowledged in its
// SYN-ACK: TFO at no round trip, no cookie ever involved.
func cookielessAccepted() []ConnCheck {
	return []ConnCheck{
		Dialogue(AtClient,
			ClientSYN().WithoutFastOpen().WithPayload(payloadLen),
			ServerSYNACK().WithoutFastOpen().AckingSYNData()),
		SynDataAcked(true),
		ServerAcceptedSynData(true),
		Responded(),
		FirstByteAfterSynRetransmissions(0),
	}
}

// cookieAsked is a connection whose SYN only asked for a cookie (no data)
// of a server that accepts data without one (0x200): the SYN-ACK carries
// no cookie, and the request follows the handshake.
func cookieAsked() []ConnCheck {
	return []ConnCheck{
		Dialogue(AtClient,
			ClientSYN().WithCookieRequest().WithoutPayload(),
			ServerSYNACK().WithoutFastOpen().AckingSYNOnly(),
			ClientData().WithPayload(payloadLen)),
		SynDataAcked(false),
		ClientFail(tfo.ClientFailNoCookie),
		Responded(),
	}
}

// knobThenCookieRequests are the expectations of a client-side knob
// against a 0x202 server: the two connections with the knob put their
// request in the first SYN and the server takes it (cookielessAccepted),
// the asked ones after them ask for a cookie and get none (cookieAsked),
// the client counts two active opens and caches no cookie; server is what
// the server counts.
func knobThenCookieRequests(asked int, server types.GomegaMatcher) []types.GomegaMatcher {
	out := []types.GomegaMatcher{Conn(0, cookielessAccepted()...), Conn(1, cookielessAccepted()...)}
	for i := range asked {
		out = append(out, Conn(2+i, cookieAsked()...))
	}
	return append(out, clientTFO(2, 0, 0), server, CookieCached(topology.Client, false))
}

// NoCookieRoute: the client's route to one of the server's addresses has
// fastopen_no_cookie 1, its route to the other does not; the client's
// sysctl is plain 1 and the server's 0x202 accepts data without a cookie.
// To the first destination the very first SYN carries the request (no
// option 34); to the second the client asks for a cookie as usual, on
// every connection (a 0x200 server hands none out). The route, not the
// socket or the namespace, decided.
func NoCookieRoute(fam topology.Family) Scenario {
	s := nocookieScenario("route", fam,
		"client route to one server address has fastopen_no_cookie 1: cookie-less data in the first SYN to it, cookie requests to the other address",
		tfoClient, tfoServerNoCookie)
	s.Topology = noCookieRouted(true)
	knob, other := knobAddr4, otherAddr4
	if fam == topology.IPv6 {
		knob, other = knobAddr6, otherAddr6
	}
	s.Services = []Service{
		{Name: "via-knob-route", Addr: knob, Kind: Listener{Queue: serverQueue}},
		{Name: "via-default-route", Addr: other, Kind: Listener{Queue: serverQueue}},
	}
	s.Clients = []Client{
		{Name: "to-knob-route", Service: "via-knob-route", Kind: LabClient{Mode: modeFor(fam)}, Connections: 2},
		{Name: "to-default-route", Service: "via-default-route", Kind: LabClient{Mode: modeFor(fam)}, Connections: 2},
	}
	// Since 5.15 a 0x200 server makes a TFO child of a cookie request
	// too: four passive opens, two of them with data.
	s.Expect = knobThenCookieRequests(2, serverTFO(4, 2))
	// From the wire, the 0x200 server's answers to cookie requests look
	// like a server with TFO off (diagnose's worst verdict of the two
	// addresses); the route's address is tfo-works.
	s.Diagnosis = diagnosed(diagnose.ServerNoTFO)
	return s
}

// NoCookieClientSockopt: the client sets TCP_FASTOPEN_NO_COOKIE on its
// socket (sysctl plain 1), the server's 0x202 accepts data without a
// cookie. The client's first SYN carries the request without option 34;
// a socket of the same client without the option asks for a cookie.
func NoCookieClientSockopt(fam topology.Family) Scenario {
	s := nocookieScenario("sockopt/client", fam,
		"client socket with TCP_FASTOPEN_NO_COOKIE: cookie-less data in its first SYN; a socket without it asks for a cookie",
		tfoClient, tfoServerNoCookie)
	s.Services = []Service{listener(serverQueue)}
	s.Clients = []Client{
		{Name: "sockopt", Kind: NoCookieLabClient{Mode: modeFor(fam)}, Connections: 2},
		{Name: "no-sockopt", Kind: LabClient{Mode: modeFor(fam)}, Connections: 1},
	}
	s.Expect = knobThenCookieRequests(1, serverTFO(3, 1))
	// The socket without the option asks a 0x200 server for a cookie and
	// gets none: from the wire, part of the server without TFO.
	s.Diagnosis = diagnosed(diagnose.ServerNoTFO)
	return s
}

// noCookiePlainPort is the port of the listener without the option in
// NoCookieServerSockopt.
const noCookiePlainPort = 7003

// NoCookieServerSockopt: the server's namespace is plain 0x2, one
// listener sets TCP_FASTOPEN_NO_COOKIE, another on the same address does
// not; the client's 0x5 sends its data without a cookie to both. The
// listener with the option acknowledges the data in its SYN-ACK; the other
// acknowledges only the SYN (no valid cookie) and the client sends the
// request again after the handshake.
func NoCookieServerSockopt(fam topology.Family) Scenario {
	s := nocookieScenario("sockopt/server", fam,
		"listener with TCP_FASTOPEN_NO_COOKIE (server sysctl 2) accepts cookie-less SYN data; a listener without it acks only the SYN",
		tfoClientNoCookie, tfoServer)
	s.Services = []Service{
		{Name: "sockopt", Kind: NoCookieListener{Queue: serverQueue}},
		{Name: "no-sockopt", Port: noCookiePlainPort, Kind: Listener{Queue: serverQueue}},
	}
	s.Clients = []Client{
		{Name: "to-sockopt", Service: "sockopt", Kind: LabClient{Mode: modeFor(fam)}, Connections: 2},
		{Name: "to-no-sockopt", Service: "no-sockopt", Kind: LabClient{Mode: modeFor(fam)}, Connections: 1},
	}
	s.Expect = []types.GomegaMatcher{
		Conn(0, cookielessAccepted()...),
		Conn(1, cookielessAccepted()...),
		Conn(2,
			Dialogue(AtClient,
				ClientSYN().WithoutFastOpen().WithPayload(payloadLen),
				ServerSYNACK().WithoutFastOpen().AckingSYNOnly(),
				ClientData().WithPayload(payloadLen)),
			SynDataAcked(false),
			ClientFail(tfo.ClientFailDataNotAcked),
			ServerAcceptedSynData(false),
			Responded(),
			FirstByteAfterSynRetransmissions(0)),
		CountersOf(topology.Client, HaveCounterDeltas(Delta(lab.TCPFastOpenActive, 2))),
		serverTFO(2, 0),
	}
	// The listener without the option wants a cookie: diagnose's worst
	// verdict of the two ports.
	s.Diagnosis = diagnosed(diagnose.CookieRejected)
	return s
}

// DatalessNoCookie: since 5.15 (tcp_try_fastopen: "tcp: enable data-less,
// empty-cookie SYN with TFO_SERVER_COOKIE_NOT_REQD") a 0x200 server makes
// a passive TFO child of a SYN that asks for a cookie and carries no data,
// and hands out no cookie: a client that needs one (plain 0x1) never gets
// it and never puts data in a SYN. A plain SYN (no option 34) stays an
// ordinary connection.
func DatalessNoCookie(fam topology.Family) Scenario {
	s := nocookieScenario("dataless-0x200", fam,
		"server 0x202, client 0x1: each cookie request becomes a TFO child without a cookie (5.15+), so the client never sends SYN data; a plain SYN is no TFO child",
		tfoClient, tfoServerNoCookie)
	s.Services = []Service{listener(serverQueue)}
	// A data-less TFO child shows only in TCPI_OPT_TFO_CHILD (6.16+): a
	// kernel without the bit cannot judge it.
	s.KernelNeeds = []string{tfo.FeatureTFOChild}
	s.Clients = []Client{
		{Name: "tfo", Kind: LabClient{Mode: modeFor(fam)}, Connections: 2},
		{Name: "plain", Kind: LabClient{Mode: tfo.ModePlain}, Connections: 1},
	}
	s.Expect = []types.GomegaMatcher{
		Conn(0, append(cookieAsked(), ServerTFOChild(true))...),
		Conn(1, append(cookieAsked(), ServerTFOChild(true))...),
		Conn(2,
			Dialogue(AtClient,
				ClientSYN().WithoutFastOpen().WithoutPayload(),
				ServerSYNACK().WithoutFastOpen()),
			ServerTFOChild(false),
			Responded()),
		clientTFO(0, 0, 0),
		serverTFO(2, 2),
		CookieCached(topology.Client, false),
	}
	s.Diagnosis = diagnosed(diagnose.ServerNoTFO)
	return s
}

// noCookieMutants turn each knob off again: the expectations of the
// connection that needed it must fail.
func noCookieMutants() []Mutant {
	route := NoCookieRoute(topology.IPv4)
	route.Topology = noCookieRouted(false)
	client := NoCookieClientSockopt(topology.IPv4)
	client.Clients[0].Kind = LabClient{Mode: tfo.ModeSendto}
	server := NoCookieServerSockopt(topology.IPv4)
	server.Services[0].Kind = Listener{Queue: serverQueue}
	dataless := DatalessNoCookie(topology.IPv4)
	dataless.Sysctls[topology.Server]["net.ipv4.tcp_fastopen"] = tfoServer
	return []Mutant{
		mutant("nocookie/route: the client's route without fastopen_no_cookie", route, "connection 0", "client counters"),
		mutant("nocookie/sockopt/client: the client socket without TCP_FASTOPEN_NO_COOKIE", client, "connection 0", "client counters"),
		mutant("nocookie/sockopt/server: the listener without TCP_FASTOPEN_NO_COOKIE", server, "connection 0", "server counters"),
		mutant("nocookie/dataless-0x200: server sysctl 2 instead of 0x202", dataless, "connection 0", "server counters", "client cookie cache"),
	}
}
