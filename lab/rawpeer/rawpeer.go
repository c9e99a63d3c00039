// Package rawpeer is a scripted TCP responder that puts data in its
// SYN-ACK, as some non-Linux stacks may. A Linux server never does, so to
// see what a Linux TFO client does with such data the peer answers SYNs
// itself, from user space, in the server namespace, the way packet-level
// test benches (gVisor's packetimpact) do. It is a test tool, not a TCP
// stack.
//
// # Behaviour, per client connection (4-tuple and ISN)
//
//   - A SYN to Options.Addr gets a SYN-ACK with a random ISN, ack = client
//     ISN+1 (ISN+1+len with Options.AckSynData), an MSS option (interface MTU minus 40 or 60), window 65535 and
//     no other option (no window scaling, SACK or timestamps), and
//     Options.SynAckData as payload. Unless Options.AckSynData is set,
//     data in the SYN is not acknowledged: the client must send it again. If the SYN carried a cookie request
//     (an empty TFO option) and Options.Cookie is set, the SYN-ACK carries
//     that cookie, in the same form as the request (kind 34, or the
//     experimental 254/0xF989). A cookie in the SYN is recorded, not
//     checked, and not answered. A retransmitted SYN gets the same SYN-ACK.
//   - The client's data is acknowledged in order (out-of-order and
//     duplicate segments get a duplicate ACK). Once it contains '\n' (a
//     request line), or the client sends FIN, the peer sends FIN|ACK; a
//     client FIN gets a final ACK.
//   - If the client's first ACK does not cover the SYN-ACK's payload (it
//     dropped it), the payload is sent again at once, as an ordinary
//     segment at ISN+1. Anything else left unacknowledged (SYN-ACK, payload,
//     FIN) is resent by a timer: 200 ms, doubling, 6 times, then the peer
//     gives the connection up. A RST from the client ends the connection.
//
// # Sockets
//
// The peer receives with an AF_PACKET socket bound to Options.Interface
// (a BPF filter passes TCP to the port; PACKET_IGNORE_OUTGOING hides its own
// frames) and sends complete Ethernet frames on the same socket, addressed
// to the MAC address the client's frame came from, with IP and TCP
// checksums computed by gopacket. Its packets therefore bypass the server
// namespace's IP stack and netfilter. That stack still sees the client's
// segments and, with no listener on the port, answers each with a RST:
// install SuppressKernelRST in the server namespace first.
package rawpeer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"golang.org/x/sys/unix"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/rules"
)

// Options configure a Peer.
type Options struct {
	// Addr is the server address and port to answer on, IPv4 or IPv6.
	Addr netip.AddrPort
	// Run runs f inside the server namespace (lab.Namespace.Runner()); the
	// socket is created there. nil runs f in the current namespace.
	Run func(func() error) error
	// Interface is the interface in that namespace to receive and send on
	// (e.g. "to-router").
	Interface string
	// SynAckData is the payload of every SYN-ACK (at most MSS bytes); it may
	// be empty.
	SynAckData []byte
	// Cookie is the TFO cookie (4 to 16 bytes, an even number) handed out
	// when a SYN carries a cookie request; nil never sends a TFO option.
	Cookie []byte
	// AnyCookieLength lets Cookie be of a length RFC 7413 forbids (a
	// client must ignore it), for the tests of that.
	AnyCookieLength bool
	// AckSynData makes the SYN-ACK acknowledge the SYN's payload (ack =
	// client ISN+1+len), as a TFO server that accepted it would. By default
	// (false) SYN data is never acknowledged and the client must resend it.
	AckSynData bool
	// AckSynDataBytes, with AckSynData, acknowledges only the first that
	// many bytes of the SYN's payload (0: all of it), as a stack that took
	// part of it would: the client must resend the rest.
	AckSynDataBytes int
	// SynAckDataOnlyForTFO puts SynAckData in the SYN-ACK only when the
	// connection's SYN carried a TFO option (a cookie or a request): a
	// plain SYN gets a plain SYN-ACK and the same bytes follow the
	// handshake as an ordinary segment. It models a server that speaks
	// first (a banner) and saves a round trip only for TFO clients. What
	// the first SYN decided holds for the connection: its SYN-ACK, and
	// every retransmission of it, is the same.
	SynAckDataOnlyForTFO bool
}

// Peer is a running responder. Its methods are safe for concurrent use.
type Peer struct {
	opts    Options
	f       *os.File
	rc      syscall.RawConn
	ifindex int

	mu      sync.Mutex
	eng     *engine
	changed chan struct{} // closed and replaced whenever a record changes
	err     error         // first error of the receive loop

	closeOnce sync.Once
	closing   chan struct{}
	done      chan struct{} // closed when the loop has returned
	stopCtx   func() bool   // unregisters the Close on ctx's end (under mu)
}

// Start opens the socket inside opts.Run's namespace and starts answering
// in the background until Close is called or ctx is done.
func Start(ctx context.Context, opts Options) (*Peer, error) {
	addr := netip.AddrPortFrom(opts.Addr.Addr().Unmap(), opts.Addr.Port())
	if !addr.IsValid() || addr.Port() == 0 {
		return nil, fmt.Errorf("rawpeer: invalid address %q (want address:port, port not 0)", opts.Addr)
	}
	if opts.Interface == "" {
		return nil, errors.New("rawpeer: no interface")
	}
	if n := len(opts.Cookie); opts.Cookie != nil && !opts.AnyCookieLength && (n < 4 || n > 16 || n%2 != 0) {
		return nil, fmt.Errorf("rawpeer: cookie of %d bytes, want an even number from 4 to 16", n)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rawpeer: %w", err)
	}
	filter, err := receiveFilter(addr.Port())
	if err != nil {
		return nil, fmt.Errorf("rawpeer: assemble filter: %w", err)
	}
	run := opts.Run
	if run == nil {
		run = func(f func() error) error { return f() }
	}

	var iface *net.Interface
	fd := -1
	err = run(func() error {
		var err error
		if iface, err = net.InterfaceByName(opts.Interface); err != nil {
			return err
		}
		// Protocol 0: the socket receives nothing until bind, so no frame
		// slips in before the filter is attached.
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		prog := make([]unix.SockFilter, len(filter))
		for i, ins := range filter {
			prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
			return fmt.Errorf("attach filter: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
			return fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: iface.Index})
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("rawpeer: on %s: %w", opts.Interface, err)
	}
	if len(iface.HardwareAddr) != 6 {
		unix.Close(fd)
		return nil, fmt.Errorf("rawpeer: %s is not an Ethernet interface (hardware address %q)", opts.Interface, iface.HardwareAddr)
	}
	hdr := 40
	if addr.Addr().Is6() {
		hdr = 60
	}
	mss := iface.MTU - hdr
	if len(opts.SynAckData) > mss {
		unix.Close(fd)
		return nil, fmt.Errorf("rawpeer: %d bytes of SYN-ACK data exceed the MSS %d of %s", len(opts.SynAckData), mss, opts.Interface)
	}

	p := &Peer{
		opts:    opts,
		f:       os.NewFile(uintptr(fd), "rawpeer-"+opts.Interface),
		ifindex: iface.Index,
		eng: &engine{
			addr:           addr,
			mac:            iface.HardwareAddr,
			mss:            uint16(mss),
			synAckData:     append([]byte(nil), opts.SynAckData...),
			cookie:         append([]byte(nil), opts.Cookie...),
			ackSynData:     opts.AckSynData,
			ackSynDataN:    opts.AckSynDataBytes,
			dataOnlyForTFO: opts.SynAckDataOnlyForTFO,
			isn:            rand.Uint32,
		},
		changed: make(chan struct{}),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if p.rc, err = p.f.SyscallConn(); err != nil {
		p.f.Close()
		return nil, fmt.Errorf("rawpeer: %w", err)
	}
	go p.loop()
	stop := context.AfterFunc(ctx, func() { _ = p.Close() })
	p.mu.Lock()
	p.stopCtx = stop
	p.mu.Unlock()
	return p, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Close stops the peer, waits for its goroutine and closes the socket (the
// kernel's packet_release waits for an RCU grace period: a few ms). It
// returns the first error the peer met, if any, and is safe to call more
// than once.
func (p *Peer) Close() error {
	p.closeOnce.Do(func() {
		close(p.closing)
		// Closing the file wakes the loop out of its read at once; the
		// descriptor itself is released when that read has returned.
		_ = p.f.Close()
	})
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopCtx != nil {
		p.stopCtx()
	}
	return p.err
}

// Conns returns what the peer saw so far, one record per connection, in
// the order of their first SYN.
func (p *Peer) Conns() []ConnRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.eng.records()
}

// Wait blocks until cond holds for the current records, and returns them.
// It returns the records and an error when ctx ends first or the peer
// stops.
func (p *Peer) Wait(ctx context.Context, cond func([]ConnRecord) bool) ([]ConnRecord, error) {
	for {
		p.mu.Lock()
		recs, ch, err := p.eng.records(), p.changed, p.err
		p.mu.Unlock()
		if cond(recs) {
			return recs, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return recs, fmt.Errorf("rawpeer: wait: %w", ctx.Err())
		case <-p.done:
			if err == nil {
				err = errors.New("peer stopped")
			}
			return p.Conns(), fmt.Errorf("rawpeer: wait: %w", err)
		}
	}
}

// loop reads frames until Close, answers them and runs the timers.
func (p *Peer) loop() {
	defer close(p.done)
	defer p.f.Close()
	buf := make([]byte, 1<<16)
	failures := 0
	for !p.stopping() {
		p.mu.Lock()
		next := p.eng.nextTimer()
		p.mu.Unlock()
		if err := p.f.SetReadDeadline(next); err != nil {
			if !p.stopping() {
				p.fail(fmt.Errorf("set read deadline: %w", err))
			}
			return
		}
		var n int
		var from unix.Sockaddr
		var rerr error
		err := p.rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_TRUNC)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		now := time.Now()
		if err != nil && p.stopping() {
			return
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			p.mu.Lock()
			out := p.eng.tick(now)
			p.mu.Unlock()
			p.send(out)
			p.notify()
			continue
		case err == unix.EINTR:
			continue
		case errors.Is(err, os.ErrClosed):
			return
		case err != nil:
			if failures++; failures > 100 {
				p.fail(fmt.Errorf("read on %s: %w", p.opts.Interface, err))
				return
			}
			continue
		}
		failures = 0
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if n > len(buf) || n < 14 {
			continue // truncated (no offload super-frames expected) or runt
		}
		pkt, ok, derr := capture.Decode(buf[:n], gopacket.CaptureInfo{Timestamp: now, CaptureLength: n, Length: n})
		if !ok || derr != nil {
			continue
		}
		peerMAC := net.HardwareAddr(pkt.Frame[6:12])
		p.mu.Lock()
		out := p.eng.handle(pkt, peerMAC, now)
		p.mu.Unlock()
		p.send(out)
		p.notify()
	}
}

// send frames and writes segments; a failure is recorded, not fatal,
// unless the peer is closing.
func (p *Peer) send(segs []segment) {
	for _, s := range segs {
		frame, err := s.frame()
		if err != nil {
			p.fail(err)
			continue
		}
		proto := uint16(unix.ETH_P_IP)
		if s.dst.Addr().Unmap().Is6() {
			proto = unix.ETH_P_IPV6
		}
		sa := &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: p.ifindex, Halen: 6}
		copy(sa.Addr[:], s.dstMAC)
		var werr error
		err = p.rc.Write(func(fd uintptr) bool {
			werr = unix.Sendto(int(fd), frame, 0, sa)
			return werr != unix.EAGAIN
		})
		if err == nil {
			err = werr
		}
		if err != nil && p.stopping() {
			return // Close raced a reply or a retransmission: not a failure
		}
		if err != nil {
			p.fail(fmt.Errorf("send %s > %s [%s] on %s: %w", s.src, s.dst, s.flags, p.opts.Interface, err))
		}
	}
}

func (p *Peer) stopping() bool {
	select {
	case <-p.closing:
		return true
	default:
		return false
	}
}

func (p *Peer) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = fmt.Errorf("rawpeer: %w", err)
	}
}

func (p *Peer) notify() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.changed)
	p.changed = make(chan struct{})
}

// SuppressKernelRST returns the iptables rule, for the server namespace's
// OUTPUT chain, that drops the TCP RSTs the kernel sends from port (the
// peer's port, where no socket listens) in answer to the client's segments.
// The same rule serves iptables and ip6tables: pass the family to Apply,
//
//	rules.Apply(l, serverNS, fam, []rules.Rule{rawpeer.SuppressKernelRST(port)})
//
// which removes it again when the lab closes. The peer never sends a RST
// (and its frames do not traverse netfilter anyway), so the rule cannot
// drop them.
func SuppressKernelRST(port uint16) rules.Rule {
	return rules.Rule{
		Table: "filter",
		Chain: "OUTPUT",
		Spec: []string{"-p", "tcp", "--sport", strconv.Itoa(int(port)),
			"--tcp-flags", "RST", "RST", "-j", "DROP"},
	}
}
