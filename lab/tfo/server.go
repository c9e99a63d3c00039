package tfo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// serverConnTimeout bounds how long one connection may take to send its
	// line and take the reply.
	serverConnTimeout = 30 * time.Second
	// maxRequestLine bounds the request line the server reads.
	maxRequestLine = 64 << 10
	// closeWait bounds how long Close waits for connection goroutines.
	closeWait = 5 * time.Second
)

// ServerOptions configure a line-echo server.
type ServerOptions struct {
	// Addr is the address to listen on; port 0 picks an ephemeral port. An
	// invalid (zero) address listens on all addresses of both families.
	Addr netip.AddrPort
	// Run creates the listening socket inside the wanted network namespace
	// (nil: the current one).
	Run Runner
	// FastOpenQueue is the TCP_FASTOPEN backlog set before listen(). 0
	// leaves it unset: the listener then does TFO only if the namespace's
	// net.ipv4.tcp_fastopen has 0x400 (server enabled without setsockopt).
	FastOpenQueue int
	// Key, if set, is this listener's own TCP_FASTOPEN_KEY; otherwise the
	// namespace key (net.ipv4.tcp_fastopen_key) is used.
	Key *Key
	// Reply is written to every client; nil echoes the request line back.
	Reply []byte
}

// Accepted records one connection the server handled.
type Accepted struct {
	Remote netip.AddrPort
	// Request is the line read, including its '\n' (what was read so far
	// when Err is set).
	Request []byte
	// SynData is passive TFO: tcpi_options & TCPI_OPT_SYN_DATA on the
	// accepted socket, i.e. the data in the client's SYN was accepted.
	SynData bool
	// Options is tcpi_options of the accepted socket as read then: on 6.18
	// a passive TFO child also has TCPI_OPT_TFO_CHILD (0x80).
	Options uint8
	// Time is when the connection was accepted.
	Time time.Time
	Err  error
}

// Server is a TFO-capable line server: for each connection it reads one
// line, writes the reply and closes.
type Server struct {
	ln    *net.TCPListener
	addr  netip.AddrPort
	reply []byte

	mu       sync.Mutex
	closed   bool
	conns    map[*net.TCPConn]struct{}
	accepted []Accepted

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Listen starts a server. TCP_FASTOPEN and TCP_FASTOPEN_KEY are set on the
// socket before listen() (the kernel keeps a listener's key across
// listen(), and Listen reads it back afterwards to make sure). Multipath TCP,
// which Go otherwise enables on listeners by default, is turned off so the
// kernel's plain TCP fast-open path is what gets exercised.
func Listen(opts ServerOptions) (*Server, error) {
	if opts.FastOpenQueue < 0 {
		return nil, fmt.Errorf("tfo server %s: negative FastOpenQueue %d", opts.Addr, opts.FastOpenQueue)
	}
	network, address := "tcp", net.JoinHostPort("", strconv.Itoa(int(opts.Addr.Port())))
	if a := opts.Addr.Addr(); a.IsValid() {
		address = opts.Addr.String()
		if a.Unmap().Is4() {
			network, address = "tcp4", netip.AddrPortFrom(a.Unmap(), opts.Addr.Port()).String()
		} else {
			network = "tcp6"
		}
	}
	var key []byte
	if opts.Key != nil {
		key = opts.Key.bytes()
	}
	lc := net.ListenConfig{
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if q := opts.FastOpenQueue; q > 0 {
					if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN, q); err != nil {
						serr = fmt.Errorf("setsockopt TCP_FASTOPEN=%d: %w", q, err)
						return
					}
				}
				if key != nil {
					if err := unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN_KEY, string(key)); err != nil {
						serr = fmt.Errorf("setsockopt TCP_FASTOPEN_KEY: %w", err)
					}
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	lc.SetMultipathTCP(false)
	var ln net.Listener
	err := opts.Run.run(func() error {
		var err error
		ln, err = lc.Listen(context.Background(), network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tfo server %s: listen: %w", address, err)
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("tfo server %s: listen: unexpected listener type %T", address, ln)
	}
	if key != nil {
		if err := ensureKey(tl, key); err != nil {
			tl.Close()
			return nil, fmt.Errorf("tfo server %s: %w", address, err)
		}
	}
	s := &Server{
		ln:    tl,
		addr:  unmapAddrPort(tl.Addr()),
		reply: bytes.Clone(opts.Reply),
		conns: make(map[*net.TCPConn]struct{}),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// ensureKey checks that the listener holds key, setting it again after
// listen() if it does not.
func ensureKey(tl *net.TCPListener, key []byte) error {
	rc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var kerr error
	err = rc.Control(func(fd uintptr) {
		var buf [32]byte
		got, err := getsockoptBytes(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_KEY, buf[:])
		if err == nil && bytes.Equal(got, key) {
			return
		}
		if err := unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN_KEY, string(key)); err != nil {
			kerr = fmt.Errorf("setsockopt TCP_FASTOPEN_KEY after listen: %w", err)
			return
		}
		got, err = getsockoptBytes(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_KEY, buf[:])
		if err != nil {
			kerr = fmt.Errorf("getsockopt TCP_FASTOPEN_KEY: %w", err)
		} else if !bytes.Equal(got, key) {
			kerr = fmt.Errorf("listener reports TCP_FASTOPEN_KEY %x, want %x", got, key)
		}
	})
	if err != nil {
		return err
	}
	return kerr
}

// Addr returns the address the server listens on.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Accepted returns a snapshot of the connections served so far, in the
// order their requests were read. A connection is recorded before its
// reply is written, so a client that has read any of the reply will find
// its entry.
func (s *Server) Accepted() []Accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Accepted(nil), s.accepted...)
}

// Close stops accepting, closes open connections and waits (at most a few
// seconds) for the server's goroutines to finish.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*net.TCPConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()

		var errs []error
		if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
		for _, c := range conns {
			c.Close()
		}
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		t := time.NewTimer(closeWait)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			errs = append(errs, fmt.Errorf("connection goroutines still running after %v", closeWait))
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("tfo server %s: close: %w", s.addr, err)
		}
	})
	return s.closeErr
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptTCP()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: back off, retry
			continue
		}
		at := time.Now()
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(c, at)
	}
}

func (s *Server) serve(c *net.TCPConn, at time.Time) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	a := Accepted{Remote: unmapAddrPort(c.RemoteAddr()), Time: at}
	// syn_data_acked is set when the TFO child is created, so tcp_info
	// right after accept already tells whether the SYN's data was taken.
	if rc, err := c.SyscallConn(); err == nil {
		var tiErr error
		if err := rc.Control(func(fd uintptr) {
			var ti tcpInfo
			ti, tiErr = readTCPInfo(fd)
			a.SynData = ti.SynData()
			a.Options = ti.Options
		}); err != nil {
			tiErr = err
		}
		if tiErr != nil {
			a.Err = fmt.Errorf("tcp_info: %w", tiErr)
		}
	}
	_ = c.SetDeadline(time.Now().Add(serverConnTimeout))
	line, err := readLine(c, maxRequestLine)
	a.Request = line
	if err != nil {
		a.Err = errors.Join(a.Err, fmt.Errorf("read request: %w", err))
		s.record(a)
		return
	}
	reply := s.reply
	if reply == nil {
		reply = line
	}
	// Recorded before the reply goes out: a client that stops at the
	// reply's length (curl with Content-Length) rather than at EOF, and the
	// lab that then reads Accepted, must find the entry.
	i := s.record(a)
	if _, err := c.Write(reply); err != nil {
		s.mu.Lock()
		s.accepted[i].Err = errors.Join(s.accepted[i].Err, fmt.Errorf("write reply: %w", err))
		s.mu.Unlock()
	}
}

// record appends a and returns its index.
func (s *Server) record(a Accepted) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted = append(s.accepted, a)
	return len(s.accepted) - 1
}

// readLine reads up to and including the first '\n', at most max bytes.
func readLine(c net.Conn, max int) ([]byte, error) {
	var line []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			line = append(line, buf[:i+1]...)
			if len(line) > max {
				return line[:max], fmt.Errorf("line longer than %d bytes", max)
			}
			return line, nil
		}
		line = append(line, buf[:n]...)
		if len(line) > max {
			return line[:max], fmt.Errorf("line longer than %d bytes", max)
		}
		if err != nil {
			return line, fmt.Errorf("after %d bytes without newline: %w", len(line), err)
		}
	}
}

func unmapAddrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
