// Package topology builds declarative network topologies out of lab
// namespaces, veth pairs, addresses and routes, with netlink only (no `ip`
// subprocesses), and waits until every link can carry the first SYN.
//
// Addressing plan: link i (1-based, in Spec order) is 10.34.i.0/24 and
// fd34:i::/64 (34 for the TFO option kind). A router end gets host number 1;
// otherwise the A end gets 1 and the B end 2. Hosts get a default route via
// their router neighbour. Nothing is ever linked or routed to the root
// namespace: every address lives in namespaces the lab created.
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

// Family selects an address family.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// Node is a host or a router, named by its role.
type Node struct {
	Role   string
	Router bool // forwards IPv4 and IPv6; middleboxes go here
}

// Link is a veth pair between two nodes.
type Link struct{ A, B string }

// Spec describes a topology.
type Spec struct {
	Name  string
	Nodes []Node
	Links []Link
}

// Roles used by the standard topologies.
const (
	Client = "client"
	Router = "router"
	Server = "server"
)

// Direct is client—server over one veth pair.
func Direct() Spec {
	return Spec{
		Name:  "direct",
		Nodes: []Node{{Role: Client}, {Role: Server}},
		Links: []Link{{A: Client, B: Server}},
	}
}

// Routed is client—router—server; the router namespace is where
// middleboxes (iptables rule sets) are installed.
func Routed() Spec {
	return Spec{
		Name:  "routed",
		Nodes: []Node{{Role: Client}, {Role: Router, Router: true}, {Role: Server}},
		Links: []Link{{A: Client, B: Router}, {A: Router, B: Server}},
	}
}

// Endpoint is one end of a built link.
type Endpoint struct {
	Role   string
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
		if roles[n.Role] {
			return fmt.Errorf("topology %q: node %q twice", s.Name, n.Role)
		}
		roles[n.Role] = true
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
	return nil
}

func (s Spec) isRouter(role string) bool {
	for _, n := range s.Nodes {
		if n.Role == role {
			return n.Router
		}
	}
	return false
}

// ifname is the name of the interface in node `self` that faces node `peer`.
func ifname(peer string) string { return "to-" + peer }

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
		ns, err := l.AddNamespace(n.Role)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", spec.Name, err)
		}
		if err := ns.SetSysctls(nodeSysctls(n)); err != nil {
			return nil, fmt.Errorf("build %s: %s: %w", spec.Name, n.Role, err)
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

// nodeSysctls are set in every namespace before its links exist, so that
// the links inherit them through the "default" entries.
//
// DAD is off: right after link-up a link-local address is tentative for a
// second or more, and a forwarding router solicits neighbours from its
// link-local address; while it is tentative the kernel sends no neighbour
// solicitation at all, so the first forwarded IPv6 SYNs wait ~2 s.
func nodeSysctls(n Node) map[string]string {
	kv := map[string]string{
		"net.ipv6.conf.all.accept_dad":     "0",
		"net.ipv6.conf.default.accept_dad": "0",
	}
	if n.Router {
		kv["net.ipv4.ip_forward"] = "1"
		kv["net.ipv6.conf.all.forwarding"] = "1"
	}
	return kv
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
	return BuiltLink{Index: index, A: a, B: b}, nil
}

func endpoint(self, peer string, index int, host byte) Endpoint {
	v4 := netip.AddrFrom4([4]byte{10, 34, byte(index), host})
	v6 := netip.AddrFrom16([16]byte{0xfd, 0x34, 0, byte(index), 15: host})
	return Endpoint{
		Role:   self,
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
		return fmt.Errorf("%s: find %s: %w", ns.Role, ep.Ifname, err)
	}
	for _, p := range []netip.Prefix{ep.IPv4, ep.IPv6} {
		addr := &netlink.Addr{IPNet: prefixToIPNet(p)}
		if p.Addr().Is6() {
			// Without NODAD the address stays tentative for about a second
			// and the first IPv6 connect fails or waits.
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("%s: add %s to %s: %w", ns.Role, p, ep.Ifname, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s: set %s up: %w", ns.Role, ep.Ifname, err)
	}
	return nil
}

// addRoutes gives every host a default route (IPv4 and IPv6) via its first
// router neighbour. Routers only know their connected subnets, so no route
// anywhere leads out of the lab.
func (t *Topology) addRoutes() error {
	for _, n := range t.Spec.Nodes {
		if n.Router {
			continue
		}
		for _, bl := range t.Links {
			self, peer, ok := bl.sides(n.Role)
			if !ok || !t.Spec.isRouter(peer.Role) {
				continue
			}
			ns := t.Lab.Namespace(n.Role)
			link, err := ns.Netlink().LinkByName(self.Ifname)
			if err != nil {
				return fmt.Errorf("%s: find %s: %w", n.Role, self.Ifname, err)
			}
			for _, gw := range []netip.Addr{peer.IPv4.Addr(), peer.IPv6.Addr()} {
				r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw.AsSlice())}
				// Equivalent to: ip -n NS route add default via GW
				if err := ns.Netlink().RouteAdd(r); err != nil {
					return fmt.Errorf("%s: default route via %s: %w", n.Role, gw, err)
				}
			}
			break
		}
	}
	return nil
}

// sides returns (the end in role, the other end).
func (bl BuiltLink) sides(role string) (self, peer Endpoint, ok bool) {
	switch role {
	case bl.A.Role:
		return bl.A, bl.B, true
	case bl.B.Role:
		return bl.B, bl.A, true
	}
	return Endpoint{}, Endpoint{}, false
}

// waitUp polls until every interface reports OperUp. A SYN sent before the
// veth's qdisc is activated is dropped and costs a full 1 s RTO, so this
// wait is what makes the first connection's timing honest.
func (t *Topology) waitUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, bl := range t.Links {
		for _, ep := range []Endpoint{bl.A, bl.B} {
			h := t.Lab.Namespace(ep.Role).Netlink()
			delay := 50 * time.Microsecond
			for {
				link, err := h.LinkByName(ep.Ifname)
				if err != nil {
					return fmt.Errorf("%s: find %s: %w", ep.Role, ep.Ifname, err)
				}
				if link.Attrs().OperState == netlink.OperUp {
					break
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("%s: %s not up (state %s): %w", ep.Role, ep.Ifname, link.Attrs().OperState, ctx.Err())
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
			want[ep.Role] = append(want[ep.Role], ep.Ifname+" "+solicitedNodeHex(ep.IPv6.Addr()))
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

// Namespace returns the namespace of role.
func (t *Topology) Namespace(role string) *lab.Namespace { return t.Lab.Namespace(role) }

// Addr is role's address in family f on its first link; for a host that is
// the address peers reach it at.
func (t *Topology) Addr(role string, f Family) (netip.Addr, error) {
	for _, bl := range t.Links {
		if self, _, ok := bl.sides(role); ok {
			return self.Addr(f), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("topology %s: no link on %q", t.Spec.Name, role)
}

// Interface is the name of the interface in role's namespace that faces peer.
func (t *Topology) Interface(role, peer string) (string, error) {
	for _, bl := range t.Links {
		if self, other, ok := bl.sides(role); ok && other.Role == peer {
			return self.Ifname, nil
		}
	}
	return "", fmt.Errorf("topology %s: no link %s—%s", t.Spec.Name, role, peer)
}

// Neighbor is the role at the other end of host's first link (for a client in
// Routed, the router; in Direct, the server).
func (t *Topology) Neighbor(role string) (string, error) {
	for _, bl := range t.Links {
		if _, other, ok := bl.sides(role); ok {
			return other.Role, nil
		}
	}
	return "", fmt.Errorf("topology %s: no link on %q", t.Spec.Name, role)
}
