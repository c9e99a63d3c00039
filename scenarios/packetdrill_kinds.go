package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/tfolab/tfolab/lab/rawpeer"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/observation"
)

// The machinery of the packetdrill-parity scenarios (docs/packetdrill.md):
// a listener the timeline drives call by call (accept when it says, read,
// write, close with data unread, close the listener with children queued),
// a scripted peer that acks only part of a SYN's data, and connections
// whose every socket call, at either end, is recorded with its result in
// observation.Conn.Calls.

// ScriptedListener is the kernel's listener without an application: it
// listens (TCP_FASTOPEN queue, TCP_MAXSEG) and accepts nothing by itself.
// The scenario's timeline takes it from its slot and makes the
// application's calls. Without a timeline that does, connections queue
// unaccepted (the kernel still completes their handshakes and takes their
// data).
type ScriptedListener struct {
	Queue  int
	MaxSeg int
	slot   *listenerSlot
}

// PartialAckPeer is lab/rawpeer acking only the first AckBytes of a SYN's
// data (0: all of it), handing out Cookie, sending no data of its own: a
// SYN-ACK no Linux server sends.
type PartialAckPeer struct {
	AckBytes int
	Cookie   []byte
	// AnyCookieLength lets Cookie be of a length RFC 7413 forbids.
	AnyCookieLength bool
}

func (PartialAckPeer) Kind() string { return "rawpeer-partial-ack" }

func (p PartialAckPeer) Validate() error {
	if p.AckBytes < 0 {
		return fmt.Errorf("partial-ack peer: %d bytes", p.AckBytes)
	}
	if len(p.Cookie) == 0 {
		return errors.New("partial-ack peer without a cookie")
	}
	return nil
}

func (p PartialAckPeer) Start(ctx context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	return startRawPeer(ctx, site, node, rawpeer.Options{
		Addr: addr, Cookie: p.Cookie, AnyCookieLength: p.AnyCookieLength, AckSynData: true, AckSynDataBytes: p.AckBytes,
	})
}

// listenerSlot is where a started ScriptedListener leaves its socket for
// the timeline, and where the timeline leaves what it accepted.
type listenerSlot struct {
	mu       sync.Mutex
	ln       *tfo.Sock
	addr     netip.AddrPort
	accepted []observation.Accepted
}

func newScriptedListener(queue, maxseg int) ScriptedListener {
	return ScriptedListener{Queue: queue, MaxSeg: maxseg, slot: &listenerSlot{}}
}

// NewScriptedListener is a ScriptedListener with its TCP_FASTOPEN queue
// (0: none) and TCP_MAXSEG (0: none), ready for a timeline to take from
// its service by name.
func NewScriptedListener(queue, maxseg int) ScriptedListener {
	return newScriptedListener(queue, maxseg)
}

// scriptedSlot is the slot of the scripted listener that serves service
// ("" is the main one): where its timeline takes it from.
func (e *Env) scriptedSlot(service string) (*listenerSlot, error) {
	for i, svc := range e.scen.Services {
		if (service == "" && i == 0) || svc.name() == service {
			l, ok := svc.Kind.(ScriptedListener)
			if !ok || l.slot == nil {
				return nil, fmt.Errorf("service %s is a %s, not a scripted listener", svc.name(), kindName(svc.Kind))
			}
			return l.slot, nil
		}
	}
	return nil, fmt.Errorf("no service %q for the timeline's scripted listener", service)
}

func kindName(k ServiceKind) string {
	if k == nil {
		return "nil"
	}
	return k.Kind()
}

func (ScriptedListener) Kind() string { return "scripted-listener" }

func (l ScriptedListener) Validate() error {
	if l.slot == nil {
		return errors.New("scripted listener built without newScriptedListener")
	}
	if l.MaxSeg < 0 {
		return fmt.Errorf("scripted listener: TCP_MAXSEG %d", l.MaxSeg)
	}
	return validQueue("scripted listener", l.Queue)
}

func (l ScriptedListener) Start(_ context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	ln, err := tfo.ListenSock(site.Topo.Namespace(node).Runner(), addr, l.Queue, l.MaxSeg)
	if err != nil {
		return nil, err
	}
	l.slot.mu.Lock()
	l.slot.ln, l.slot.addr, l.slot.accepted = ln, addr, nil
	l.slot.mu.Unlock()
	site.Lab.Defer("scripted listener "+addr.String()+" on "+node, func() error {
		l.slot.mu.Lock()
		defer l.slot.mu.Unlock()
		if r := ln.Close("close"); r.Errno != 0 {
			return fmt.Errorf("close scripted listener %s: %s", addr, r.ErrnoName())
		}
		return nil
	})
	return l.slot, nil
}

func (s *listenerSlot) Accepted() []observation.Accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]observation.Accepted(nil), s.accepted...)
}

func (s *listenerSlot) listener() (*tfo.Sock, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil, errors.New("scripted listener not started")
	}
	return s.ln, nil
}

// tcpiOptSynData and tcpiOptTFOChild are tcpi_options bits
// (include/uapi/linux/tcp.h): the SYN's data was acked / accepted, and a
// passive TFO child (set since 6.x).
const (
	tcpiOptSynData  = 0x20
	tcpiOptTFOChild = 0x80
)

// apiConn is one connection of a scripted timeline: the client's socket,
// the server's accepted child, and every call made on them.
type apiConn struct {
	env     *Env
	label   string
	service string
	remote  netip.AddrPort
	start   time.Time
	cli     *tfo.Sock
	srv     *tfo.Sock
	slot    *listenerSlot
	local   netip.AddrPort
	conn    observation.Conn
	err     error
}

// newAPIConn opens the client's socket for a connection labelled label to
// service on port (0: the service's own), blocking if asked.
func (e *Env) newAPIConn(label, service string, port uint16, slot *listenerSlot, blocking bool) *apiConn {
	c := &apiConn{env: e, label: label, slot: slot}
	target, svc, err := e.target(service, port)
	c.remote, c.service = target, svc
	if err != nil {
		c.err = err
		return c
	}
	c.cli, c.err = tfo.NewSock(e.Client().Runner(), target.Addr(), blocking)
	if c.err == nil && blocking {
		c.err = c.cli.SetTimeouts(2 * time.Second)
	}
	c.start = time.Now()
	return c
}

func (c *apiConn) add(side string, r tfo.CallResult) tfo.CallResult {
	c.conn.Calls = append(c.conn.Calls, observation.Call{Side: side, Op: r.Op, Ret: r.Ret, Errno: r.ErrnoName(), Detail: r.Detail, At: time.Since(c.start)})
	if side == "client" && !c.local.IsValid() && c.cli != nil {
		if l := c.cli.Local(); l.IsValid() && l.Port() != 0 {
			c.local = l
		}
	}
	return r
}

// client makes a call on the client's socket and records it.
func (c *apiConn) client(call func(s *tfo.Sock) tfo.CallResult) tfo.CallResult {
	if c.cli == nil {
		return tfo.CallResult{Ret: -1}
	}
	return c.add("client", call(c.cli))
}

// server makes a call on the accepted child and records it.
func (c *apiConn) server(call func(s *tfo.Sock) tfo.CallResult) tfo.CallResult {
	if c.srv == nil {
		return tfo.CallResult{Ret: -1}
	}
	return c.add("server", call(c.srv))
}

// accept takes the next connection off the listener and records it as
// the service's.
func (c *apiConn) accept() { c.acceptWithin(time.Second) }

// acceptWithin is accept, giving up (EAGAIN) after d.
func (c *apiConn) acceptWithin(d time.Duration) {
	if c.slot == nil || c.cli == nil {
		return
	}
	ln, err := c.slot.listener()
	if err != nil {
		c.err = errors.Join(c.err, err)
		return
	}
	r, child := ln.Accept("accept", d)
	if child != nil {
		r.Ret = 0 // the fd number says nothing
	}
	c.add("server", r)
	if child == nil {
		return
	}
	c.srv = child
	info := c.server(func(s *tfo.Sock) tfo.CallResult { return s.TCPInfo("tcp_info at accept") })
	a := observation.Accepted{Remote: child.Remote(), SynData: info.Ret&tcpiOptSynData != 0, Options: uint8(info.Ret), Time: time.Now().Round(0)}
	c.slot.mu.Lock()
	c.slot.accepted = append(c.slot.accepted, a)
	c.slot.mu.Unlock()
}

// done closes both sockets (unless the script did) and records the
// connection.
func (c *apiConn) done() observation.Conn {
	if c.srv != nil {
		c.srv.Close("close")
	}
	conn := c.conn
	if c.cli != nil {
		if !c.local.IsValid() {
			c.local = c.cli.Local()
		}
		// The kernel's own verdict, as the lab's client reports it, for
		// the report (the script's checks read the recorded calls).
		if info := c.cli.TCPInfo(""); info.Errno == 0 {
			conn.SynData = info.Ret&tcpiOptSynData != 0
		}
		c.cli.Close("close")
	}
	conn.Label, conn.Mode = c.label, "api"
	conn.Local, conn.Remote, conn.Start = c.local, c.remote, c.start.Round(0)
	if c.err != nil {
		conn.Error = c.err.Error()
	}
	cl, _ := c.env.client("")
	c.env.record(cl, c.service, conn)
	return conn
}

// waitFor polls cond every 2 ms until it holds or timeout passes; it
// reports whether it held. A timeline waits for the kernel's own evidence
// (a counter, a socket state) that a packet has arrived, rather than for
// a fixed time that a loaded machine may overrun.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !cond() {
		if sleepCtx(ctx, 2*time.Millisecond) != nil {
			return cond()
		}
	}
	return true
}

// serverCounter reads a counter of the server node now (-1 if it cannot).
func (e *Env) serverCounter(name string) int64 {
	v, err := e.site.Topo.Namespace(e.scen.Services[0].node()).Counter(name)
	if err != nil {
		return -1
	}
	return v
}

// clientState is the client socket's TCP state now, not recorded.
func (c *apiConn) clientState() string {
	if c.cli == nil {
		return ""
	}
	return c.cli.TCPInfo("").Detail
}
