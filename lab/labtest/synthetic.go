package labtest

import (
	"net"
	"net/netip"
	"time"
)

// Synthetic observations, built by hand without root, use the Routed
// topology's addresses and one time origin.
var (
	// T0 is the time origin of synthetic observations.
	T0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	// Server is the service of a Routed lab: the server node, port 7000.
	Server = netip.MustParseAddrPort("10.34.2.2:7000")
)

// Client is the client node of a Routed lab, at port.
func Client(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("10.34.1.2"), port)
}

// The MAC addresses of synthetic frames: from MACA to MACB.
var (
	MACA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	MACB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)
