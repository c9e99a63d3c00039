package middlebox

import (
	"fmt"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/rules"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LowMTUBytes is the path MTU low-mtu gives the router's routes: IPv6's
// minimum link MTU (RFC 8200 §5), below a data SYN that carries more than
// about 1,200 bytes and well below the 1,500 of every lab link.
const LowMTUBytes = 1280

// LowMTU: see its Description.
var LowMTU = Middlebox{
	Name: "low-mtu",
	Description: fmt.Sprintf("Lowers the MTU of every unicast route of the node's main table to %d bytes, locked "+
		"(ip route change ... mtu lock %d: a forwarding router honours a route's MTU, IPv6 only a locked one), as a "+
		"tunnel or PPPoE hop on the path does; the links themselves keep 1,500, so nothing is dropped silently. A "+
		"packet too big for it with DF set (every TCP segment of a Linux sender) is answered with ICMP fragmentation "+
		"needed (IPv4, type 3 code 4) or packet too big (ICMPv6 type 2), both counted by a rule in OUTPUT. A data SYN "+
		"is sized from the sender's path MTU, so only one sent before the sender learned the lower MTU meets it.",
		LowMTUBytes, LowMTUBytes),
	Install: installLowMTU,
	Check:   validate,
}

// lowMTUCounters count the ICMP errors the node sends when a packet is too
// big for a route: one ACCEPT rule in OUTPUT, which the node's own ICMP
// errors traverse.
func lowMTUCounters(f lab.Family) []Rule {
	if f == lab.IPv6 {
		return []Rule{rule("filter", "OUTPUT", "-p", "ipv6-icmp", "--icmpv6-type", "packet-too-big", "-j", "ACCEPT")}
	}
	return []Rule{rule("filter", "OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "ACCEPT")}
}

// installLowMTU locks every unicast route of ns's main table in family f at
// LowMTUBytes. The routes go with the namespace; the counting rule's
// removal is registered on l. Equivalent to:
// ip -n NS route change DST ... mtu lock 1280 (per route)
func installLowMTU(l *lab.Lab, ns *lab.Namespace, f lab.Family, p Params) (Installed, error) {
	if err := validate(f, p); err != nil {
		return nil, err
	}
	family := netlink.FAMILY_V4
	if f == lab.IPv6 {
		family = netlink.FAMILY_V6
	}
	h := ns.Netlink()
	routes, err := h.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("low-mtu: list %s routes in %s: %w", f, ns.Role, err)
	}
	changed := 0
	for _, r := range routes {
		if r.Type != unix.RTN_UNICAST || (r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast()) {
			continue
		}
		r.MTU, r.MTULock = LowMTUBytes, true
		if err := h.RouteReplace(&r); err != nil {
			return nil, fmt.Errorf("low-mtu: route %s in %s: set mtu %d: %w", routeDst(r), ns.Role, LowMTUBytes, err)
		}
		changed++
	}
	if changed == 0 {
		return nil, fmt.Errorf("low-mtu: %s has no %s unicast route to lower", ns.Role, f)
	}
	rs := lowMTUCounters(f)
	if err := rules.Apply(l, ns, f, rs); err != nil {
		return nil, err
	}
	return installedRules{ns, f, rs}, nil
}

func routeDst(r netlink.Route) string {
	if r.Dst == nil {
		return "default"
	}
	return r.Dst.String()
}
