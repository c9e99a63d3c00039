package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// conn is the probe's view of one half-open connection: a raw TCP socket
// connected to the target, and a TCP socket that holds the source port.
type conn struct {
	// raw sends the crafted segments and receives a copy of every TCP
	// segment from the target to the local address. It goes through the Go
	// poller, so deadlines interrupt a read.
	raw *os.File
	// hold is a TCP socket bound (not listening) to local, so that no other
	// socket in the namespace uses the source port during the probe. -1 if
	// none.
	hold          int
	local, remote netip.AddrPort
	ipv4          bool
}

// openConn creates the sockets on the calling thread, so they belong to
// its network namespace. src may be invalid: the kernel's route to dst
// picks it. port 0 takes a free ephemeral port.
//
// The raw socket is bound to src and connected to dst's address, so the
// kernel delivers only segments between those two addresses to it, and
// reports ICMP errors about the SYN as errors of a later read.
func openConn(src netip.Addr, dst netip.AddrPort, port uint16) (_ *conn, err error) {
	c := &conn{hold: -1, remote: dst, ipv4: dst.Addr().Is4()}
	family := unix.AF_INET6
	if c.ipv4 {
		family = unix.AF_INET
	}
	// Without IP_HDRINCL (implied only by IPPROTO_RAW) the kernel builds the
	// IP header; the socket reads IPv4 segments with their IP header and
	// IPv6 segments without.
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("raw TCP socket (needs CAP_NET_RAW): %w", err)
	}
	defer func() {
		if err != nil {
			c.close()
			if c.raw == nil {
				unix.Close(fd)
			}
		}
	}()
	if src.IsValid() {
		sa, err := sockaddr(src, 0)
		if err != nil {
			return nil, err
		}
		if err := unix.Bind(fd, sa); err != nil {
			return nil, fmt.Errorf("bind raw socket to %s: %w", src, err)
		}
	}
	sa, err := sockaddr(dst.Addr(), 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, sa); err != nil {
		return nil, fmt.Errorf("connect raw socket to %s: %w", dst.Addr(), err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("raw socket address: %w", err)
	}
	local := addrOf(got)

	// Holding the port keeps the kernel from handing it to a connect() or
	// bind(0) meanwhile. It does not silence the kernel: a bound socket is
	// in no lookup table for incoming segments, so the SYN-ACK still finds
	// no socket and the kernel answers it with an RST (Tcp OutRsts +1).
	c.hold, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("TCP socket to hold the source port: %w", err)
	}
	if sa, err = sockaddr(local, port); err != nil {
		return nil, err
	}
	if err := unix.Bind(c.hold, sa); err != nil {
		return nil, fmt.Errorf("bind source port %s: %w", netip.AddrPortFrom(local, port), err)
	}
	if got, err = unix.Getsockname(c.hold); err != nil {
		return nil, fmt.Errorf("source port: %w", err)
	}
	c.local = netip.AddrPortFrom(local, portOf(got))

	// os.NewFile registers a non-blocking descriptor with the poller.
	c.raw = os.NewFile(uintptr(fd), "raw TCP socket to "+dst.Addr().String())
	if c.raw == nil {
		return nil, errors.New("raw socket: invalid descriptor")
	}
	return c, nil
}

func (c *conn) close() {
	if c.raw != nil {
		c.raw.Close()
	}
	if c.hold >= 0 {
		unix.Close(c.hold)
	}
}

// send writes one crafted TCP segment.
func (c *conn) send(seg []byte) error {
	if _, err := c.raw.Write(seg); err != nil {
		return fmt.Errorf("send to %s: %w", c.remote, err)
	}
	return nil
}

// icmpError is an ICMP error about the SYN, reported by the connected raw
// socket as the errno the kernel mapped it to.
type icmpError struct{ errno syscall.Errno }

func (e icmpError) Error() string {
	return fmt.Sprintf("ICMP error instead of an answer: %v (%s)", e.errno, unix.ErrnoName(e.errno))
}

// await reads until a segment answers the SYN (isn), until deadline, or
// until ctx ends. It returns the reply and when it arrived; ok false means
// none came in time. An ICMP error comes back as icmpError; ctx's end as
// ctx.Err().
func (c *conn) await(ctx context.Context, deadline time.Time, isn uint32) (r reply, at time.Time, ok bool, err error) {
	if err := c.raw.SetReadDeadline(deadline); err != nil {
		return reply{}, time.Time{}, false, fmt.Errorf("raw socket deadline: %w", err)
	}
	// A deadline in the past wakes the blocked read when ctx ends.
	stop := context.AfterFunc(ctx, func() { c.raw.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 1<<16)
	for {
		n, err := c.raw.Read(buf)
		at = time.Now()
		var errno syscall.Errno
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if ctx.Err() != nil {
				return reply{}, at, false, ctx.Err()
			}
			return reply{}, at, false, nil
		case errors.As(err, &errno):
			// The only errors a connected raw socket reports on read are
			// the asynchronous ones: ICMP about what it sent.
			return reply{}, at, false, icmpError{errno}
		case err != nil:
			return reply{}, at, false, fmt.Errorf("receive from %s: %w", c.remote, err)
		}
		if r, ok := matchReply(buf[:n], c.ipv4, c.local, c.remote, isn); ok {
			return r, at, true, nil
		}
	}
}

// sockaddr converts a (possibly zoned) address. A zone is resolved in the
// calling thread's namespace.
func sockaddr(a netip.Addr, port uint16) (unix.Sockaddr, error) {
	a = a.Unmap()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(port), Addr: a.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(port), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		if i, err := strconv.Atoi(z); err == nil {
			sa.ZoneId = uint32(i)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		} else {
			return nil, fmt.Errorf("zone of %s: %w", a, err)
		}
	}
	return sa, nil
}

func addrOf(sa unix.Sockaddr) netip.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			a = a.WithZone(strconv.Itoa(int(sa.ZoneId)))
		}
		return a
	}
	return netip.Addr{}
}

func portOf(sa unix.Sockaddr) uint16 {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return uint16(sa.Port)
	case *unix.SockaddrInet6:
		return uint16(sa.Port)
	}
	return 0
}
