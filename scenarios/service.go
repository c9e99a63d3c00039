package scenarios

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/rawpeer"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"
)

// service is what a scenario needs of the server on ServicePort, whether
// the kernel's listener or the scripted peer.
type service interface {
	Addr() netip.AddrPort
	Accepted() []tfo.Accepted
}

// startService starts the scenario's server on addr in the server
// namespace, on l's cleanup stack: the kernel's TFO listener, or
// lab/rawpeer when the scenario asks for a greeting in the SYN-ACK.
func startService(ctx context.Context, l *lab.Lab, topo *topology.Topology, s Scenario, addr netip.AddrPort) (service, error) {
	ns := topo.Namespace(topology.Server)
	if s.Server.Greeting == nil {
		srv, err := tfo.Listen(tfo.ServerOptions{Addr: addr, Run: ns.Runner(), FastOpenQueue: s.Server.FastOpenQueue})
		if err != nil {
			return nil, err
		}
		l.Defer("server "+srv.Addr().String(), srv.Close)
		return srv, nil
	}
	// The peer answers from user space; with no listener on the port the
	// server's own stack would reset every connection first.
	if err := middlebox.Apply(l, ns, s.Family, []middlebox.Rule{rawpeer.SuppressKernelRST(addr.Port())}); err != nil {
		return nil, fmt.Errorf("suppress the kernel's RSTs for the scripted server: %w", err)
	}
	neighbor, err := topo.Neighbor(topology.Server)
	if err != nil {
		return nil, err
	}
	ifname, err := topo.Interface(topology.Server, neighbor)
	if err != nil {
		return nil, err
	}
	p, err := rawpeer.Start(ctx, rawpeer.Options{
		Addr:                 addr,
		Run:                  ns.Runner(),
		Interface:            ifname,
		SynAckData:           s.Server.Greeting,
		Cookie:               s.Server.Cookie,
		AckSynData:           true,
		SynAckDataOnlyForTFO: true,
	})
	if err != nil {
		return nil, err
	}
	l.Defer("scripted server "+addr.String(), p.Close)
	return scriptedServer{p, addr}, nil
}

// scriptedServer presents the peer's records as a listener's.
type scriptedServer struct {
	peer *rawpeer.Peer
	addr netip.AddrPort
}

func (s scriptedServer) Addr() netip.AddrPort { return s.addr }

// Accepted lists every connection the peer answered: it takes a
// connection, and the data in its SYN (startService sets AckSynData), at
// the SYN.
func (s scriptedServer) Accepted() []tfo.Accepted {
	var out []tfo.Accepted
	for _, r := range s.peer.Conns() {
		out = append(out, tfo.Accepted{Remote: r.Client, Request: r.Received, SynData: len(r.SynPayload) > 0, Time: r.SYNTime})
	}
	return out
}
