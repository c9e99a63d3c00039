package scenarios

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/probe"
	"github.com/tfolab/tfolab/lab/rules"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"

	. "github.com/tfolab/tfolab/assertions"
)

// The peers catalogue (label peers): real programs against the lab, judged
// like the lab's own sockets. Every pair gets the baseline cookie-then-data
// exchange and the drop-syn-data and strip-tfo-option middleboxes; every
// scenario also checks that tshark reads our pcaps as our decoder does.

func init() { register(Peers); registerMutants(PeerMutants) }

// ProxyPort is where a proxying HAProxy listens on its own node.
const ProxyPort = 7080

// labHTTPRequest is what the lab's own client sends an HTTP server: one
// HTTP/1.0 request (the server closes after its response, and the lab
// client reads to EOF).
var labHTTPRequest = []byte("GET " + PeerPath + " HTTP/1.0\r\n\r\n")

// peerPair is one client program against one server program.
type peerPair struct {
	name    string
	service func() ServiceKind
	client  func() ClientKind
	// payload is what the client is given ("" the default); reqLen (in
	// endpoints) is the request it puts on the wire (curl builds its own).
	payload []byte
	endpoints
}

func peerPairs() []peerPair {
	curlLen := len(Curl{}.Request())
	served := func() ConnCheck { return ServedFile(DefaultBody()) }
	return []peerPair{
		{name: "curl-nginx", service: func() ServiceKind { return Nginx{FastOpen: serverQueue} }, client: func() ClientKind { return Curl{} },
			endpoints: endpoints{reqLen: curlLen, reply: served}},
		{name: "curl-haproxy", service: func() ServiceKind { return HAProxy{} }, client: func() ClientKind { return Curl{} },
			endpoints: endpoints{reqLen: curlLen, reply: served}},
		{name: "lab-nginx", service: func() ServiceKind { return Nginx{FastOpen: serverQueue} }, client: func() ClientKind { return LabClient{Mode: tfo.ModeSendto} },
			payload: labHTTPRequest, endpoints: endpoints{reqLen: len(labHTTPRequest), reply: served, labClient: true}},
		{name: "curl-listener", service: func() ServiceKind { return Listener{Queue: serverQueue, Reply: HTTPReply(DefaultBody())} }, client: func() ClientKind { return Curl{} },
			endpoints: endpoints{reqLen: curlLen, reply: func() ConnCheck { return RepliedWith(HTTPReply(DefaultBody())) }, labServer: true}},
		{name: "python-listener", service: func() ServiceKind { return Listener{Queue: serverQueue} }, client: func() ClientKind { return PythonClient{} },
			endpoints: endpoints{reqLen: payloadLen, reply: Responded, labServer: true}},
	}
}

// Peers is the peers catalogue.
func Peers() []Scenario {
	var out []Scenario
	for _, p := range peerPairs() {
		out = append(out,
			PeerCookieThenData(p, topology.IPv4),
			PeerCookieThenData(p, topology.IPv6),
		)
		for _, b := range peerBoxes() {
			out = append(out, PeerBehindBox(p, b, topology.IPv4))
		}
	}
	out = append(out,
		HAProxyBackendScenario(topology.IPv4, nil),
		HAProxyBackendScenario(topology.IPv6, nil),
		HAProxyBackendScenario(topology.IPv4, &middlebox.DropSynData),
		HAProxyBackendScenario(topology.IPv4, &middlebox.StripTFOOption),
	)
	return append(out, ScapyProbes()...)
}

func peerName(pair, what string, fam topology.Family) string {
	return fmt.Sprintf("peers/%s/%s/%s", pair, what, strings.ToLower(fam.String()))
}

// peerScenario is the frame of a pair's scenarios: Routed, TFO client and
// server sysctls, the pair's programs, conns connections.
func peerScenario(p peerPair, what string, fam topology.Family, conns int, desc string) Scenario {
	s := Scenario{
		Name:        peerName(p.name, what, fam),
		Description: desc,
		Labels:      []string{"peers", p.name, strings.ToLower(fam.String())},
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     tfoSysctls(tfoClient, tfoServer),
		Services:    []Service{{Kind: p.service()}},
		Clients:     []Client{{Kind: p.client(), Connections: conns, Payload: p.payload}},
	}
	s.Script(PeerTimeline(false))
	s.Timeout = peerTimeout(conns, false)
	return s
}

// peerTimeout bounds a peers timeline: every connection's bound, the
// probes', and the process starts on a loaded machine.
func peerTimeout(conns int, probes bool) time.Duration {
	d := time.Duration(conns)*DefaultConnTimeout + 5*time.Second
	if probes {
		d += 2 * scapyTimeout
	}
	return d
}

// clientFacts are the checks of what only the lab's own sockets report.
// PeerCookieThenData: the first connection asks for a cookie and gets one;
// the second carries the request in its SYN and the server accepts it
// (RFC 7413 §3), as between the lab's own client and listener.
func PeerCookieThenData(p peerPair, fam topology.Family) Scenario {
	s := peerScenario(p, "cookie-then-data", fam, 2,
		"first connection requests a cookie; second carries the request in the SYN, accepted; the response intact")
	s.Expect = append(p.cookieThenData(), TsharkAgrees())
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	return s
}

// peerBox is a middlebox in the router that every pair runs behind: the
// lab-socket scenario middlebox/NAME/router with the pair's programs,
// three connections, the first learning the cookie. The tshark agreement
// check runs where the cookie exchange is (cookie-then-data, the backend
// and the probes): tshark costs about a CPU second a link, and the
// middlebox variants put no packet on the wire that those lack.
type peerBox struct {
	box  middlebox.Middlebox
	when string // the moment it goes in ("": from the start)
	desc string
	// checks judge the connections after the first, totals the run.
	checks    func(p peerPair) []ConnCheck
	totals    func() []types.GomegaMatcher
	diagnosis diagnose.Verdict
}

func peerBoxes() []peerBox {
	return []peerBox{
		// drop-syn-data: the cookie request passes; each later connection
		// loses its SYN+cookie+data, retransmits a plain SYN after one RTO
		// and sends the request after the handshake.
		{box: middlebox.DropSynData,
			desc:      "SYNs with payload dropped in the router: each TFO connection falls back after one RTO, the response intact",
			checks:    func(p peerPair) []ConnCheck { return p.synDataDropped(false) },
			totals:    synDataDroppedTotals,
			diagnosis: diagnose.SynDataDropped},
		// strip-tfo-option: after the client learned a cookie, the router
		// strips options 34/254 from SYNs: the server gets the request
		// without a cookie, acks only the SYN, and the client resends the
		// request at once.
		{box: middlebox.StripTFOOption, when: AfterConnections(1),
			desc:      "options 34/254 stripped after a cookie was learned: data without a cookie, acked after the handshake, the response intact",
			checks:    func(p peerPair) []ConnCheck { return p.optionStripped() },
			totals:    optionStrippedTotals,
			diagnosis: diagnose.OptionStripped},
	}
}

// PeerBehindBox is pair p behind b in the router.
func PeerBehindBox(p peerPair, b peerBox, fam topology.Family) Scenario {
	s := peerScenario(p, b.box.Name, fam, 3, b.desc)
	s.Labels = append(s.Labels, b.box.Name)
	s.Middleboxes = []MiddleboxSpec{{Box: b.box, Placement: middlebox.Router, When: b.when}}
	s.Expect = threeConns(p.cookieLearned(), b.checks(p), b.totals()...)
	s.Diagnosis = diagnosed(b.diagnosis)
	return s
}

// HAProxyBackendVersion is the HAProxy branch whose backend TFO the
// haproxy-backend scenarios describe (Debian 12: 2.6.12).
const HAProxyBackendVersion = "2.6."

// HAProxyBackendScenario: HAProxy as a TFO client. It runs on the client
// node, in front of the lab's listener on the server (a plain curl reaches
// it over lo, so the client node's counters, captures and cookie cache are
// the proxy's backend side), with `server ... tfo` and the retry-on
// conditions backend TFO needs; box, if set, sits in the router.
//
// Finding, HAProxy 2.6.12: the backend never sees TFO. do_connect_server
// sets CONNECT_HAS_DATA from the response channel instead of the request
// (!channel_is_empty(&s->res), empty at connect time) and
// CONNECT_CAN_USE_TFO only when conn_retries == be->conn_retries, which in
// 2.6 (retries counted up from 0) is the last retry; tcp_connect_server
// sets TCP_FASTOPEN_CONNECT only with both. So every backend SYN is a
// plain SYN: no cookie request, no cookie, no data, no cookie ever
// cached, and neither middlebox changes anything. Upstream fixed both in
// 3.4-dev2 (933cb7646, 799653d53).
func HAProxyBackendScenario(fam topology.Family, box *middlebox.Middlebox) Scenario {
	what, conns := "cookie-then-data", 2
	if box != nil {
		what, conns = box.Name, 3
	}
	body := DefaultBody()
	s := Scenario{
		Name:        peerName("haproxy-backend", what, fam),
		Description: "HAProxy 2.6 `server ... tfo` in front of the lab listener: finding, its backend SYNs carry no TFO at all",
		Labels:      []string{"peers", "haproxy-backend", strings.ToLower(fam.String())},
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     tfoSysctls(tfoClient, tfoServer),
		Services: []Service{
			{Name: "backend", Kind: Listener{Queue: serverQueue, Reply: HTTPReply(body)}},
			{Name: "proxy", Node: topology.Client, Port: ProxyPort, Kind: HAProxy{Backend: &HAProxyBackend{}}},
		},
		Clients: []Client{{Name: "front", Kind: Curl{Plain: true}, Service: "proxy", Connections: conns}},
	}
	s.Script(PeerTimeline(false))
	s.Timeout = peerTimeout(conns, false)
	guard := MiddleboxSpec{Box: strayGuard, Placement: middlebox.ClientSide, Node: topology.Client}
	s.Middleboxes = []MiddleboxSpec{guard}
	hits := uint64(0)
	if box != nil {
		s.Labels = append(s.Labels, box.Name)
		s.Middleboxes = []MiddleboxSpec{{Box: *box, Placement: middlebox.Router}, guard}
		if box.Name == middlebox.StripTFOOption.Name {
			// Installed after one connection, as for the other pairs: it
			// sees (and strips nothing from) the later backend SYNs.
			s.Middlebox().When = AfterConnections(1)
			hits = uint64(conns - 1)
		}
	}
	s.Expect = []types.GomegaMatcher{
		ToolVersion("haproxy", HAProxyBackendVersion),
		Named("haproxy backend finding", EveryBackend("backend", conns,
			Dialogue(AtClient,
				ClientSYN().WithoutFastOpen().WithoutPayload(),
				ServerSYNACK().WithoutFastOpen().AckingSYNOnly(),
				ClientData()),
			Dialogue(AtServer, ClientSYN().WithoutFastOpen().WithoutPayload()),
			ServerAcceptedSynData(false),
			FirstByteAfterSynRetransmissions(0))),
		EveryConn(ServedFile(body)),
		clientTFO(0, 0, 0),
		serverTFO(0, 0),
		CookieCached(topology.Client, false),
		NoStrayTraffic(topology.Client),
		TsharkAgrees(),
	}
	// The stray guard's hits count too: none.
	s.Expect = append(s.Expect, MiddleboxMatched(hits))
	s.Diagnosis = diagnosed(diagnose.ClientNoTFO)
	return s
}

// ScapyProbes are the seed's server-TFO check (a scapy SYN with an empty
// TFO option) beside lab/probe, against each server program, then one curl
// connection: the probes must agree with each other and with what that
// connection's SYN-ACK shows.
func ScapyProbes() []Scenario {
	listener := func() ServiceKind { return Listener{Queue: serverQueue, Reply: HTTPReply(DefaultBody())} }
	nginx := func() ServiceKind { return Nginx{FastOpen: serverQueue} }
	// A server counts each cookie request, the probes' two and curl's,
	// even with its TFO off (ServerTFOOff); none reaches it through the
	// stripping router.
	off := ScapyProbe("listener", listener, topology.IPv4, false, 3)
	off.Name = peerName("scapy-probe", "listener/server-tfo-off", topology.IPv4)
	off.Sysctls[topology.Server]["net.ipv4.tcp_fastopen"] = tfoClient
	strip := ScapyProbe("nginx", nginx, topology.IPv4, false, 0)
	strip.Name = peerName("scapy-probe", "nginx/strip-tfo-option", topology.IPv4)
	strip.Middleboxes = []MiddleboxSpec{{Box: middlebox.StripTFOOption, Placement: middlebox.Router}}
	strip.Expect = append(strip.Expect, MiddleboxMatched(3)) // the two probes' SYNs and curl's
	strip.Diagnosis = Diagnosis{ClientSide: diagnose.ServerNoTFO, BothSides: diagnose.OptionStripped}
	return []Scenario{
		ScapyProbe("nginx", nginx, topology.IPv4, true, 3),
		ScapyProbe("nginx", nginx, topology.IPv6, true, 3),
		ScapyProbe("haproxy", func() ServiceKind { return HAProxy{} }, topology.IPv4, true, 3),
		ScapyProbe("listener", listener, topology.IPv4, true, 3),
		off, strip,
	}
}

// ScapyProbe probes a server program with lab/probe and scapy, then makes
// one curl connection (a cookie request); want is whether the server
// offers TFO, cookieReqs the cookie requests it counts.
func ScapyProbe(server string, svc func() ServiceKind, fam topology.Family, want bool, cookieReqs int64) Scenario {
	synack := ServerSYNACK().WithCookie()
	desc := "lab/probe and the seed's scapy SYN with an empty TFO option both see the server's cookie, the one curl is offered"
	if !want {
		synack = ServerSYNACK().WithoutFastOpen()
		desc = "lab/probe and the seed's scapy probe both see no TFO, as curl's handshake shows"
	}
	s := Scenario{
		Name:        peerName("scapy-probe", server, fam),
		Description: desc,
		Labels:      []string{"peers", "scapy", strings.ToLower(fam.String())},
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     tfoSysctls(tfoClient, tfoServer),
		Services:    []Service{{Kind: svc()}},
		Clients:     []Client{{Kind: Curl{}, Connections: 1}},
	}
	s.Script(PeerTimeline(true))
	s.Timeout = peerTimeout(1, true)
	s.Expect = []types.GomegaMatcher{
		ScapyProbesAgree(want),
		Conn(0, Dialogue(AtClient, ClientSYN().WithCookieRequest().WithoutPayload(), synack), ServedFile(DefaultBody())),
		serverTFO(0, cookieReqs),
		TsharkAgrees(),
	}
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	if !want {
		s.Diagnosis = diagnosed(diagnose.ServerNoTFO)
	}
	return s
}

// PeerTimeline is the peers' timeline: it records the dissector's
// version, probes the main service (lab/probe and scapy) when probes is
// set, then makes every client's connections as Sequential does.
func PeerTimeline(probes bool) Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		if v := TsharkVersion(); v != "" {
			recordTool(env, "tshark", v)
		}
		if probes {
			if err := probeBoth(ctx, env); err != nil {
				return err
			}
		}
		return Sequential(ctx, env)
	}, "PeerTimeline", probes)
}

// probeBoth probes the main service from the first client's node with
// lab/probe and with the seed's scapy recipe and records both results.
func probeBoth(ctx context.Context, env *Env) error {
	target, _, err := env.target("", 0)
	if err != nil {
		return err
	}
	node := env.scen.Clients[0].node()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	res, err := probe.Probe(pctx, env.Client().Runner(), netip.Addr{}, target, probe.Options{})
	cancel()
	if err != nil {
		return fmt.Errorf("lab probe of %s: %w", target, err)
	}
	sres, version, err := ScapyProbeRun(ctx, env.site, node, target)
	if err != nil {
		return err
	}
	recordTool(env, "scapy", version)
	env.mu.Lock()
	defer env.mu.Unlock()
	env.Obs.Probes = append(env.Obs.Probes, res, sres)
	return nil
}

// recordTool records the version of a program the timeline ran (one that
// is no kind: the dissector, the scapy probe) in the observation.
func recordTool(env *Env, name, version string) {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.Obs.Host.Tools == nil {
		env.Obs.Host.Tools = map[string]string{}
	}
	env.Obs.Host.Tools[name] = version
}

// strayGuard sits on a peer's node from the start (before the peer
// starts) to the end: it drops and counts every UDP datagram the node
// sends, both families. A peer reaching for a resolver (HAProxy's default
// one is outside the lab) or anything else beyond the scenario's TCP is
// kept inside the namespace and shows as a hit (NoStrayTraffic).
var strayGuard = middlebox.Middlebox{
	Name: StrayGuard,
	Description: "Drops and counts every UDP datagram the node sends (iptables and ip6tables OUTPUT), " +
		"DNS first: a peer's resolver queries never leave the lab and are counted.",
	Install: func(l *lab.Lab, ns *lab.Namespace, _ lab.Family, _ middlebox.Params) (middlebox.Installed, error) {
		g := guardRules{ns: ns}
		for _, f := range []lab.Family{lab.IPv4, lab.IPv6} {
			if err := rules.Apply(l, ns, f, strayRules); err != nil {
				return nil, fmt.Errorf("stray guard: %w", err)
			}
		}
		return g, nil
	},
	Check: func(lab.Family, middlebox.Params) error { return nil },
}

var strayRules = []rules.Rule{
	{Table: "filter", Chain: "OUTPUT", Spec: []string{"-p", "udp", "--dport", "53", "-j", "DROP"}},
	{Table: "filter", Chain: "OUTPUT", Spec: []string{"-p", "udp", "-j", "DROP"}},
}

type guardRules struct{ ns *lab.Namespace }

func (g guardRules) Hits() ([]middlebox.Hit, error) {
	var out []middlebox.Hit
	for _, f := range []lab.Family{lab.IPv4, lab.IPv6} {
		counts, err := rules.Counters(g.ns, f, strayRules)
		if err != nil {
			return nil, err
		}
		for i, r := range strayRules {
			out = append(out, middlebox.Hit{Rule: rules.CommandLine(f, r), Packets: counts[i]})
		}
	}
	return out, nil
}

// Programs lists the external programs s runs, its kinds' and its
// expectations', each once.
func Programs(s Scenario) []Program {
	var out []Program
	seen := map[string]bool{}
	add := func(v any) {
		r, ok := v.(Requirer)
		if !ok {
			return
		}
		for _, p := range r.Requires() {
			if !seen[p.Path] {
				seen[p.Path] = true
				out = append(out, p)
			}
		}
	}
	for _, svc := range s.Services {
		add(svc.Kind)
	}
	for _, c := range s.Clients {
		add(c.Kind)
	}
	for _, m := range s.Expect {
		add(m)
	}
	return out
}

// CheckPrograms says whether s can run on this machine. With every
// program it needs installed, both results are empty. Otherwise skip is
// the reason (each missing program and the `make deps` line that installs
// it) on a developer's machine, and err the same under CI (environment
// CI=true), where a missing peer must fail rather than skip silently.
func CheckPrograms(s Scenario) (skip string, err error) {
	var missing []Program
	for _, p := range Programs(s) {
		if p.check() != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return "", nil
	}
	reason := fmt.Sprintf("%s needs programs that are %s", s.Name, missingReason(missing))
	if ci := os.Getenv("CI"); ci == "true" || ci == "1" {
		return "", fmt.Errorf("%s (CI=%s: a missing peer fails the run)", reason, ci)
	}
	return reason, nil
}

// PeerMutants break the peers' scenarios the ways a deployment gets them
// wrong; each names the expectations that must reject it.
func PeerMutants() []Mutant {
	pairs := map[string]peerPair{}
	for _, p := range peerPairs() {
		pairs[p.name] = p
	}
	v4 := topology.IPv4

	nginxNoFO := PeerCookieThenData(pairs["curl-nginx"], v4)
	nginxNoFO.Service().Kind = Nginx{}
	haproxyNoTFO := PeerCookieThenData(pairs["curl-haproxy"], v4)
	haproxyNoTFO.Service().Kind = HAProxy{NoTFO: true}
	serverOff := PeerCookieThenData(pairs["lab-nginx"], v4)
	serverOff.Sysctls[topology.Server]["net.ipv4.tcp_fastopen"] = tfoClient
	curlPlain := PeerCookieThenData(pairs["curl-listener"], v4)
	curlPlain.Client().Kind = Curl{Plain: true}
	pythonOff := PeerCookieThenData(pairs["python-listener"], v4)
	pythonOff.Sysctls[topology.Client]["net.ipv4.tcp_fastopen"] = "0"

	resolver := HAProxyBackendScenario(v4, nil)
	// 10.34.1.1 is the router's end of the client link: inside the lab,
	// and nothing answers there.
	resolver.Services[1].Kind = HAProxy{Backend: &HAProxyBackend{Resolver: netip.MustParseAddrPort("10.34.1.1:53")}}
	bypass := HAProxyBackendScenario(v4, nil)
	bypass.Client().Kind, bypass.Client().Service = Curl{}, "backend"

	probeOff := ScapyProbe("nginx", func() ServiceKind { return Nginx{FastOpen: serverQueue} }, v4, true, 3)
	probeOff.Sysctls[topology.Server]["net.ipv4.tcp_fastopen"] = tfoClient

	out := []Mutant{
		mutant("nginx listen without fastopen=", nginxNoFO, "connection 0", "connection 1", "server counters"),
		mutant("haproxy bind without tfo", haproxyNoTFO, "connection 0", "connection 1", "server counters"),
		mutant("nginx's server sysctl left at 1 (TFO server off), lab client", serverOff, "connection 0", "connection 1", "server counters"),
		mutant("curl without --tcp-fastopen", curlPlain, "connection 0", "connection 1", "client counters"),
		mutant("Python client's sysctl 0 (TFO client off)", pythonOff, "connection 0", "connection 1", "client counters"),
		mutant("haproxy resolving its backend by name through a resolver", resolver, "no stray traffic"),
		mutant("clients bypass the proxy and reach the backend with TFO themselves", bypass, "haproxy backend finding", "client counters"),
		mutant("scapy probe of an nginx whose server sysctl is 1", probeOff, "probes", "connection 0"),
	}
	dropSynData, stripOption := peerBoxes()[0], peerBoxes()[1]
	for _, s := range []Scenario{
		PeerBehindBox(pairs["curl-nginx"], dropSynData, v4),
		PeerBehindBox(pairs["curl-nginx"], stripOption, v4),
		PeerBehindBox(pairs["python-listener"], dropSynData, v4),
	} {
		out = append(out, wrongPort(s, "connection 1"))
	}
	return out
}
