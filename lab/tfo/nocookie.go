package tfo

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// TCP_FASTOPEN_NO_COOKIE (include/uapi/linux/tcp.h, 34): per socket, what
// net.ipv4.tcp_fastopen bits 0x4 (client) and 0x200 (server) are per
// namespace and a route's fastopen_no_cookie metric is per destination.
// tcp_fastopen_no_cookie() ORs the three. On a client socket it sends data
// in the SYN without a cookie and without option 34; on a listener it
// accepts such data (and, since 5.15, makes a TFO child of a data-less
// SYN that asks for a cookie, without handing one out). The kernel takes
// it only while the socket is closed or listening.

// setNoCookie sets TCP_FASTOPEN_NO_COOKIE on fd.
func setNoCookie(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_NO_COOKIE, 1); err != nil {
		return fmt.Errorf("setsockopt TCP_FASTOPEN_NO_COOKIE: %w", err)
	}
	return nil
}

// clientNoCookie applies DialOptions.NoCookie to the client's socket fd
// before it sends anything.
func (o DialOptions) clientNoCookie(fd int) error {
	if !o.NoCookie {
		return nil
	}
	return setNoCookie(fd)
}

// SetNoCookie sets TCP_FASTOPEN_NO_COOKIE on the server's listening socket:
// from then on it accepts data in a SYN that carries no cookie, whatever
// the namespace's net.ipv4.tcp_fastopen says about 0x200 (its 0x2 and the
// listener's TCP_FASTOPEN queue are still needed).
func (s *Server) SetNoCookie() error {
	rc, err := s.ln.SyscallConn()
	if err != nil {
		return fmt.Errorf("tfo server %s: %w", s.addr, err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = setNoCookie(int(fd)) }); err != nil {
		return fmt.Errorf("tfo server %s: %w", s.addr, err)
	}
	if serr != nil {
		return fmt.Errorf("tfo server %s: %w", s.addr, serr)
	}
	return nil
}
