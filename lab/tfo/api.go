package tfo

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sock is a raw TCP socket for API-contract scripts (the calls packetdrill
// scripts make, on a real socket): each method makes exactly one system
// call, or a poll bounded by its timeout, and returns what the kernel
// returned, errno included, without retrying. Request and Listen are the
// lab's applications; Sock is the socket API itself.
//
// A Sock is not safe for concurrent use; its fd is closed by Close.
type Sock struct {
	fd    int
	start time.Time
	// nonblock records O_NONBLOCK, for the ops' names.
	nonblock bool
}

// CallResult is one call on a Sock and its result.
type CallResult struct {
	Op string
	// Ret is the return value, -1 with Errno set on error.
	Ret   int
	Errno syscall.Errno
	// Detail is what else the call reported: poll's revents, tcp_info's
	// state.
	Detail string
	// At is when the call returned, from the Sock's start.
	At time.Duration
}

// ErrnoName is the errno's symbolic name ("EINPROGRESS"), "" for none.
// Linux's ENOTSUP and EOPNOTSUPP are one number; a socket call's is named
// EOPNOTSUPP, as the socket API (and packetdrill) names it.
func (c CallResult) ErrnoName() string {
	switch c.Errno {
	case 0:
		return ""
	case unix.EOPNOTSUPP:
		return "EOPNOTSUPP"
	}
	return unix.ErrnoName(c.Errno)
}

func (c CallResult) String() string {
	s := fmt.Sprintf("%s = %d", c.Op, c.Ret)
	if c.Errno != 0 {
		s += " " + c.ErrnoName()
	}
	if c.Detail != "" {
		s += " (" + c.Detail + ")"
	}
	return s
}

// NewSock creates a TCP socket of addr's family inside run's namespace,
// non-blocking unless blocking is set (a blocking one should get
// SO_SNDTIMEO/SO_RCVTIMEO before a call that may wait). Its clock starts
// now.
func NewSock(run Runner, addr netip.Addr, blocking bool) (*Sock, error) {
	family := unix.AF_INET6
	if addr.Unmap().Is4() {
		family = unix.AF_INET
	}
	flags := unix.SOCK_STREAM | unix.SOCK_CLOEXEC
	if !blocking {
		flags |= unix.SOCK_NONBLOCK
	}
	fd := -1
	err := run.run(func() error {
		var err error
		fd, err = unix.Socket(family, flags, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	return &Sock{fd: fd, start: time.Now(), nonblock: !blocking}, nil
}

// ListenSock is a listening socket on ap inside run's namespace with
// SO_REUSEADDR, TCP_FASTOPEN queue (0: unset) and TCP_MAXSEG maxseg (0:
// unset; the MSS its SYN-ACKs advertise), non-blocking: Accept polls.
func ListenSock(run Runner, ap netip.AddrPort, queue, maxseg int) (*Sock, error) {
	s, err := NewSock(run, ap.Addr(), false)
	if err != nil {
		return nil, err
	}
	fail := func(what string, err error) (*Sock, error) {
		unix.Close(s.fd)
		return nil, fmt.Errorf("listener %s: %s: %w", ap, what, err)
	}
	if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if queue > 0 {
		if err := unix.SetsockoptInt(s.fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN, queue); err != nil {
			return fail("TCP_FASTOPEN", err)
		}
	}
	if maxseg > 0 {
		if err := unix.SetsockoptInt(s.fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG, maxseg); err != nil {
			return fail("TCP_MAXSEG", err)
		}
	}
	if err := unix.Bind(s.fd, sockaddr(ap.Addr().Unmap(), ap.Port(), 0)); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(s.fd, 16); err != nil {
		return fail("listen", err)
	}
	return s, nil
}

// result makes the CallResult of a call that returned (n, err).
func (s *Sock) result(op string, n int, err error) CallResult {
	r := CallResult{Op: op, Ret: n, At: time.Since(s.start)}
	if err != nil {
		r.Ret = -1
		var errno syscall.Errno
		if errors.As(err, &errno) {
			r.Errno = errno
		} else {
			r.Errno = unix.EINVAL
			r.Detail = err.Error()
		}
	}
	return r
}

// Restart resets the Sock's clock (the connection's start).
func (s *Sock) Restart() { s.start = time.Now() }

// Start is when the Sock's clock started.
func (s *Sock) Start() time.Time { return s.start }

// SetsockoptInt sets an integer option.
func (s *Sock) SetsockoptInt(op string, level, opt, val int) CallResult {
	return s.result(op, 0, unix.SetsockoptInt(s.fd, level, opt, val))
}

// SetTimeouts sets SO_SNDTIMEO and SO_RCVTIMEO, which bound a blocking
// call.
func (s *Sock) SetTimeouts(d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return fmt.Errorf("SO_SNDTIMEO: %w", err)
	}
	if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	return nil
}

// Linger0 sets SO_LINGER {on, 0}: close sends an RST.
func (s *Sock) Linger0(op string) CallResult {
	return s.result(op, 0, unix.SetsockoptLinger(s.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}))
}

// Connect calls connect(ap).
func (s *Sock) Connect(op string, ap netip.AddrPort) CallResult {
	return s.result(op, 0, unix.Connect(s.fd, sockaddr(ap.Addr().Unmap(), ap.Port(), 0)))
}

// Sendto calls sendto(p, flags, ap); an invalid ap passes no address.
func (s *Sock) Sendto(op string, p []byte, flags int, ap netip.AddrPort) CallResult {
	var sa unix.Sockaddr
	if ap.IsValid() {
		sa = sockaddr(ap.Addr().Unmap(), ap.Port(), 0)
	}
	n, err := unix.SendmsgN(s.fd, p, nil, sa, flags)
	return s.result(op, n, err)
}

// SendtoUnspec calls sendto(p, flags) with an AF_UNSPEC address, which
// connect() takes as "disconnect".
func (s *Sock) SendtoUnspec(op string, p []byte, flags int) CallResult {
	sa := unix.RawSockaddrAny{}
	sa.Addr.Family = unix.AF_UNSPEC
	var buf unsafe.Pointer
	if len(p) > 0 {
		buf = unsafe.Pointer(&p[0])
	}
	n, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(buf), uintptr(len(p)), uintptr(flags),
		uintptr(unsafe.Pointer(&sa)), uintptr(unix.SizeofSockaddrInet4))
	var err error
	if e != 0 {
		err = e
	}
	return s.result(op, int(n), err)
}

// Sendmsg calls sendmsg with one iovec per element of iovs, flags and ap
// as msg_name (none if invalid).
func (s *Sock) Sendmsg(op string, iovs [][]byte, flags int, ap netip.AddrPort) CallResult {
	var sa unix.Sockaddr
	if ap.IsValid() {
		sa = sockaddr(ap.Addr().Unmap(), ap.Port(), 0)
	}
	n, err := unix.SendmsgBuffers(s.fd, iovs, nil, sa, flags)
	return s.result(op, n, err)
}

// Write calls write(p).
func (s *Sock) Write(op string, p []byte) CallResult {
	n, err := unix.Write(s.fd, p)
	return s.result(op, n, err)
}

// Read calls read once, up to max bytes, and returns what it read.
func (s *Sock) Read(op string, max int) (CallResult, []byte) {
	buf := make([]byte, max)
	n, err := unix.Read(s.fd, buf)
	if n < 0 {
		n = 0
	}
	return s.result(op, n, err), buf[:n]
}

// ReadWait polls for POLLIN up to timeout, then reads once.
func (s *Sock) ReadWait(op string, max int, timeout time.Duration) (CallResult, []byte) {
	if r := s.Poll(op+" (poll)", unix.POLLIN, timeout); r.Ret == 0 {
		r.Op, r.Ret, r.Errno, r.Detail = op, -1, unix.EAGAIN, fmt.Sprintf("nothing to read within %v", timeout)
		return r, nil
	}
	return s.Read(op, max)
}

// Poll calls poll(events, timeout) on the socket alone; Detail is revents.
func (s *Sock) Poll(op string, events int16, timeout time.Duration) CallResult {
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: events}}
	deadline := time.Now().Add(timeout)
	for {
		// Never a negative timeout: poll would wait for ever.
		n, err := unix.Poll(fds, int(max(0, time.Until(deadline).Milliseconds())))
		if err == unix.EINTR && time.Now().Before(deadline) {
			continue
		}
		r := s.result(op, n, err)
		r.Detail = PollEvents(fds[0].Revents)
		return r
	}
}

// PollEvents names poll events as "POLLIN|POLLOUT" ("none" for 0).
func PollEvents(ev int16) string {
	var out []string
	for _, e := range []struct {
		bit  int16
		name string
	}{{unix.POLLIN, "POLLIN"}, {unix.POLLOUT, "POLLOUT"}, {unix.POLLERR, "POLLERR"}, {unix.POLLHUP, "POLLHUP"}, {unix.POLLRDHUP, "POLLRDHUP"}} {
		if ev&e.bit != 0 {
			out = append(out, e.name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "|")
}

// TCPInfo reads tcp_info: Ret is tcpi_options, Detail the state's name.
func (s *Sock) TCPInfo(op string) CallResult {
	ti, err := readTCPInfo(uintptr(s.fd))
	r := s.result(op, int(ti.Options), err)
	r.Detail = TCPStateName(ti.State)
	return r
}

// TCPStateName names a tcpi_state (include/net/tcp_states.h).
func TCPStateName(st uint8) string {
	names := []string{1: "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}
	if int(st) < len(names) && names[st] != "" {
		return names[st]
	}
	return fmt.Sprintf("state %d", st)
}

// Accept polls the listener for a connection up to timeout and accepts
// it, non-blocking; the child's clock starts at the listener's.
func (s *Sock) Accept(op string, timeout time.Duration) (CallResult, *Sock) {
	if r := s.Poll(op+" (poll)", unix.POLLIN, timeout); r.Ret == 0 {
		r.Op, r.Ret, r.Errno, r.Detail = op, -1, unix.EAGAIN, fmt.Sprintf("no connection within %v", timeout)
		return r, nil
	}
	fd, _, err := unix.Accept4(s.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return s.result(op, -1, err), nil
	}
	return s.result(op, fd, nil), &Sock{fd: fd, start: s.start, nonblock: true}
}

// Local is the socket's bound address (invalid if none).
func (s *Sock) Local() netip.AddrPort {
	return answeredAddrPort(unix.Getsockname(s.fd))
}

// Remote is the socket's peer address (invalid if none).
func (s *Sock) Remote() netip.AddrPort {
	return answeredAddrPort(unix.Getpeername(s.fd))
}

// answeredAddrPort is the address getsockname or getpeername answered
// (invalid if the call failed).
func answeredAddrPort(sa unix.Sockaddr, err error) netip.AddrPort {
	if err != nil {
		return netip.AddrPort{}
	}
	ap, _ := addrPortOf(sa)
	return ap
}

// Close closes the socket; a second Close is a no-op.
func (s *Sock) Close(op string) CallResult {
	if s.fd < 0 {
		return CallResult{Op: op, At: time.Since(s.start)}
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return s.result(op, 0, err)
}

// Shutdown calls shutdown(how).
func (s *Sock) Shutdown(op string, how int) CallResult {
	return s.result(op, 0, unix.Shutdown(s.fd, how))
}

// Bind calls bind(ap).
func (s *Sock) Bind(op string, ap netip.AddrPort) CallResult {
	return s.result(op, 0, unix.Bind(s.fd, sockaddr(ap.Addr().Unmap(), ap.Port(), 0)))
}

// TCPInfoRTT reads tcp_info: Ret is tcpi_rtt in microseconds (the
// smoothed RTT; after one sample, that sample), Detail the state's name.
func (s *Sock) TCPInfoRTT(op string) CallResult {
	ti, err := readTCPInfo(uintptr(s.fd))
	r := s.result(op, int(ti.RTT/time.Microsecond), err)
	r.Detail = TCPStateName(ti.State)
	return r
}
