package tfo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Mode selects how the client asks the kernel for TCP Fast Open.
type Mode int

const (
	// ModeSendto calls sendto(MSG_FASTOPEN) on an unconnected socket, as the
	// Python client on the TFO wiki page does. With a cached cookie the data
	// is queued into the SYN; without one the kernel sends a SYN with a
	// cookie request, sends no data and returns EINPROGRESS, and the client
	// writes the payload once the handshake completes.
	ModeSendto Mode = iota
	// ModeConnect sets TCP_FASTOPEN_CONNECT and then calls connect() and
	// write(), as curl --tcp-fastopen does. With a cached cookie connect()
	// returns 0 at once and the SYN goes out with the first write; without
	// one connect() sends a SYN with a cookie request and returns EINPROGRESS.
	ModeConnect
	// ModePlain is an ordinary connect() and write() without TFO (control).
	ModePlain
)

// String returns "sendto", "connect" or "plain".
func (m Mode) String() string {
	switch m {
	case ModeSendto:
		return "sendto"
	case ModeConnect:
		return "connect"
	case ModePlain:
		return "plain"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// DialOptions configure one client connection.
type DialOptions struct {
	// Mode is the kernel TFO mode to use.
	Mode Mode
	// Run creates the socket inside the wanted network namespace (nil: the
	// current one).
	Run Runner
	// Local, if valid, is bound before connecting. Its port may be 0. It must
	// be of the same address family as the remote address.
	Local netip.AddrPort
	// Abort closes with SO_LINGER {on, 0}: an RST and an immediate teardown
	// (tcp_disconnect) instead of a FIN and a socket that lingers in the
	// FIN-WAIT states. The kernel's out-of-order-FIN blackhole check runs at
	// that teardown.
	Abort bool
	// Label says what the workload meant the connection for ("probe",
	// "detect-1", ...); it is copied to Result.Label.
	Label string
	// UserTimeout, if non-zero, is set as TCP_USER_TIMEOUT before the
	// first packet: the connection gives up with ETIMEDOUT once data or a
	// SYN has gone unacknowledged that long (lab.SynSchedule.WithUserTimeout
	// says when a SYN gives up). It must be a whole number of milliseconds
	// from 1 ms to math.MaxInt32 ms; 0 leaves the option unset.
	UserTimeout time.Duration
	// NoCookie sets TCP_FASTOPEN_NO_COOKIE before the first packet: in
	// sendto and connect mode the SYN carries the data without a cookie
	// (see nocookie.go).
	NoCookie bool
}

// Result describes one client connection. All durations are measured from
// Start, taken just before the first syscall that puts a packet on the wire
// (sendto or connect); socket creation is not included.
type Result struct {
	Label         string
	Mode          Mode
	Local, Remote netip.AddrPort
	// Request is the payload sent; Response is every byte read up to EOF.
	Request, Response []byte
	// SynData is tcpi_options & TCPI_OPT_SYN_DATA: the SYN carried data and
	// the peer acknowledged it.
	SynData bool
	// ClientFail is tcpi_fastopen_client_fail: why TFO data did not go
	// through (ClientFailUnspec when it did or was never tried).
	ClientFail ClientFail
	// TotalRetrans and RTT (smoothed) come from tcp_info read once the
	// response is complete (best effort on failure).
	TotalRetrans uint32
	RTT          time.Duration
	Start        time.Time
	// Connected: the application saw the socket established (for sendto
	// with a cookie this is when the SYN-ACK came back).
	Connected time.Duration
	// FirstByte: the first response byte was read.
	FirstByte time.Duration
	// Done: the response was complete (EOF read).
	Done time.Duration
	// Failed: when Err was set (ETIMEDOUT from a give-up, a refusal).
	Failed time.Duration
	// Err is nil on success. A timeout or stall wraps
	// context.DeadlineExceeded and sets Stalled; cancellation wraps
	// context.Canceled.
	Err     error
	Stalled bool
}

// maxResponse bounds how much Request reads before giving up.
const maxResponse = 16 << 20

// Request connects to remote in opts.Mode, writes payload (which should end
// with '\n'), reads until EOF and reports what happened. It returns when the
// response is complete, on the first error, or when ctx is done, whichever
// comes first; it never leaves a goroutine or file descriptor behind.
func Request(ctx context.Context, opts DialOptions, remote netip.AddrPort, payload []byte) Result {
	c := &client{
		ctx:     ctx,
		opts:    opts,
		payload: payload,
		res: Result{
			Mode:    opts.Mode,
			Remote:  remote,
			Request: bytes.Clone(payload),
			Label:   opts.Label,
		},
	}
	c.do()
	return c.res
}

type client struct {
	ctx     context.Context
	opts    DialOptions
	payload []byte
	res     Result
	f       *os.File
	rc      syscall.RawConn
}

func (c *client) do() {
	if c.opts.Mode < ModeSendto || c.opts.Mode > ModePlain {
		c.fail("options", fmt.Errorf("unknown mode %d", int(c.opts.Mode)))
		return
	}
	if !c.res.Remote.IsValid() {
		c.fail("options", errors.New("invalid remote address"))
		return
	}
	if len(c.payload) == 0 {
		c.fail("options", errors.New("empty payload"))
		return
	}
	userTimeoutMS, err := userTimeoutMillis(c.opts.UserTimeout)
	if err != nil {
		c.fail("options", err)
		return
	}
	if err := c.ctx.Err(); err != nil {
		c.fail("start", err)
		return
	}
	raddr := c.res.Remote.Addr().Unmap()
	family := unix.AF_INET6
	if raddr.Is4() {
		family = unix.AF_INET
	}
	if c.opts.Local.IsValid() && c.opts.Local.Addr().Unmap().Is4() != raddr.Is4() {
		c.fail("options", fmt.Errorf("local address %s and remote address are of different families", c.opts.Local))
		return
	}

	fd := -1
	var zoneID uint32
	err = c.opts.Run.run(func() error {
		var err error
		if z := raddr.Zone(); z != "" {
			if zoneID, err = resolveZone(z); err != nil {
				return err
			}
		}
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		c.fail("socket", err)
		return
	}
	sa := sockaddr(raddr, c.res.Remote.Port(), zoneID)

	// A non-blocking fd handed to os.NewFile is registered with the runtime
	// poller; SetDeadline fails with os.ErrNoDeadline if it was not.
	c.f = os.NewFile(uintptr(fd), "tfo-client")
	defer c.f.Close()
	var dl time.Time
	if d, ok := c.ctx.Deadline(); ok {
		dl = d
	}
	if err := c.f.SetDeadline(dl); err != nil {
		c.fail("set deadline", err)
		return
	}
	// The socket must be closed when Request returns: closing a TFO
	// socket is a kernel event of its own (it may re-arm blackhole
	// detection), and the caller's next connection must come after it.
	// SetDeadline holds a reference on the fd while it runs, and a close
	// under it is deferred until it lets go: so a wake-up that has started
	// is waited for before the deferred Close.
	woken := make(chan struct{})
	stop := context.AfterFunc(c.ctx, func() {
		defer close(woken)
		_ = c.f.SetDeadline(time.Unix(1, 0)) // wake every pending wait
	})
	defer func() {
		if !stop() {
			<-woken
		}
	}()
	if c.rc, err = c.f.SyscallConn(); err != nil {
		c.fail("syscallconn", err)
		return
	}
	// Best-effort post-mortem on every path: the kernel's view of the
	// connection (SynData, ClientFail, ...) and the local address.
	defer c.fillInfo()

	if err := c.control(func(fd int) error {
		// Nagle would hold back the tail of a multi-segment request until
		// the server's (delayed) ACK; curl sets TCP_NODELAY too.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
			return fmt.Errorf("setsockopt TCP_NODELAY: %w", err)
		}
		if c.opts.Local.IsValid() {
			la := c.opts.Local.Addr().Unmap()
			if err := unix.Bind(fd, sockaddr(la, c.opts.Local.Port(), 0)); err != nil {
				return fmt.Errorf("bind %s: %w", c.opts.Local, err)
			}
		}
		if c.opts.Abort {
			if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
				return fmt.Errorf("setsockopt SO_LINGER: %w", err)
			}
		}
		if userTimeoutMS > 0 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, userTimeoutMS); err != nil {
				return fmt.Errorf("setsockopt TCP_USER_TIMEOUT %d ms: %w", userTimeoutMS, err)
			}
		}
		if err := c.opts.clientNoCookie(fd); err != nil {
			return err
		}
		if c.opts.Mode == ModeConnect {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1); err != nil {
				return fmt.Errorf("setsockopt TCP_FASTOPEN_CONNECT: %w", err)
			}
		}
		return nil
	}); err != nil {
		c.fail("setup", err)
		return
	}

	switch c.opts.Mode {
	case ModeSendto:
		var n int
		c.res.Start = time.Now()
		err := c.control(func(fd int) error {
			var err error
			n, err = unix.SendmsgN(fd, c.payload, nil, sa, unix.MSG_FASTOPEN|unix.MSG_DONTWAIT)
			return err
		})
		switch {
		case err == nil:
			// Cookie cached (or no-cookie mode): n bytes rode in the SYN.
		case errors.Is(err, unix.EINPROGRESS):
			// No cookie: a SYN with a cookie request went out, no data.
			n = 0
		default:
			c.fail("sendto", err)
			return
		}
		if !c.waitConnected() {
			return
		}
		if !c.writeAll(c.payload[n:]) {
			return
		}
	case ModeConnect, ModePlain:
		c.res.Start = time.Now()
		err := c.control(func(fd int) error { return unix.Connect(fd, sa) })
		switch {
		case err == nil:
			// TFO with a cached cookie: the connect is deferred and the SYN
			// leaves with the first write. (For a plain socket a zero return
			// would mean an immediate connect; the order below works for both.)
			if !c.writeAll(c.payload) {
				return
			}
			if !c.waitConnected() {
				return
			}
		case errors.Is(err, unix.EINPROGRESS):
			if !c.waitConnected() {
				return
			}
			if !c.writeAll(c.payload) {
				return
			}
		default:
			c.fail("connect", err)
			return
		}
	}
	c.readAll()
}

// userTimeoutMillis converts DialOptions.UserTimeout to the milliseconds
// TCP_USER_TIMEOUT takes (an int the kernel refuses when negative).
func userTimeoutMillis(d time.Duration) (int, error) {
	if d < 0 || d%time.Millisecond != 0 || d > math.MaxInt32*time.Millisecond {
		return 0, fmt.Errorf("user timeout %v is not a whole number of milliseconds in [0, %v]", d, math.MaxInt32*time.Millisecond)
	}
	return int(d / time.Millisecond), nil
}

// control runs f on the raw fd (a one-shot, non-blocking syscall).
func (c *client) control(f func(fd int) error) error {
	var ferr error
	if err := c.rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// waitConnected waits until the handshake is complete, as the application
// sees it (socket writable and no longer in SYN-SENT), and records
// Connected.
func (c *client) waitConnected() bool {
	var cerr error
	err := c.rc.Write(func(fd uintptr) bool {
		soerr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			cerr = fmt.Errorf("getsockopt SO_ERROR: %w", err)
			return true
		}
		if soerr != 0 {
			cerr = unix.Errno(soerr)
			return true
		}
		ti, err := readTCPInfo(fd)
		if err != nil {
			cerr = err
			return true
		}
		switch ti.State {
		case tcpSynSent:
			return false // the poller wakes us when the state changes
		case tcpClose:
			cerr = errors.New("connection closed during handshake")
		}
		return true
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		c.fail("handshake", err)
		return false
	}
	c.res.Connected = time.Since(c.res.Start)
	return true
}

// noEINTR makes the system call io again while a signal interrupts it.
func noEINTR(io func() (int, error)) (int, error) {
	for {
		if n, err := io(); err != unix.EINTR {
			return n, err
		}
	}
}

// writeAll writes p, handling partial writes and waiting for writability.
func (c *client) writeAll(p []byte) bool {
	for len(p) > 0 {
		var n int
		var werr error
		err := c.rc.Write(func(fd uintptr) bool {
			n, werr = noEINTR(func() (int, error) { return unix.Write(int(fd), p) })
			// EAGAIN: socket buffer full or still in SYN-SENT.
			// EINPROGRESS: a deferred (TCP_FASTOPEN_CONNECT) connect sent its
			// SYN but could not put data in it; wait for the handshake.
			return werr != unix.EAGAIN && werr != unix.EINPROGRESS
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			c.fail("write", err)
			return false
		}
		if n < 0 {
			n = 0
		}
		p = p[n:]
	}
	return true
}

// readAll reads until EOF, recording FirstByte and Done.
func (c *client) readAll() {
	buf := make([]byte, 32<<10)
	for {
		var n int
		var rerr error
		err := c.rc.Read(func(fd uintptr) bool {
			n, rerr = noEINTR(func() (int, error) { return unix.Read(int(fd), buf) })
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			c.fail("read", err)
			return
		}
		if n <= 0 {
			c.res.Done = time.Since(c.res.Start)
			return
		}
		if c.res.Response == nil {
			c.res.FirstByte = time.Since(c.res.Start)
		}
		c.res.Response = append(c.res.Response, buf[:n]...)
		if len(c.res.Response) > maxResponse {
			c.fail("read", fmt.Errorf("response exceeds %d bytes", maxResponse))
			return
		}
	}
}

// fillInfo records tcp_info and the local address; errors only matter when
// the connection otherwise succeeded.
func (c *client) fillInfo() {
	var ti tcpInfo
	var tiErr error
	var local unix.Sockaddr
	err := c.rc.Control(func(fd uintptr) {
		ti, tiErr = readTCPInfo(fd)
		local, _ = unix.Getsockname(int(fd))
	})
	if err == nil {
		err = tiErr
	}
	if err != nil {
		if c.res.Err == nil {
			c.fail("tcp_info", err)
		}
		return
	}
	c.res.SynData = ti.SynData()
	c.res.ClientFail = ti.ClientFail
	c.res.TotalRetrans = ti.TotalRetrans
	c.res.RTT = ti.RTT
	if ap, ok := addrPortOf(local); ok && ap.Port() != 0 {
		c.res.Local = ap
	}
}

// fail records the first error. Poller deadline errors are translated into
// the context's error so callers can test errors.Is(err,
// context.DeadlineExceeded).
func (c *client) fail(stage string, err error) {
	if c.res.Err != nil {
		return
	}
	if !c.res.Start.IsZero() {
		c.res.Failed = time.Since(c.res.Start)
	}
	mode, remote := c.opts.Mode, c.res.Remote
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		if errors.Is(c.ctx.Err(), context.Canceled) {
			c.res.Err = fmt.Errorf("tfo %s client to %s: %s: %w", mode, remote, stage, context.Canceled)
			return
		}
		c.res.Stalled = true
		var waited string
		if !c.res.Start.IsZero() {
			waited = fmt.Sprintf(" after %v", time.Since(c.res.Start).Round(time.Millisecond))
		}
		c.res.Err = fmt.Errorf("tfo %s client to %s: %s: stalled%s: %w", mode, remote, stage, waited, context.DeadlineExceeded)
		return
	}
	c.res.Err = fmt.Errorf("tfo %s client to %s: %s: %w", mode, remote, stage, err)
}

func sockaddr(a netip.Addr, port uint16, zoneID uint32) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(port), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(port), ZoneId: zoneID, Addr: a.As16()}
}

func addrPortOf(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), true
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.ZoneId != 0 && a.Is6() {
			a = a.WithZone(strconv.FormatUint(uint64(sa.ZoneId), 10))
		}
		return netip.AddrPortFrom(a, uint16(sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// resolveZone turns an IPv6 zone (interface name or index) into an index.
// It runs inside the Runner so names resolve in the target namespace.
func resolveZone(z string) (uint32, error) {
	if n, err := strconv.ParseUint(z, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(z)
	if err != nil {
		return 0, fmt.Errorf("resolve IPv6 zone %q: %w", z, err)
	}
	return uint32(ifi.Index), nil
}
