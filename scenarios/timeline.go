package scenarios

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/observation"
)

// Timeline drives a scenario's clients. Every connection it makes through
// Env is recorded in the observation; the moments it names install the
// middleboxes waiting for them.
type Timeline func(ctx context.Context, env *Env) error

// Sequential is the default timeline: each client makes its Connections in
// order, one at a time, and before connection n+1 (counted over all
// clients) comes the moment AfterConnections(n).
func Sequential(ctx context.Context, env *Env) error {
	n := 0
	for _, c := range env.scen.Clients {
		target, svc, err := env.target(c.Service, 0)
		if err != nil {
			return err
		}
		for range c.Connections {
			if n > 0 {
				if err := env.Moment(AfterConnections(n)); err != nil {
					return err
				}
			}
			conns := c.Kind.Connect(ctx, env.site, c.node(), ConnectOptions{Target: target, Payload: c.payload(), Timeout: c.connTimeout()})
			env.recordRun(c, svc, "", 0, conns)
			n++
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return nil
}

// Env is what a timeline works with.
type Env struct {
	Obs  *observation.Observation
	site Site
	scen Scenario
	// services are the running services' addresses by name.
	services map[string]netip.AddrPort
	// install puts the middleboxes waiting for a moment in place.
	install func(moment string) error
	mu      sync.Mutex // guards Obs.Conns and Obs.Marks: probes overlap
}

// Moment marks a named moment of the timeline and installs the
// middleboxes that wait for it.
func (e *Env) Moment(name string) error {
	if err := e.install(name); err != nil {
		return err
	}
	e.Mark(name, 0)
	return nil
}

// Client is the first client's namespace, where scripted dials start.
func (e *Env) Client() *lab.Namespace { return e.site.Topo.Namespace(e.scen.Clients[0].node()) }

// Dial is one connection of a scripted timeline.
type Dial struct {
	// Label and Round are its role in the timeline.
	Label string
	Round int
	// Service it goes to ("" is the main one); Port, if set, is another
	// port on that service's address (a port nothing serves).
	Service string
	Port    uint16
	// Timeout bounds it; it is then reported as stalled.
	Timeout time.Duration
	// Plain makes an ordinary connect() without TFO; Abort closes with an
	// RST. Otherwise the first client's mode.
	Plain, Abort bool
	// UserTimeout sets TCP_USER_TIMEOUT on the socket (0: unset).
	UserTimeout time.Duration
	// Payload replaces the client's request.
	Payload []byte
	// Watch makes DialUntil only note when its condition first holds and
	// let the connection run to its own end (a give-up that detects a
	// blackhole in the same timer callback must still end in ETIMEDOUT).
	Watch bool
}

// Dial makes one connection from the first client, sending the default
// payload, and records it.
func (e *Env) Dial(ctx context.Context, d Dial) observation.Conn { return e.DialFrom(ctx, "", d) }

// DialFrom dials like Dial from the client named client ("" is the first).
func (e *Env) DialFrom(ctx context.Context, client string, d Dial) observation.Conn {
	return e.dial(ctx, client, d)
}

// dial runs the client once and records every connection it made; it
// returns the first.
func (e *Env) dial(ctx context.Context, client string, d Dial) observation.Conn {
	c, err := e.client(client)
	if err != nil {
		return e.recordRun(e.scen.Clients[0], "", d.Label, d.Round, []observation.Conn{{Label: d.Label, Error: err.Error()}})
	}
	target, svc, err := e.target(d.Service, d.Port)
	if err != nil {
		return e.recordRun(c, svc, d.Label, d.Round, []observation.Conn{{Label: d.Label, Error: err.Error()}})
	}
	payload := c.payload()
	if len(d.Payload) > 0 {
		payload = d.Payload
	}
	conns := c.Kind.Connect(ctx, e.site, c.node(), ConnectOptions{
		Target: target, Payload: payload, Label: d.Label,
		Plain: d.Plain, Abort: d.Abort, UserTimeout: d.UserTimeout, Timeout: d.Timeout,
	})
	return e.recordRun(c, svc, d.Label, d.Round, conns)
}

// client is the scenario's client named name ("" is the first).
func (e *Env) client(name string) (Client, error) {
	if name == "" {
		return e.scen.Clients[0], nil
	}
	for _, c := range e.scen.Clients {
		if c.name() == name {
			return c, nil
		}
	}
	return Client{}, fmt.Errorf("no client %q in scenario %s", name, e.scen.Name)
}

// DialUntil dials like Dial but gives up as soon as until returns true
// (polled every poll; with d.Watch it only notes the moment) or the
// timeout passes, whichever comes first. It returns the connection and the
// moment until first held (zero if never).
func (e *Env) DialUntil(ctx context.Context, d Dial, poll time.Duration, until func() (bool, error)) (observation.Conn, time.Time, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan observation.Conn, 1)
	go func() { done <- e.dial(cctx, "", d) }()
	var (
		held    time.Time
		pollErr error
	)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case c := <-done:
			// The condition may have come true with the connection's own
			// end (a give-up detects a blackhole in the same timer
			// callback): look once more, so the moment is not missed.
			if held.IsZero() && pollErr == nil {
				ok, err := until()
				if ok {
					held = time.Now()
				}
				pollErr = err
			}
			return c, held, pollErr
		case <-t.C:
			if !held.IsZero() || pollErr != nil {
				continue
			}
			ok, err := until()
			if err != nil {
				pollErr = err
				cancel()
				continue
			}
			if ok {
				held = time.Now()
				if !d.Watch {
					cancel()
				}
			}
		}
	}
}

// ClientCounter reads one of the first client node's counters now, cheaply
// enough to poll.
func (e *Env) ClientCounter(name string) (int64, error) { return e.Client().Counter(name) }

// Mark records a named moment of the timeline, now.
func (e *Env) Mark(name string, round int) { e.MarkAt(name, round, time.Now()) }

// MarkAt records a named moment that happened at t.
func (e *Env) MarkAt(name string, round int, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Obs.Marks = append(e.Obs.Marks, observation.Mark{Name: name, Round: round, At: t.Round(0), Conns: len(e.Obs.Conns)})
}

// target resolves a service name (and an optional other port on its
// address) to an address.
func (e *Env) target(service string, port uint16) (netip.AddrPort, string, error) {
	if service == "" {
		service = e.scen.Services[0].name()
	}
	addr, ok := e.services[service]
	if !ok {
		return netip.AddrPort{}, service, fmt.Errorf("no service %q in scenario %s", service, e.scen.Name)
	}
	if port != 0 {
		return netip.AddrPortFrom(addr.Addr(), port), "", nil
	}
	return addr, service, nil
}

// recordRun records the connections one run of client c made, in its role
// in the timeline, and returns the first (one with an error when the run
// made none).
func (e *Env) recordRun(c Client, service, label string, round int, conns []observation.Conn) observation.Conn {
	if len(conns) == 0 {
		conns = []observation.Conn{{Label: label, Error: fmt.Sprintf("client kind %s made no connection", c.Kind.Kind())}}
	}
	for _, conn := range conns {
		conn.Round = round
		e.record(c, service, conn)
	}
	conns[0].Round = round
	return conns[0]
}

// record completes a connection's identity and appends it.
func (e *Env) record(c Client, service string, conn observation.Conn) {
	conn.Client, conn.Node, conn.Service = c.name(), c.node(), service
	conn.ClientLink = e.clientLink(c.node())
	conn.ServerLink = e.serverLink(service)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Obs.Conns = append(e.Obs.Conns, conn)
}

// clientLink is the capture on the client node's first interface.
func (e *Env) clientLink(node string) string {
	if ifs := e.site.Topo.Interfaces(node); len(ifs) > 0 {
		return observation.LinkKey(node, ifs[0])
	}
	return ""
}

// serverLink is the capture on the serving node's first interface; for a
// connection to no service, the main service's node.
func (e *Env) serverLink(service string) string {
	node := e.scen.Services[0].node()
	for _, s := range e.scen.Services {
		if s.name() == service {
			node = s.node()
		}
	}
	return e.clientLink(node)
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TimelineCall is how a timeline was built: the name of a constructor in
// Timelines and its arguments (a variadic parameter's as one slice), as
// package labfile writes it (`timeline: {call: {Name: [arguments]}}`).
type TimelineCall struct {
	Fn   string
	Args []any
}

// Scripted is a timeline and the call that built it: what every
// constructor in Timelines returns.
type Scripted struct {
	Run  Timeline
	Call TimelineCall
}

// scripted records that fn(args...) built run.
func scripted(run Timeline, fn string, args ...any) Scripted {
	return Scripted{Run: run, Call: TimelineCall{Fn: fn, Args: args}}
}

// Script makes sc the scenario's timeline, with the call that built it.
func (s *Scenario) Script(sc Scripted) {
	c := sc.Call
	s.Timeline, s.TimelineCall = sc.Run, &c
}

// Timelines are the constructors of the catalogue's scripted timelines,
// by the name each records (Scripted.Call.Fn): what a scenario file's
// `timeline: {call: ...}` may call. A new one is one line here;
// TestTimelinesAreRegistered names a catalogue timeline that is missing.
var Timelines = map[string]any{
	"AsConfiguredTimeline":        AsConfiguredTimeline,
	"BackoffTimeline":             BackoffTimeline,
	"ChildLifecycleTimeline":      ChildLifecycleTimeline,
	"ClientAPITimeline":           ClientAPITimeline,
	"ClientDataDroppedTimeline":   ClientDataDroppedTimeline,
	"CookieRequestToDeadTimeline": CookieRequestToDeadTimeline,
	"DeadPlainTimeline":           DeadPlainTimeline,
	"DeadTFOTimeline":             DeadTFOTimeline,
	"DetectThenPlainTimeline":     DetectThenPlainTimeline,
	"GiveUpTimeline":              GiveUpTimeline,
	"InvalidCookieTimeline":       InvalidCookieTimeline,
	"KeyTimeline":                 KeyTimeline,
	"OFOFINTimeline":              OFOFINTimeline,
	"OverflowTimeline":            OverflowTimeline,
	"PartialAckTimeline":          PartialAckTimeline,
	"PauseExchangePause":          PauseExchangePause,
	"PeerTimeline":                PeerTimeline,
	"PoolSequential":              PoolSequential,
	"ProbeTimeline":               ProbeTimeline,
	"PureSynDataTimeline":         PureSynDataTimeline,
	"RTTTimeline":                 RTTTimeline,
	"RearmBySysctlTimeline":       RearmBySysctlTimeline,
	"ServerDataRearmsTimeline":    ServerDataRearmsTimeline,
	"SimultaneousTimeline":        SimultaneousTimeline,
	"StallThenNextTimeline":       StallThenNextTimeline,
	"StallTwiceTimeline":          StallTwiceTimeline,
	"ThenPlainAfterRTO":           ThenPlainAfterRTO,
}
