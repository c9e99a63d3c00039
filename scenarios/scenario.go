// Package scenarios is tfolab's scenario model and catalogue. A Scenario is
// data: a topology of named nodes, sysctls per node, services (servers of
// some kind on a node, address and port), clients (of some kind on a node),
// middleboxes (a behaviour placed on a node, installed at a named moment of
// the timeline), a timeline, and expectations. Run turns one into an
// observation.Observation. The Ginkgo suite, `tfolab run` and a report all
// run the same Catalogue() through package harness, so what is asserted
// and what is reported cannot drift apart.
package scenarios

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/lab/tfocookie"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"
)

// Ports of the catalogue's services.
const (
	// ServicePort is where every scenario's main service listens and what
	// its middleboxes guard.
	ServicePort = 7000
	// SilentPort accepts, reads the request (TFO data included) and closes
	// without a byte of reply. A TFO connection to it shows whether active
	// TFO is paused without re-arming the blackhole backoff, which needs
	// data received (tcp_fastopen_active_disable_ofo_check).
	SilentPort = 7001
	// EchoPort echoes like the service, outside the middlebox: a
	// successful TFO exchange with data, the one that re-arms the backoff.
	EchoPort = 7002
)

// Defaults for clients.
const (
	DefaultConnTimeout = 5 * time.Second
	DefaultPayload     = "GET /tfolab HTTP/1.0\n" // 21 bytes: well inside one MSS
)

// Scenario is one entry of the catalogue, or one a user writes.
type Scenario struct {
	Name        string
	Description string
	Labels      []string
	Topology    topology.Spec
	// Family is the address family clients reach services in.
	Family topology.Family
	// Sysctls per node, applied before any service starts, e.g.
	// {"server": {"net.ipv4.tcp_fastopen": "2"}}.
	Sysctls map[string]map[string]string
	// Services are the servers; the first is the main one (middleboxes
	// guard its port, the cookie cache is checked for its address).
	Services []Service
	// Clients make the connections of the sequential timeline; a scripted
	// timeline dials from the first.
	Clients []Client
	// Middleboxes are the firewalls, each installed at its moment.
	Middleboxes []MiddleboxSpec
	// Timeline drives the clients; nil is Sequential: every client makes
	// its Connections in order.
	Timeline Timeline
	// TimelineCall is how Timeline was built, when a constructor of
	// Timelines built it (Script sets both): a scenario file writes the
	// call, and builds the timeline back from it.
	TimelineCall *TimelineCall
	// Timeout bounds a scripted timeline (harness adds setup and
	// teardown); a sequential one's bound follows from its connections.
	Timeout time.Duration
	// Expect are matchers over *observation.Observation; every one must hold.
	Expect []types.GomegaMatcher
	// Diagnosis is what `tfolab diagnose` must say of the scenario's own
	// captures: the behaviour it was built for. Every catalogue scenario
	// states it; Catalogue turns it into an expectation.
	Diagnosis Diagnosis
	// KernelNeeds names kernel features beyond its sysctls the scenario
	// cannot be judged without (harness.FeatureTFOChild); a kernel that
	// lacks one reports the scenario "not supported by this kernel".
	KernelNeeds []string
}

// Diagnosis is a scenario's behaviour in the vocabulary of package
// diagnose: ClientSide is the verdict of the client's capture alone,
// BothSides that of the client's and the main server's together, where
// it differs (a stripped option looks like a server without TFO from the
// client alone).
type Diagnosis struct {
	ClientSide, BothSides diagnose.Verdict
	// RefusalsFrom, for a pool whose refusals depend on where ECMP puts
	// each connection: ClientSide is the verdict only when the pool model
	// (these keys, this run's placement) predicts a refused cookie;
	// otherwise the run must diagnose as tfo-works.
	RefusalsFrom *tfocookie.Schedule
}

// diagnosed is the diagnosis v from either end.
func diagnosed(v diagnose.Verdict) Diagnosis { return Diagnosis{ClientSide: v} }

// Service is one server of a scenario.
type Service struct {
	// Name identifies it to clients and timelines; "" is "service".
	Name string
	// Node it runs on; "" is topology.Server.
	Node string
	// Addr is the address it listens on; zero is the node's service
	// address (topology.Topology.ServiceAddr) in the scenario's family.
	Addr netip.Addr
	// Port it listens on; 0 is ServicePort.
	Port uint16
	// Kind is what runs: Listener (the kernel's TFO listener), ScriptedPeer
	// (lab/rawpeer), or another ServiceKind.
	Kind ServiceKind
}

// Client is one client of a scenario.
type Client struct {
	// Name identifies it in the observation; "" is "client".
	Name string
	// Node it runs on; "" is topology.Client.
	Node string
	// Kind is what connects: LabClient (the lab's socket in a TFO mode),
	// or another ClientKind.
	Kind ClientKind
	// Service it connects to; "" is the first.
	Service string
	// Connections the sequential timeline makes.
	Connections int
	// Payload is the request (one '\n'-terminated line); empty is
	// DefaultPayload.
	Payload []byte
	// ConnTimeout bounds each connection; a connection that hits it is
	// reported as stalled, never waited on longer. 0 is DefaultConnTimeout.
	ConnTimeout time.Duration
}

// MiddleboxSpec places a middlebox behaviour on a node.
type MiddleboxSpec struct {
	Box middlebox.Middlebox
	// Placement picks the chains (forwarding, or the node's own traffic);
	// Node the namespace, "" being Placement.DefaultNode().
	Placement middlebox.Placement
	Node      string
	// Port is the port the rules guard; 0 is the main service's port (the
	// self-check points a middlebox at the wrong port with it).
	Port uint16
	// When is the moment of the timeline it is installed at: AtStart, or
	// a moment a timeline names (AfterConnections(1): once the first
	// connection has learned a cookie on an open path, as a client does
	// before a firewall change).
	When string
}

// AtStart is the moment before any service or connection exists.
const AtStart = ""

// AfterConnections is the sequential timeline's moment after n connections.
func AfterConnections(n int) string { return fmt.Sprintf("after %d connections", n) }

// node returns the middlebox's node.
func (m MiddleboxSpec) node() string { return cmp.Or(m.Node, m.Placement.DefaultNode()) }

func (s Service) name() string { return cmp.Or(s.Name, "service") }

func (s Service) node() string { return cmp.Or(s.Node, topology.Server) }

func (s Service) port() uint16 { return cmp.Or(s.Port, ServicePort) }

func (c Client) name() string { return cmp.Or(c.Name, "client") }

func (c Client) node() string { return cmp.Or(c.Node, topology.Client) }

// NodeName is the node the client runs on, its default applied.
func (c Client) NodeName() string { return c.node() }

// NodeName is the node the service runs on, its default applied.
func (s Service) NodeName() string { return s.node() }

func (c Client) payload() []byte {
	if len(c.Payload) == 0 {
		return []byte(DefaultPayload)
	}
	return c.Payload
}

func (c Client) connTimeout() time.Duration {
	if c.ConnTimeout <= 0 {
		return DefaultConnTimeout
	}
	return c.ConnTimeout
}

// Client returns the first client, for a catalogue entry to adjust.
func (s *Scenario) Client() *Client {
	if len(s.Clients) == 0 {
		return nil
	}
	return &s.Clients[0]
}

// Service returns the main service.
func (s *Scenario) Service() *Service {
	if len(s.Services) == 0 {
		return nil
	}
	return &s.Services[0]
}

// Middlebox returns the first middlebox.
func (s *Scenario) Middlebox() *MiddleboxSpec {
	if len(s.Middleboxes) == 0 {
		return nil
	}
	return &s.Middleboxes[0]
}

// Validate catches mistakes before any namespace is created: unknown
// nodes, services or moments, and middleboxes whose rules do not build.
func (s Scenario) Validate() error {
	if s.Name == "" {
		return errors.New("scenario without a name")
	}
	if err := s.validate(); err != nil {
		return fmt.Errorf("scenario %q: %w", s.Name, err)
	}
	return nil
}

func (s Scenario) validate() error {
	if err := s.Topology.Validate(); err != nil {
		return err
	}
	if !s.Family.Valid() {
		return fmt.Errorf("family %d is neither IPv4 nor IPv6", int(s.Family))
	}
	nodes := map[string]bool{}
	for _, n := range s.Topology.Nodes {
		nodes[n.Name] = true
	}
	for n := range s.Sysctls {
		if !nodes[n] {
			return fmt.Errorf("sysctls for node %q, which topology %s lacks", n, s.Topology.Name)
		}
	}
	if len(s.Services) == 0 {
		return errors.New("no service")
	}
	services := map[string]bool{}
	for _, svc := range s.Services {
		if services[svc.name()] {
			return fmt.Errorf("service %q twice", svc.name())
		}
		services[svc.name()] = true
		if !nodes[svc.node()] {
			return fmt.Errorf("service %q on node %q, which topology %s lacks", svc.name(), svc.node(), s.Topology.Name)
		}
		if svc.Kind == nil {
			return fmt.Errorf("service %q has no kind", svc.name())
		}
		if err := svc.Kind.Validate(); err != nil {
			return fmt.Errorf("service %q: %w", svc.name(), err)
		}
	}
	if len(s.Clients) == 0 {
		return errors.New("no client")
	}
	total := 0
	for _, c := range s.Clients {
		if !nodes[c.node()] {
			return fmt.Errorf("client %q on node %q, which topology %s lacks", c.name(), c.node(), s.Topology.Name)
		}
		if c.Kind == nil {
			return fmt.Errorf("client %q has no kind", c.name())
		}
		if c.Service != "" && !services[c.Service] {
			return fmt.Errorf("client %q connects to service %q, which the scenario lacks", c.name(), c.Service)
		}
		if c.Connections < 0 || (s.Timeline == nil && c.Connections == 0) {
			return fmt.Errorf("client %q: %d connections", c.name(), c.Connections)
		}
		total += c.Connections
	}
	for i, m := range s.Middleboxes {
		if !nodes[m.node()] {
			return fmt.Errorf("middlebox %d (%s) on node %q, which topology %s lacks", i+1, m.Box.Name, m.node(), s.Topology.Name)
		}
		if s.Timeline == nil && m.When != AtStart {
			ok := false
			for n := 1; n < total; n++ {
				ok = ok || m.When == AfterConnections(n)
			}
			if !ok {
				return fmt.Errorf("middlebox %s waits for moment %q, which the sequential timeline of %d connections never reaches", m.Box.Name, m.When, total)
			}
		}
		if err := m.Box.Validate(s.Family, s.middleboxParams(m)); err != nil {
			return fmt.Errorf("middlebox %s: %w", m.Box.Name, err)
		}
	}
	return nil
}

// middleboxParams are m's knobs in this scenario: the guarded port is the
// main service's unless m names another.
func (s Scenario) middleboxParams(m MiddleboxSpec) middlebox.Params {
	port := m.Port
	if port == 0 {
		port = s.Services[0].port()
	}
	return middlebox.Params{ServicePort: port, Placement: m.Placement}
}

// ConnBudget is how long the sequential timeline may take: every
// connection's own bound.
func (s Scenario) ConnBudget() time.Duration {
	if s.Timeline != nil {
		return s.Timeout
	}
	var d time.Duration
	for _, c := range s.Clients {
		d += time.Duration(c.Connections) * c.connTimeout()
	}
	return d
}

// HasLabel reports whether the scenario carries label.
func (s Scenario) HasLabel(label string) bool {
	for _, l := range s.Labels {
		if l == label {
			return true
		}
	}
	return false
}

// listener is the catalogue's usual main service: the kernel's TFO
// listener on ServicePort with a TFO queue.
func listener(queue int) Service { return Service{Kind: Listener{Queue: queue}} }

// labClient is the catalogue's usual client: the lab's socket in mode.
func labClient(mode tfo.Mode, conns int) Client {
	return Client{Kind: LabClient{Mode: mode}, Connections: conns}
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
