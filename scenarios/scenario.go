// Package scenarios is tfolab's catalogue: each Scenario is data (topology,
// sysctls per role, server, workload) plus expectations, and Run turns one
// into a lab.Observation. The Ginkgo suite generates its specs from
// Catalogue(), and a report front end runs the same list, so what is
// asserted and what is reported cannot drift apart.
package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/tcpmetrics"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"
)

// ServicePort is where every scenario's server listens.
const ServicePort = 7000

// Defaults for a Workload.
const (
	DefaultConnTimeout = 5 * time.Second
	DefaultPayload     = "GET /tfolab HTTP/1.0\n" // 21 bytes: well inside one MSS
)

// Workload is what the client does.
type Workload struct {
	Mode        tfo.Mode
	Connections int
	Payload     []byte // one line, '\n'-terminated; empty = DefaultPayload
	// ConnTimeout bounds each connection; a connection that hits it is
	// reported as stalled, never waited on longer.
	ConnTimeout time.Duration
}

// Server is the TFO server's configuration.
type Server struct {
	FastOpenQueue int // TCP_FASTOPEN backlog; 0 = not set on the listener
	// Greeting, if set, replaces the kernel's listener on ServicePort with
	// lab/rawpeer, a scripted server that speaks first: it answers a TFO
	// SYN with a SYN-ACK that carries Greeting (and Cookie for a cookie
	// request, and acknowledges the SYN's data), as some non-Linux stacks
	// may; a plain SYN gets a plain SYN-ACK and Greeting after the
	// handshake. The client reads Greeting, not an echo. A Linux server
	// never puts data in a SYN-ACK, so this is the only way to put one on
	// the wire.
	Greeting []byte
	// Cookie is the TFO cookie the scripted server hands out (with
	// Greeting only); nil never grants one.
	Cookie []byte
}

// Scenario is one entry of the catalogue.
type Scenario struct {
	Name        string
	Description string
	Labels      []string
	Topology    topology.Spec
	Family      topology.Family
	// Sysctls per role, applied before the server starts, e.g.
	// {"server": {"net.ipv4.tcp_fastopen": "2"}}.
	Sysctls  map[string]map[string]string
	Server   Server
	Workload Workload
	// Middlebox is the firewall behaviour installed between client and
	// server (nil: none), in the namespace its placement names.
	Middlebox *MiddleboxSpec
	// Script, if set, replaces the Workload's loop of connections (the
	// Workload still gives the mode): the timeline the blackhole scenarios
	// need. Servers on SilentPort and EchoPort run beside the service.
	Script Script
	// Timeout bounds a scripted scenario's timeline (the suite adds setup
	// and teardown); a Workload's bound follows from its connections.
	Timeout time.Duration
	// Expect are matchers over *lab.Observation; every one must hold.
	Expect []types.GomegaMatcher
}

// MiddleboxSpec picks a middlebox and where it sits.
type MiddleboxSpec struct {
	Box       middlebox.Middlebox
	Placement middlebox.Placement
	// After is how many of the workload's connections run before the
	// middlebox is installed: 1 lets the client learn a cookie on an open
	// path first, as a client does before a firewall change. 0: from the
	// start.
	After int
	// Port overrides the port the rules guard (0: ServicePort); the
	// self-check points a middlebox at the wrong port with it.
	Port uint16
}

// Validate catches catalogue mistakes before any namespace is created.
func (s Scenario) Validate() error {
	if s.Name == "" {
		return errors.New("scenario without a name")
	}
	if err := s.Topology.Validate(); err != nil {
		return fmt.Errorf("scenario %q: %w", s.Name, err)
	}
	roles := map[string]bool{}
	for _, n := range s.Topology.Nodes {
		roles[n.Role] = true
	}
	for _, r := range []string{topology.Client, topology.Server} {
		if !roles[r] {
			return fmt.Errorf("scenario %q: topology %s has no %q node", s.Name, s.Topology.Name, r)
		}
	}
	for r := range s.Sysctls {
		if !roles[r] {
			return fmt.Errorf("scenario %q: sysctls for %q, which topology %s lacks", s.Name, r, s.Topology.Name)
		}
	}
	if s.Script == nil && s.Workload.Connections < 1 {
		return fmt.Errorf("scenario %q: workload needs at least one connection", s.Name)
	}
	if mb := s.Middlebox; mb != nil && s.Script == nil && (mb.After < 0 || (mb.After > 0 && mb.After >= s.Workload.Connections)) {
		return fmt.Errorf("scenario %q: middlebox after %d connections, but the workload makes %d", s.Name, mb.After, s.Workload.Connections)
	}
	if s.Server.Cookie != nil && s.Server.Greeting == nil {
		return fmt.Errorf("scenario %q: a server cookie needs a greeting (only the scripted server hands cookies out)", s.Name)
	}
	if g := s.Server.Greeting; g != nil && len(g) == 0 {
		return fmt.Errorf("scenario %q: empty greeting (nil means the kernel's listener)", s.Name)
	}
	if s.Family != topology.IPv4 && s.Family != topology.IPv6 {
		return fmt.Errorf("scenario %q: family %d is neither IPv4 nor IPv6", s.Name, s.Family)
	}
	return nil
}

// Payload returns the request bytes the workload sends.
func (w Workload) payload() []byte {
	if len(w.Payload) == 0 {
		return []byte(DefaultPayload)
	}
	return w.Payload
}

func (w Workload) connTimeout() time.Duration {
	if w.ConnTimeout <= 0 {
		return DefaultConnTimeout
	}
	return w.ConnTimeout
}

// Run builds the scenario's topology inside l, runs its workload and returns
// the Observation. Everything it creates is on l's cleanup stack; the caller
// closes l. Run does not judge: that is what Expect is for.
func Run(ctx context.Context, l *lab.Lab, s Scenario) (*lab.Observation, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	topo, err := topology.Build(ctx, l, s.Topology)
	if err != nil {
		return nil, err
	}
	for _, role := range sortedKeys(s.Sysctls) {
		if err := topo.Namespace(role).SetSysctls(s.Sysctls[role]); err != nil {
			return nil, fmt.Errorf("scenario %q: %w", s.Name, err)
		}
	}
	var rules []middlebox.Rule
	if mb := s.Middlebox; mb != nil {
		// Rules are built before anything runs, so a bad custom rule set
		// fails the scenario before the first packet.
		port := uint16(ServicePort)
		if mb.Port != 0 {
			port = mb.Port
		}
		rules, err = mb.Box.Rules(s.Family, middlebox.Params{ServicePort: port, Placement: mb.Placement})
		if err != nil {
			return nil, fmt.Errorf("scenario %q: middlebox %s: %w", s.Name, mb.Box.Name, err)
		}
	}
	installMiddlebox := func() error {
		if err := middlebox.Apply(l, topo.Namespace(s.Middlebox.Placement.Role()), s.Family, rules); err != nil {
			return fmt.Errorf("scenario %q: middlebox %s: %w", s.Name, s.Middlebox.Box.Name, err)
		}
		return nil
	}
	if s.Middlebox != nil && s.Middlebox.After == 0 {
		if err := installMiddlebox(); err != nil {
			return nil, err
		}
	}
	serverAddr, err := topo.Addr(topology.Server, s.Family)
	if err != nil {
		return nil, err
	}
	srv, err := startService(ctx, l, topo, s, netip.AddrPortFrom(serverAddr, ServicePort))
	if err != nil {
		return nil, fmt.Errorf("scenario %q: start server: %w", s.Name, err)
	}

	obs := &lab.Observation{
		Scenario:     s.Name,
		Server:       srv.Addr(),
		Counters:     map[string]lab.Counters{},
		Metrics:      map[string][]tcpmetrics.Entry{},
		Packets:      map[string][]capture.Packet{},
		CaptureDrops: map[string]uint64{},
	}
	captures, err := startCaptures(l, topo, obs)
	if err != nil {
		return nil, fmt.Errorf("scenario %q: %w", s.Name, err)
	}

	if obs.SynSchedule, err = topo.Namespace(topology.Client).SynScheduleOf(); err != nil {
		return nil, fmt.Errorf("scenario %q: %w", s.Name, err)
	}

	roles := nodeRoles(s.Topology)
	before := map[string]lab.Counters{}
	for _, r := range roles {
		if before[r], err = topo.Namespace(r).Counters(); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	if s.Script != nil {
		if err := runScript(ctx, l, topo, s, serverAddr, obs, installMiddlebox); err != nil {
			return obs, fmt.Errorf("scenario %q: %w", s.Name, err)
		}
	}
	client := tfo.DialOptions{Mode: s.Workload.Mode, Run: topo.Namespace(topology.Client).Runner()}
	for i := range s.Workload.Connections {
		if s.Script != nil {
			break
		}
		if s.Middlebox != nil && s.Middlebox.After > 0 && i == s.Middlebox.After {
			if err := installMiddlebox(); err != nil {
				return obs, err
			}
		}
		cctx, cancel := context.WithTimeout(ctx, s.Workload.connTimeout())
		obs.Conns = append(obs.Conns, tfo.Request(cctx, client, srv.Addr(), s.Workload.payload()))
		cancel()
		if ctx.Err() != nil {
			return obs, fmt.Errorf("scenario %q: %w", s.Name, ctx.Err())
		}
	}
	obs.Elapsed = time.Since(start)

	// Stop the captures first: everything the workload put on the wire is
	// queued on their sockets by now, and Stop drains it.
	for _, c := range captures {
		if err := c.Stop(); err != nil {
			return obs, fmt.Errorf("scenario %q: stop capture %s: %w", s.Name, c.Link(), err)
		}
		obs.Packets[c.Link()] = c.Packets()
		_, dropped := c.Stats()
		obs.CaptureDrops[c.Link()] = dropped
	}
	for _, r := range roles {
		after, err := topo.Namespace(r).Counters()
		if err != nil {
			return obs, err
		}
		obs.Counters[r] = after.Sub(before[r])
	}
	if obs.Metrics[topology.Client], err = tcpmetrics.Dump(topo.Namespace(topology.Client).Handle()); err != nil {
		return obs, fmt.Errorf("scenario %q: %w", s.Name, err)
	}
	obs.Accepted = srv.Accepted()
	if mb := s.Middlebox; mb != nil {
		hits, err := middlebox.Counters(topo.Namespace(mb.Placement.Role()), s.Family, rules)
		if err != nil {
			return obs, fmt.Errorf("scenario %q: middlebox counters: %w", s.Name, err)
		}
		for i, r := range rules {
			if !r.IsChain() {
				obs.Middlebox = append(obs.Middlebox, lab.RuleHits{Rule: middlebox.CommandLine(s.Family, r), Packets: hits[i]})
			}
		}
	}
	return obs, nil
}

// runScript starts the extra servers a Script may use and runs it.
func runScript(ctx context.Context, l *lab.Lab, topo *topology.Topology, s Scenario, server netip.Addr, obs *lab.Observation, install func() error) error {
	for _, x := range []struct {
		port  uint16
		reply []byte
	}{{SilentPort, []byte{}}, {EchoPort, nil}} {
		srv, err := tfo.Listen(tfo.ServerOptions{
			Addr:          netip.AddrPortFrom(server, x.port),
			Run:           topo.Namespace(topology.Server).Runner(),
			FastOpenQueue: s.Server.FastOpenQueue,
			Reply:         x.reply,
		})
		if err != nil {
			return fmt.Errorf("start server on port %d: %w", x.port, err)
		}
		l.Defer("server "+srv.Addr().String(), srv.Close)
	}
	env := &Env{Topo: topo, Obs: obs, mode: s.Workload.Mode, server: server}
	if s.Middlebox != nil && s.Middlebox.After > 0 {
		env.install = install
	}
	return s.Script(ctx, env)
}

// startCaptures captures on the client's and the server's interface: what
// the client sent and what reached the server, on either side of whatever
// sits between them.
func startCaptures(l *lab.Lab, topo *topology.Topology, obs *lab.Observation) ([]*capture.Capture, error) {
	var caps []*capture.Capture
	for _, role := range []string{topology.Client, topology.Server} {
		peer, err := topo.Neighbor(role)
		if err != nil {
			return nil, err
		}
		ifname, err := topo.Interface(role, peer)
		if err != nil {
			return nil, err
		}
		c, err := capture.Start(topo.Namespace(role).Handle(), ifname, capture.Options{Link: role})
		if err != nil {
			return nil, fmt.Errorf("capture on %s %s: %w", role, ifname, err)
		}
		l.Defer("capture on "+role+" "+ifname, c.Stop)
		obs.AddCapture(c)
		caps = append(caps, c)
	}
	return caps, nil
}

func nodeRoles(s topology.Spec) []string {
	var roles []string
	for _, n := range s.Nodes {
		roles = append(roles, n.Role)
	}
	return roles
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
