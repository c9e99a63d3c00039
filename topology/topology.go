// Package topology builds declarative network topologies of named nodes
// (clients, routers, pools of servers) out of lab namespaces, veth pairs,
// addresses, service addresses on lo and routes (multipath ones included),
// with netlink only (no `ip` subprocesses), and waits until every link can
// carry the first SYN.
//
// Addressing plan: link i (1-based, in Spec order) is 10.34.i.0/24 and
// fd34:i::/64 (34 for the TFO option kind). A router end gets host number 1;
// otherwise the A end gets 1 and the B end 2. Service addresses (Node.Loopback)
// belong in 10.34.0.0/24 and fd34::/64, a subnet no link uses. Hosts get a
// default route via their first router neighbour; Node.Routes add more.
// Nothing is ever linked or routed to the root namespace: every address
// lives in namespaces the lab created.
package topology

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Family is lab.Family.
type Family = lab.Family

// The address families.
const (
	IPv4 = lab.IPv4
	IPv6 = lab.IPv6
)

// Node is a host or a router, by name. The name is also the last part of
// its namespace's name (tfo-<lab id>-<name>).
type Node struct {
	Name   string
	Router bool // forwards IPv4 and IPv6; middleboxes go here
	// Loopback are service addresses put on lo (this kernel has no dummy
	// driver), e.g. the one address a pool of servers shares behind ECMP.
	Loopback []netip.Addr
	// Routes are routes beyond the automatic default route of a host.
	Routes []Route
	// Sysctls are set in the node's namespace before its links exist, e.g.
	// net.ipv4.fib_multipath_hash_policy=1 on an ECMP router.
	Sysctls map[string]string
}

// Route sends Dst via the nodes in Via, which must be neighbours (share a
// link with the node): one is a plain route, several a multipath (ECMP)
// route with equal weights. Dst's family picks the gateways' family.
type Route struct {
	Dst netip.Prefix
	Via []string
	// FastOpenNoCookie sets the route's fastopen_no_cookie metric
	// (RTAX_FASTOPEN_NO_COOKIE in RTA_METRICS; systemd-networkd's
	// FastOpenNoCookie=): TFO without a cookie to and from Dst only.
	FastOpenNoCookie bool
}

// Link is a veth pair between two nodes.
type Link struct{ A, B string }

// Spec describes a topology.
type Spec struct {
	Name  string
	Nodes []Node
	Links []Link
}

// Node names used by the standard topologies.
const (
	Client = "client"
	Router = "router"
	Server = "server"
)

// Direct is client—server over one veth pair.
func Direct() Spec {
	return Spec{
		Name:  "direct",
		Nodes: []Node{{Name: Client}, {Name: Server}},
		Links: []Link{{A: Client, B: Server}},
	}
}

// Routed is client—router—server; the router namespace is where
// middleboxes (iptables rule sets) are installed.
func Routed() Spec {
	return Spec{
		Name:  "routed",
		Nodes: []Node{{Name: Client}, {Name: Router, Router: true}, {Name: Server}},
		Links: []Link{{A: Client, B: Router}, {A: Router, B: Server}},
	}
}

// ServiceAddr4 and ServiceAddr6 are the plan's first service addresses
// (10.34.0.0/24 and fd34::/64 belong to no link): a pool's shared address.
var (
	ServiceAddr4 = netip.MustParseAddr("10.34.0.34")
	ServiceAddr6 = netip.MustParseAddr("fd34::34")
)

// Pool is clients—router—servers: one client, an ECMP router and n servers
// (server1..servern) that all carry the service address on lo; the router
// spreads flows to it over the servers by their 5-tuple
// (fib_multipath_hash_policy=3 with the 5-tuple's fields).
func Pool(n int) Spec {
	s := Spec{Name: fmt.Sprintf("pool%d", n), Nodes: []Node{{Name: Client}}, Links: []Link{{A: Client, B: Router}}}
	var servers []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("server%d", i)
		servers = append(servers, name)
		s.Nodes = append(s.Nodes, Node{Name: name, Loopback: []netip.Addr{ServiceAddr4, ServiceAddr6}})
		s.Links = append(s.Links, Link{A: Router, B: name})
	}
	s.Nodes = append(s.Nodes, Node{
		Name:   Router,
		Router: true,
		Routes: []Route{
			{Dst: netip.PrefixFrom(ServiceAddr4, 32), Via: servers},
			{Dst: netip.PrefixFrom(ServiceAddr6, 128), Via: servers},
		},
		Sysctls: map[string]string{
			// Policy 3 hashes the fields named below (addresses, protocol,
			// ports: the 5-tuple). Policy 1 would take a forwarded skb's L4
			// hash, which a veth carries over from the sender's socket
			// txhash, and the sender redraws that at every retransmission
			// timeout: a retransmitted segment would land on another server.
			"net.ipv4.fib_multipath_hash_policy": "3",
			"net.ipv4.fib_multipath_hash_fields": "55", // 0x37
			"net.ipv6.fib_multipath_hash_policy": "3",
			"net.ipv6.fib_multipath_hash_fields": "55",
		},
	})
	return s
}

// Endpoint is one end of a built link.
type Endpoint struct {
	Node   string
	Ifname string
	IPv4   netip.Prefix // address with the link's prefix length
	IPv6   netip.Prefix
}

// Addr returns the endpoint's address in family f.
func (e Endpoint) Addr(f Family) netip.Addr {
	if f == IPv6 {
		return e.IPv6.Addr()
	}
	return e.IPv4.Addr()
}

// BuiltLink is a link as built: index i is subnet 10.34.i.0/24.
type BuiltLink struct {
	Index int
	A, B  Endpoint
}

// Topology is a built Spec inside a Lab.
type Topology struct {
	Spec  Spec
	Lab   *lab.Lab
	Links []BuiltLink
}

// Validate checks a Spec for mistakes a user could make in a catalogue.
func (s Spec) Validate() error {
	if len(s.Nodes) == 0 {
		return fmt.Errorf("topology %q: no nodes", s.Name)
	}
	if len(s.Links) > 250 {
		return fmt.Errorf("topology %q: %d links, at most 250 fit the 10.34.i.0/24 plan", s.Name, len(s.Links))
	}
	roles := map[string]bool{}
	for _, n := range s.Nodes {
		if roles[n.Name] {
			return fmt.Errorf("topology %q: node %q twice", s.Name, n.Name)
		}
		roles[n.Name] = true
	}
	pairs := map[[2]string]bool{}
	for i, l := range s.Links {
		if !roles[l.A] || !roles[l.B] {
			return fmt.Errorf("topology %q: link %d (%s—%s) names an unknown node", s.Name, i+1, l.A, l.B)
		}
		if l.A == l.B {
			return fmt.Errorf("topology %q: link %d joins %q to itself", s.Name, i+1, l.A)
		}
		key := [2]string{min(l.A, l.B), max(l.A, l.B)}
		if pairs[key] {
			return fmt.Errorf("topology %q: two links between %s and %s (interface names would clash)", s.Name, l.A, l.B)
		}
		pairs[key] = true
	}
	for _, n := range s.Nodes {
		for _, a := range n.Loopback {
			if !serviceNet4.Contains(a) && !serviceNet6.Contains(a) {
				return fmt.Errorf("topology %q: node %q: service address %s outside %s and %s", s.Name, n.Name, a, serviceNet4, serviceNet6)
			}
		}
		for _, r := range n.Routes {
			if !r.Dst.IsValid() || len(r.Via) == 0 {
				return fmt.Errorf("topology %q: node %q: route %v via %v: want a destination and at least one neighbour", s.Name, n.Name, r.Dst, r.Via)
			}
			if !inLab(net.IP(r.Dst.Addr().AsSlice())) {
				return fmt.Errorf("topology %q: node %q: route to %s leaves the lab's address space", s.Name, n.Name, r.Dst)
			}
			for _, v := range r.Via {
				if !pairs[[2]string{min(n.Name, v), max(n.Name, v)}] {
					return fmt.Errorf("topology %q: node %q: route to %s via %q, which is not a neighbour", s.Name, n.Name, r.Dst, v)
				}
			}
		}
	}
	return nil
}

// Service address subnets (no link uses subnet 0 of the plan).
var (
	serviceNet4 = netip.MustParsePrefix("10.34.0.0/24")
	serviceNet6 = netip.MustParsePrefix("fd34::/64")
)

func (s Spec) isRouter(name string) bool {
	n, ok := s.Node(name)
	return ok && n.Router
}

// Node returns the node called name.
func (s Spec) Node(name string) (Node, bool) {
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// NodeNames returns the nodes' names in Spec order.
func (s Spec) NodeNames() []string {
	out := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		out[i] = n.Name
	}
	return out
}

// ifname is the name of the interface in node `self` that faces node `peer`.
func ifname(peer string) string { return "to-" + peer }

// Interfaces lists the link interfaces Build gives node, in link order
// ("to-<peer>"): what a sysctl of the node's own interfaces names before
// the lab exists.
func (s Spec) Interfaces(node string) []string {
	var out []string
	for _, l := range s.Links {
		switch node {
		case l.A:
			out = append(out, ifname(l.B))
		case l.B:
			out = append(out, ifname(l.A))
		}
	}
	return out
}

// Build creates the Spec's namespaces, links, addresses, routes and
// forwarding sysctls inside l, and returns once every link is operationally
// up. Every resource is on l's cleanup stack as soon as it exists (links and
// routes go with their namespace).
func Build(ctx context.Context, l *lab.Lab, spec Spec) (*Topology, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	t := &Topology{Spec: spec, Lab: l}
	for _, n := range spec.Nodes {
		ns, err := l.AddNamespace(n.Name)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", spec.Name, err)
		}
		if err := ns.SetSysctls(n.BuildSysctls()); err != nil {
			return nil, fmt.Errorf("build %s: %s: %w", spec.Name, n.Name, err)
		}
		if err := addLoopback(ns, n.Loopback); err != nil {
			return nil, fmt.Errorf("build %s: %s: %w", spec.Name, n.Name, err)
		}
	}
	for i, link := range spec.Links {
		bl, err := t.addLink(i+1, link)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", spec.Name, err)
		}
		t.Links = append(t.Links, bl)
	}
	if err := t.addRoutes(); err != nil {
		return nil, fmt.Errorf("build %s: %w", spec.Name, err)
	}
	if err := t.waitUp(ctx); err != nil {
		return nil, fmt.Errorf("build %s: %w", spec.Name, err)
	}
	return t, nil
}

// BuildSysctls are the sysctls Build sets in n's namespace, before its
// links exist so that the links inherit them through the "default"
// entries: the lab's own (DAD off everywhere, forwarding on a router),
// then n.Sysctls. A scenario's sysctls come after them.
//
// DAD is off: right after link-up a link-local address is tentative for a
// second or more, and a forwarding router solicits neighbours from its
// link-local address; while it is tentative the kernel sends no neighbour
// solicitation at all, so the first forwarded IPv6 SYNs wait ~2 s.
func (n Node) BuildSysctls() map[string]string {
	kv := map[string]string{
		"net.ipv6.conf.all.accept_dad":     "0",
		"net.ipv6.conf.default.accept_dad": "0",
	}
	if n.Router {
		kv["net.ipv4.ip_forward"] = "1"
		kv["net.ipv6.conf.all.forwarding"] = "1"
	}
	for k, v := range n.Sysctls {
		kv[k] = v
	}
	return kv
}

// addLoopback puts service addresses on lo as host addresses. Equivalent to:
// ip -n NS addr add 10.34.0.34/32 dev lo; ip -n NS addr add fd34::34/128 dev lo nodad
func addLoopback(ns *lab.Namespace, addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return nil
	}
	lo, err := ns.Netlink().LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	for _, a := range addrs {
		addr := &netlink.Addr{IPNet: prefixToIPNet(netip.PrefixFrom(a, a.BitLen()))}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := ns.Netlink().AddrAdd(lo, addr); err != nil {
			return fmt.Errorf("add service address %s to lo: %w", a, err)
		}
	}
	return nil
}

func (t *Topology) hostNumbers(link Link) (a, b byte) {
	switch {
	case t.Spec.isRouter(link.B) && !t.Spec.isRouter(link.A):
		return 2, 1
	default:
		return 1, 2
	}
}

func (t *Topology) addLink(index int, link Link) (BuiltLink, error) {
	nsA, nsB := t.Lab.Namespace(link.A), t.Lab.Namespace(link.B)
	hostA, hostB := t.hostNumbers(link)
	a := endpoint(link.A, link.B, index, hostA)
	b := endpoint(link.B, link.A, index, hostB)

	// Create the pair in A with its peer placed straight into B: no
	// interface ever exists in the root namespace, not even briefly.
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: a.Ifname},
		PeerName:      b.Ifname,
		PeerNamespace: netlink.NsFd(int(nsB.Handle())),
	}
	if err := nsA.Netlink().LinkAdd(veth); err != nil {
		return BuiltLink{}, fmt.Errorf("link %d %s—%s: add veth: %w", index, link.A, link.B, err)
	}
	for _, side := range []struct {
		ns *lab.Namespace
		ep Endpoint
	}{{nsA, a}, {nsB, b}} {
		if err := configure(side.ns, side.ep); err != nil {
			return BuiltLink{}, fmt.Errorf("link %d: %w", index, err)
		}
	}
	if err := addNeighbors(nsA, a, nsB, b); err != nil {
		return BuiltLink{}, fmt.Errorf("link %d: %w", index, err)
	}
	return BuiltLink{Index: index, A: a, B: b}, nil
}

// addNeighbors gives each end a permanent neighbour entry for the other's
// addresses, so no ARP or neighbour discovery happens on a lab link. On a
// loaded machine a lost or late first solicitation holds the packets that
// wait for it until the next one, a second later: a SYN-ACK delayed by a
// second looks exactly like a lost SYN to every timing expectation.
// Equivalent to: ip -n NS neigh replace ADDR lladdr MAC dev IF nud permanent
func addNeighbors(nsA *lab.Namespace, a Endpoint, nsB *lab.Namespace, b Endpoint) error {
	macOf := func(ns *lab.Namespace, ifname string) (net.HardwareAddr, int, error) {
		l, err := ns.Netlink().LinkByName(ifname)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: find %s: %w", ns.Role, ifname, err)
		}
		return l.Attrs().HardwareAddr, l.Attrs().Index, nil
	}
	macA, idxA, err := macOf(nsA, a.Ifname)
	if err != nil {
		return err
	}
	macB, idxB, err := macOf(nsB, b.Ifname)
	if err != nil {
		return err
	}
	for _, side := range []struct {
		ns    *lab.Namespace
		index int
		peer  Endpoint
		mac   net.HardwareAddr
	}{{nsA, idxA, b, macB}, {nsB, idxB, a, macA}} {
		for _, addr := range []netip.Addr{side.peer.IPv4.Addr(), side.peer.IPv6.Addr()} {
			family := netlink.FAMILY_V4
			if addr.Is6() {
				family = netlink.FAMILY_V6
			}
			n := &netlink.Neigh{LinkIndex: side.index, Family: family, State: netlink.NUD_PERMANENT, IP: net.IP(addr.AsSlice()), HardwareAddr: side.mac}
			if err := side.ns.Netlink().NeighSet(n); err != nil {
				return fmt.Errorf("%s: neighbour %s: %w", side.ns.Role, addr, err)
			}
		}
	}
	return nil
}

func endpoint(self, peer string, index int, host byte) Endpoint {
	v4 := netip.AddrFrom4([4]byte{10, 34, byte(index), host})
	v6 := netip.AddrFrom16([16]byte{0xfd, 0x34, 0, byte(index), 15: host})
	return Endpoint{
		Node:   self,
		Ifname: ifname(peer),
		IPv4:   netip.PrefixFrom(v4, 24),
		IPv6:   netip.PrefixFrom(v6, 64),
	}
}

// configure addresses and raises one end. Equivalent to:
// ip -n NS addr add 10.34.i.h/24 dev IF; ip -n NS addr add fd34:i::h/64 dev IF nodad; ip -n NS link set IF up
func configure(ns *lab.Namespace, ep Endpoint) error {
	h := ns.Netlink()
	link, err := h.LinkByName(ep.Ifname)
	if err != nil {
		return fmt.Errorf("%s: find %s: %w", ep.Node, ep.Ifname, err)
	}
	for _, p := range []netip.Prefix{ep.IPv4, ep.IPv6} {
		addr := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			// Without NODAD the address stays tentative for about a second
			// and the first IPv6 connect fails or waits.
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("%s: add %s to %s: %w", ep.Node, p, ep.Ifname, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s: set %s up: %w", ep.Node, ep.Ifname, err)
	}
	return nil
}

// addRoutes gives every host a default route (IPv4 and IPv6) via its first
// router neighbour, then adds each node's own Routes. Routers otherwise only
// know their connected subnets, so no route anywhere leads out of the lab.
func (t *Topology) addRoutes() error {
	for _, n := range t.Spec.Nodes {
		ns := t.Lab.Namespace(n.Name)
		if !n.Router {
			for _, bl := range t.Links {
				self, peer, ok := bl.sides(n.Name)
				if !ok || !t.Spec.isRouter(peer.Node) {
					continue
				}
				for _, f := range []Family{IPv4, IPv6} {
					if err := t.addRoute(ns, n.Name, netip.Prefix{}, []Endpoint{peer}, self, f, false); err != nil {
						return err
					}
				}
				break
			}
		}
		for _, r := range n.Routes {
			f := IPv4
			if r.Dst.Addr().Is6() {
				f = IPv6
			}
			var via []Endpoint
			var self Endpoint
			for _, v := range r.Via {
				for _, bl := range t.Links {
					if s, peer, ok := bl.sides(n.Name); ok && peer.Node == v {
						via, self = append(via, peer), s
					}
				}
			}
			if err := t.addRoute(ns, n.Name, r.Dst, via, self, f, r.FastOpenNoCookie); err != nil {
				return err
			}
		}
	}
	return nil
}

// addRoute adds a route to dst (invalid: the default route) via the given
// neighbours' addresses in family f; several make a multipath route.
// Equivalent to: ip -n NS route add DST via GW, or
// ip -n NS route add DST nexthop via GW1 dev IF1 nexthop via GW2 dev IF2 ...
// (noCookie adds fastopen_no_cookie 1).
func (t *Topology) addRoute(ns *lab.Namespace, node string, dst netip.Prefix, via []Endpoint, self Endpoint, f Family, noCookie bool) error {
	linkIndex := func(ifname string) (int, error) {
		link, err := ns.Netlink().LinkByName(ifname)
		if err != nil {
			return 0, fmt.Errorf("%s: find %s: %w", node, ifname, err)
		}
		return link.Attrs().Index, nil
	}
	r := &netlink.Route{}
	if dst.IsValid() {
		r.Dst = prefixToIPNet(dst)
	} else if f == IPv6 {
		r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	if len(via) == 1 {
		idx, err := linkIndex(self.Ifname)
		if err != nil {
			return err
		}
		r.LinkIndex, r.Gw = idx, net.IP(via[0].Addr(f).AsSlice())
	} else {
		for _, gw := range via {
			idx, err := t.ifindexToward(ns, node, gw.Node)
			if err != nil {
				return err
			}
			r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{LinkIndex: idx, Gw: net.IP(gw.Addr(f).AsSlice())})
		}
	}
	if f == IPv6 {
		r.Family = netlink.FAMILY_V6
	} else {
		r.Family = netlink.FAMILY_V4
	}
	if noCookie {
		r.FastOpenNoCookie = 1
	}
	if err := ns.Netlink().RouteAdd(r); err != nil {
		what := "default"
		if dst.IsValid() {
			what = dst.String()
		}
		return fmt.Errorf("%s: route %s via %v: %w", node, what, via, err)
	}
	return nil
}

// ifindexToward is the index of node's interface facing peer.
func (t *Topology) ifindexToward(ns *lab.Namespace, node, peer string) (int, error) {
	name, err := t.Interface(node, peer)
	if err != nil {
		return 0, err
	}
	link, err := ns.Netlink().LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("%s: find %s: %w", node, name, err)
	}
	return link.Attrs().Index, nil
}

// sides returns (the end in node, the other end).
func (bl BuiltLink) sides(node string) (self, peer Endpoint, ok bool) {
	switch node {
	case bl.A.Node:
		return bl.A, bl.B, true
	case bl.B.Node:
		return bl.B, bl.A, true
	}
	return Endpoint{}, Endpoint{}, false
}

// readyBound bounds waitUp when the caller's context has no deadline of
// its own.
const readyBound = 30 * time.Second

// waitUp polls until every interface reports OperUp. A SYN sent before the
// veth's qdisc is activated is dropped and costs a full 1 s RTO, so this
// wait is what makes the first connection's timing honest. The wait is
// bounded by the caller's context (a run's budget), not by a figure of its
// own: the kernel's IPv6 address work takes the RTNL lock, and with a
// burst of labs built and torn down at once (24 suite workers, several
// 16-lab firewall checks among them) a multicast join lagged past 5 s.
func (t *Topology) waitUp(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyBound)
		defer cancel()
	}
	for _, bl := range t.Links {
		for _, ep := range []Endpoint{bl.A, bl.B} {
			h := t.Lab.Namespace(ep.Node).Netlink()
			delay := 50 * time.Microsecond
			for {
				link, err := h.LinkByName(ep.Ifname)
				if err != nil {
					return fmt.Errorf("%s: find %s: %w", ep.Node, ep.Ifname, err)
				}
				if link.Attrs().OperState == netlink.OperUp {
					break
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("%s: %s not up (state %s): %w", ep.Node, ep.Ifname, link.Attrs().OperState, ctx.Err())
				case <-time.After(delay):
				}
				delay = min(2*delay, 5*time.Millisecond)
			}
		}
	}
	return t.waitSolicitedNodeGroups(ctx)
}

// waitSolicitedNodeGroups waits until every interface has joined the
// solicited-node multicast group of its IPv6 address. The join lags link-up
// even without DAD, and a neighbour solicitation that arrives before it is
// dropped: the first IPv6 SYN then costs a 1 s retransmission.
func (t *Topology) waitSolicitedNodeGroups(ctx context.Context) error {
	want := map[string][]string{} // role -> "ifname hexgroup"
	for _, bl := range t.Links {
		for _, ep := range []Endpoint{bl.A, bl.B} {
			want[ep.Node] = append(want[ep.Node], ep.Ifname+" "+solicitedNodeHex(ep.IPv6.Addr()))
		}
	}
	for role, groups := range want {
		ns := t.Lab.Namespace(role)
		delay := 50 * time.Microsecond
		for {
			var joined map[string]bool
			err := ns.Do(func() error {
				b, err := os.ReadFile("/proc/thread-self/net/igmp6")
				joined = parseIGMP6(b)
				return err
			})
			if err != nil {
				return fmt.Errorf("%s: read igmp6: %w", role, err)
			}
			missing := ""
			for _, g := range groups {
				if !joined[g] {
					missing = g
					break
				}
			}
			if missing == "" {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: solicited-node group %s not joined: %w", role, missing, ctx.Err())
			case <-time.After(delay):
			}
			delay = min(2*delay, 5*time.Millisecond)
		}
	}
	return nil
}

// solicitedNodeHex is ff02::1:ffXX:XXXX (RFC 4291 §2.7.1) in igmp6's
// 32-hex-digit form.
func solicitedNodeHex(a netip.Addr) string {
	b := a.As16()
	g := [16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]}
	return hex.EncodeToString(g[:])
}

// parseIGMP6 reads /proc/net/igmp6 lines ("idx ifname group users flags
// timer") into a set of "ifname group".
func parseIGMP6(b []byte) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 {
			out[f[1]+" "+f[2]] = true
		}
	}
	return out
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

// Namespace returns the namespace of node.
func (t *Topology) Namespace(node string) *lab.Namespace { return t.Lab.Namespace(node) }

// Addr is node's address in family f on its first link; for a host that is
// the address peers reach it at.
func (t *Topology) Addr(node string, f Family) (netip.Addr, error) {
	for _, bl := range t.Links {
		if self, _, ok := bl.sides(node); ok {
			return self.Addr(f), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("topology %s: no link on %q", t.Spec.Name, node)
}

// ServiceAddr is node's first service address (Node.Loopback) in family f,
// or, when it has none, its address on its first link.
func (t *Topology) ServiceAddr(node string, f Family) (netip.Addr, error) {
	if n, ok := t.Spec.Node(node); ok {
		for _, a := range n.Loopback {
			if a.Is6() == (f == IPv6) {
				return a, nil
			}
		}
	}
	return t.Addr(node, f)
}

// Interface is the name of the interface in node's namespace that faces peer.
func (t *Topology) Interface(node, peer string) (string, error) {
	for _, bl := range t.Links {
		if self, other, ok := bl.sides(node); ok && other.Node == peer {
			return self.Ifname, nil
		}
	}
	return "", fmt.Errorf("topology %s: no link %s—%s", t.Spec.Name, node, peer)
}

// Interfaces lists node's link interfaces in link order.
func (t *Topology) Interfaces(node string) []string { return t.Spec.Interfaces(node) }

// Neighbor is the node at the other end of node's first link (for a client
// in Routed, the router; in Direct, the server).
func (t *Topology) Neighbor(node string) (string, error) {
	for _, bl := range t.Links {
		if _, other, ok := bl.sides(node); ok {
			return other.Node, nil
		}
	}
	return "", fmt.Errorf("topology %s: no link on %q", t.Spec.Name, node)
}
