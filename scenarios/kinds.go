package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/rawpeer"
	"github.com/tfolab/tfolab/lab/rules"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/topology"
)

// Site is what a service or client kind starts against: the lab, its
// built topology and the scenario's family.
type Site struct {
	Lab    *lab.Lab
	Topo   *topology.Topology
	Family topology.Family
}

// ServiceKind is a kind of server. Start runs one on node at addr, with
// its teardown on the lab's cleanup stack, and returns its handle.
type ServiceKind interface {
	// Kind names it in observations ("listener", "rawpeer", "nginx").
	Kind() string
	// Validate checks the configuration before any namespace exists.
	Validate() error
	Start(ctx context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error)
}

// ServiceHandle is a running service.
type ServiceHandle interface {
	// Accepted is what the service observed of the connections it served.
	Accepted() []observation.Accepted
}

// ClientKind is a kind of client. Connect runs it once from node against
// o.Target, sending o.Payload and reading the response, and reports every
// connection that run made: one for most kinds, many for a program that
// makes several (a load generator, a keep-alive HTTP client).
type ClientKind interface {
	Kind() string
	Connect(ctx context.Context, site Site, node string, o ConnectOptions) []observation.Conn
}

// ConnectOptions is what one run of a client is asked to do. Plain, Abort
// and UserTimeout are a timeline's per-connection knobs; a kind that has
// no such knob (a program without the flag) ignores it.
type ConnectOptions struct {
	Target  netip.AddrPort
	Payload []byte
	// Label is the connection's role in the timeline.
	Label string
	// Plain makes an ordinary connect() without TFO; Abort closes with an
	// RST (SO_LINGER 0); UserTimeout sets TCP_USER_TIMEOUT (0: unset).
	Plain, Abort bool
	UserTimeout  time.Duration
	// Timeout bounds the connection from its first SYN; one that reaches
	// it is reported as stalled. 0 leaves it to ctx. A program's own
	// start is no part of the connection: on a loaded machine it can wait
	// seconds for a CPU, so it is bounded by its CPU and by ctx instead.
	Timeout time.Duration
}

// Listener is the kernel's TFO listener (lab/tfo): it reads one line and
// echoes it, or writes Reply.
type Listener struct {
	// Queue is the TCP_FASTOPEN backlog; 0 leaves it unset (the listener
	// then does TFO only with net.ipv4.tcp_fastopen bit 0x400).
	Queue int
	// Key is the listener's own TCP_FASTOPEN_KEY; nil uses the node's
	// net.ipv4.tcp_fastopen_key.
	Key *tfo.Key
	// Reply is written to every client; nil echoes the request line.
	Reply []byte
}

func (Listener) Kind() string { return "listener" }

func (l Listener) Validate() error { return validQueue("listener", l.Queue) }

// validQueue checks a service's TCP_FASTOPEN queue length (0: unset).
func validQueue(kind string, n int) error {
	if n < 0 {
		return fmt.Errorf("%s: TFO queue %d", kind, n)
	}
	return nil
}

func (l Listener) Start(_ context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	srv, err := tfo.Listen(tfo.ServerOptions{Addr: addr, Run: site.Topo.Namespace(node).Runner(), FastOpenQueue: l.Queue, Key: l.Key, Reply: l.Reply})
	if err != nil {
		return nil, err
	}
	site.Lab.Defer("server "+srv.Addr().String()+" on "+node, srv.Close)
	return listenerHandle{srv}, nil
}

type listenerHandle struct{ srv *tfo.Server }

func (h listenerHandle) Accepted() []observation.Accepted {
	var out []observation.Accepted
	for _, a := range h.srv.Accepted() {
		out = append(out, observation.FromAccepted(a))
	}
	return out
}

// ScriptedPeer is lab/rawpeer: a server that speaks first and, for a TFO
// SYN, puts Greeting in the SYN-ACK (with Cookie for a cookie request, and
// acknowledging the SYN's data), as some non-Linux stacks may; a plain SYN
// gets a plain SYN-ACK and Greeting after the handshake. A Linux server
// never puts data in a SYN-ACK, so this is the only way to put one on the
// wire.
type ScriptedPeer struct {
	Greeting []byte
	// Cookie is the TFO cookie it hands out; nil never grants one.
	Cookie []byte
}

func (ScriptedPeer) Kind() string { return "rawpeer" }

func (p ScriptedPeer) Validate() error {
	if len(p.Greeting) == 0 {
		return errors.New("scripted peer without a greeting")
	}
	if n := len(p.Cookie); n != 0 && (n < 4 || n > 16 || n%2 != 0) {
		return fmt.Errorf("scripted peer: a %d-byte cookie (RFC 7413 §4.1.1: 4 to 16, even)", n)
	}
	return nil
}

func (p ScriptedPeer) Start(ctx context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	return startRawPeer(ctx, site, node, rawpeer.Options{
		Addr:                 addr,
		SynAckData:           p.Greeting,
		Cookie:               p.Cookie,
		AckSynData:           true,
		SynAckDataOnlyForTFO: true,
	})
}

// startRawPeer starts a scripted server (lab/rawpeer) on node with o,
// filling in the node's namespace and its interface, and registers its
// teardown.
func startRawPeer(ctx context.Context, site Site, node string, o rawpeer.Options) (ServiceHandle, error) {
	ns := site.Topo.Namespace(node)
	// The peer answers from user space; with no listener on the port the
	// node's own stack would reset every connection first.
	if err := rules.Apply(site.Lab, ns, site.Family, []rules.Rule{rawpeer.SuppressKernelRST(o.Addr.Port())}); err != nil {
		return nil, fmt.Errorf("suppress the kernel's RSTs for the scripted server: %w", err)
	}
	neighbor, err := site.Topo.Neighbor(node)
	if err != nil {
		return nil, err
	}
	if o.Interface, err = site.Topo.Interface(node, neighbor); err != nil {
		return nil, err
	}
	o.Run = ns.Runner()
	peer, err := rawpeer.Start(ctx, o)
	if err != nil {
		return nil, err
	}
	site.Lab.Defer("scripted server "+o.Addr.String()+" on "+node, peer.Close)
	return peerHandle{peer}, nil
}

type peerHandle struct{ peer *rawpeer.Peer }

// Accepted lists every connection the peer answered: it takes a
// connection, and the data in its SYN (AckSynData), at the SYN.
func (h peerHandle) Accepted() []observation.Accepted {
	var out []observation.Accepted
	for _, r := range h.peer.Conns() {
		out = append(out, observation.Accepted{Remote: r.Client, Request: r.Received, SynData: len(r.SynPayload) > 0, Time: r.SYNTime.Round(0)})
	}
	return out
}

// LabClient is the lab's own socket (lab/tfo) in one of its modes; it
// honours every ConnectOptions knob.
type LabClient struct {
	Mode tfo.Mode
}

func (c LabClient) Kind() string { return "lab-" + c.Mode.String() }

func (c LabClient) Connect(ctx context.Context, site Site, node string, o ConnectOptions) []observation.Conn {
	return labConnect(ctx, site, node, o, c.Mode, false)
}

// labConnect makes one connection of the lab's own socket in mode (plain
// if o says so), with TCP_FASTOPEN_NO_COOKIE set first if noCookie.
func labConnect(ctx context.Context, site Site, node string, o ConnectOptions, mode tfo.Mode, noCookie bool) []observation.Conn {
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	if o.Plain {
		mode = tfo.ModePlain
	}
	r := tfo.Request(ctx, tfo.DialOptions{Mode: mode, NoCookie: noCookie, Abort: o.Abort, UserTimeout: o.UserTimeout, Label: o.Label, Run: site.Topo.Namespace(node).Runner()}, o.Target, o.Payload)
	return []observation.Conn{observation.FromResult(r)}
}
