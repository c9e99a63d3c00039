package topology

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Lab address space: every address and route target of a topology lies
// inside these, or is loopback, link-local or multicast.
var labPrefixes = []netip.Prefix{
	netip.MustParsePrefix("10.34.0.0/16"),
	netip.MustParsePrefix("fd34::/16"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
	netip.MustParsePrefix("224.0.0.0/4"),
}

func inLab(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	for _, p := range labPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// CheckIsolated verifies the promise the lab makes to its host: every veth
// of the topology has its peer in another namespace of the same topology
// (none in the root namespace), and every route in every namespace leads to
// the lab's own address space.
func (t *Topology) CheckIsolated() error {
	ids := map[int]string{} // netnsid (as seen from ns) -> role, per ns
	for _, n := range t.Spec.Nodes {
		ns := t.Namespace(n.Name)
		h := ns.Netlink()
		clear(ids)
		for _, other := range t.Spec.Nodes {
			if other.Name == n.Name {
				continue
			}
			id, err := h.GetNetNsIdByFd(int(t.Namespace(other.Name).Handle()))
			if err != nil {
				return fmt.Errorf("%s: netnsid of %s: %w", n.Name, other.Name, err)
			}
			ids[id] = other.Name
		}
		links, err := h.LinkList()
		if err != nil {
			return fmt.Errorf("%s: list links: %w", n.Name, err)
		}
		for _, l := range links {
			if l.Type() != "veth" {
				continue
			}
			if _, ok := ids[l.Attrs().NetNsID]; !ok {
				return fmt.Errorf("%s: veth %s has its peer in netnsid %d, which is not a namespace of this topology", n.Name, l.Attrs().Name, l.Attrs().NetNsID)
			}
		}
		routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("%s: list routes: %w", n.Name, err)
		}
		for _, r := range routes {
			if r.Gw != nil && !inLab(r.Gw) {
				return fmt.Errorf("%s: route %s leaves the lab via %s", n.Name, r, r.Gw)
			}
			for _, nh := range r.MultiPath {
				if nh.Gw != nil && !inLab(nh.Gw) {
					return fmt.Errorf("%s: multipath route %s leaves the lab via %s", n.Name, r, nh.Gw)
				}
			}
			if r.Dst != nil && r.Gw == nil && !inLab(r.Dst.IP) {
				return fmt.Errorf("%s: route to %s outside the lab's address space", n.Name, r.Dst)
			}
		}
	}
	return nil
}
