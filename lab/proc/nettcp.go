package proc

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
)

// StateListen is TCP_LISTEN as /proc/net/tcp prints it in the "st" column
// (0A; see include/net/tcp_states.h).
const StateListen = 0x0A

// Socket is one row of /proc/net/tcp or /proc/net/tcp6.
type Socket struct {
	Local  netip.AddrPort
	Remote netip.AddrPort
	State  uint8 // TCP_* state, StateListen for a listener
	UID    uint32
	Inode  uint64
}

// ParseNetTCP parses the contents of /proc/net/tcp or /proc/net/tcp6 (either
// family; the address width tells them apart).
//
// The kernel prints each address as 32-bit words with %08X, each word being
// the in-memory (network-order) bytes read as a host-order integer: on a
// little-endian machine 127.0.0.1 reads 0100007F. Ports are plain hex. The
// words are decoded with the host's byte order, so this is right on
// big-endian machines too.
func ParseNetTCP(b []byte) ([]Socket, error) {
	var socks []Socket
	for n, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 0 || string(f[0]) == "sl" {
			continue // blank, or the header
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 10: %q", n+1, len(f), line)
		}
		var s Socket
		var err error
		if s.Local, err = parseHexAddrPort(f[1]); err != nil {
			return nil, fmt.Errorf("line %d: local address: %w", n+1, err)
		}
		if s.Remote, err = parseHexAddrPort(f[2]); err != nil {
			return nil, fmt.Errorf("line %d: remote address: %w", n+1, err)
		}
		st, err := strconv.ParseUint(string(f[3]), 16, 8)
		if err != nil {
			return nil, fmt.Errorf("line %d: state %q: %w", n+1, f[3], err)
		}
		s.State = uint8(st)
		uid, err := strconv.ParseUint(string(f[7]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: uid %q: %w", n+1, f[7], err)
		}
		s.UID = uint32(uid)
		if s.Inode, err = strconv.ParseUint(string(f[9]), 10, 64); err != nil {
			return nil, fmt.Errorf("line %d: inode %q: %w", n+1, f[9], err)
		}
		socks = append(socks, s)
	}
	return socks, nil
}

// parseHexAddrPort parses "0100007F:1F90" or a 32-digit IPv6 form.
func parseHexAddrPort(b []byte) (netip.AddrPort, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: no ':'", b)
	}
	hexAddr, hexPort := b[:i], b[i+1:]
	port, err := strconv.ParseUint(string(hexPort), 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: port: %w", b, err)
	}
	if len(hexAddr) != 8 && len(hexAddr) != 32 {
		return netip.AddrPort{}, fmt.Errorf("%q: address has %d hex digits, want 8 or 32", b, len(hexAddr))
	}
	raw := make([]byte, len(hexAddr)/2)
	if _, err := hex.Decode(raw, hexAddr); err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %w", b, err)
	}
	// hex.Decode gave each word's printed (big-endian) digits; turn every
	// word back into the host-order integer the kernel printed, and store
	// that integer the way the host keeps it in memory.
	for w := 0; w < len(raw); w += 4 {
		binary.NativeEndian.PutUint32(raw[w:], binary.BigEndian.Uint32(raw[w:]))
	}
	var addr netip.Addr
	if len(raw) == 4 {
		addr = netip.AddrFrom4([4]byte(raw))
	} else {
		addr = netip.AddrFrom16([16]byte(raw))
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// serves reports whether a socket listening on l accepts connections to
// want: same port, and the same address or a wildcard that covers it.
// 0.0.0.0 covers IPv4 only; :: covers IPv6 and IPv4, assuming the default
// dual-stack listener (net.ipv6.bindv6only=0 and no IPV6_V6ONLY), which
// /proc/net/tcp6 does not show. IPv4-mapped addresses (::ffff:a.b.c.d)
// compare as their IPv4 address; zones are ignored (/proc shows none).
func serves(l, want netip.AddrPort) bool {
	if l.Port() != want.Port() {
		return false
	}
	la := l.Addr().WithZone("")
	wa := want.Addr().WithZone("").Unmap()
	if la.Is4In6() {
		la = la.Unmap()
	}
	switch {
	case la.Is4() && la.IsUnspecified():
		return wa.Is4()
	case la.Is6() && la.IsUnspecified():
		return true
	}
	return la == wa
}

// Listening reports whether any listener among socks accepts connections
// to want (see serves for the wildcard rules).
func Listening(socks []Socket, want netip.AddrPort) bool {
	for _, s := range socks {
		if s.State == StateListen && serves(s.Local, want) {
			return true
		}
	}
	return false
}
