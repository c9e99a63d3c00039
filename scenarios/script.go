package scenarios

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/topology"
)

// Extra servers a Script may dial, beside the service on ServicePort (the
// port the middlebox guards). Neither is behind the middlebox.
const (
	// SilentPort accepts, reads the request (TFO data included) and closes
	// without a byte of reply. A TFO connection to it shows whether active
	// TFO is paused without re-arming the blackhole backoff, which needs
	// data received (tcp_fastopen_active_disable_ofo_check).
	SilentPort = 7001
	// EchoPort echoes like the service, outside the middlebox: a successful
	// TFO exchange with data, the one that re-arms the backoff.
	EchoPort = 7002
)

// Script drives the client through a timeline that a flat Workload cannot
// express: waits on counters, sysctl writes between connections, probes.
// Every connection it makes through Env is recorded in the Observation.
type Script func(ctx context.Context, env *Env) error

// Env is what a Script works with.
type Env struct {
	Topo   *topology.Topology
	Obs    *lab.Observation
	mode   tfo.Mode
	server netip.Addr
	// install puts the middlebox in place when MiddleboxSpec.After > 0.
	install func() error
	mu      sync.Mutex // guards Obs.Conns and Obs.Marks: probes overlap
	// skipRearm leaves out BlackholeRearmBySuccess's re-arming exchange
	// (self-check only).
	skipRearm bool
}

func (e *Env) record(r tfo.Result) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Obs.Conns = append(e.Obs.Conns, r)
}

// InstallMiddlebox puts a deferred middlebox (MiddleboxSpec.After > 0) in
// place now; once only.
func (e *Env) InstallMiddlebox() error {
	if e.install == nil {
		return fmt.Errorf("no deferred middlebox to install (MiddleboxSpec.After is 0, or it was installed already)")
	}
	err := e.install()
	e.install = nil
	e.Mark("middlebox installed")
	return err
}

// Client is the client's namespace.
func (e *Env) Client() *lab.Namespace { return e.Topo.Namespace(topology.Client) }

// Dial makes one connection to port on the server, sending the default
// payload in the workload's mode, bounded by timeout, and records it.
func (e *Env) Dial(ctx context.Context, label string, port uint16, timeout time.Duration) tfo.Result {
	return e.DialWith(ctx, tfo.DialOptions{Mode: e.mode, Label: label}, port, timeout)
}

// DialWith is Dial with explicit options (mode, abortive close).
func (e *Env) DialWith(ctx context.Context, opts tfo.DialOptions, port uint16, timeout time.Duration) tfo.Result {
	opts.Run = e.Client().Runner()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := tfo.Request(cctx, opts, netip.AddrPortFrom(e.server, port), []byte(DefaultPayload))
	e.record(r)
	return r
}

// DialUntil dials like Dial but gives up as soon as until returns true
// (polled every poll) or timeout passes, whichever comes first. It returns
// the result and the moment until first held (zero if it never did).
func (e *Env) DialUntil(ctx context.Context, label string, port uint16, timeout, poll time.Duration, until func() (bool, error)) (tfo.Result, time.Time, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan tfo.Result, 1)
	go func() {
		done <- tfo.Request(cctx, tfo.DialOptions{Mode: e.mode, Label: label, Run: e.Client().Runner()},
			netip.AddrPortFrom(e.server, port), []byte(DefaultPayload))
	}()
	var (
		held    time.Time
		pollErr error
	)
	t := time.NewTicker(poll)
	defer t.Stop()
wait:
	for {
		select {
		case r := <-done:
			e.record(r)
			return r, held, pollErr
		case <-t.C:
			if !held.IsZero() || pollErr != nil {
				continue
			}
			ok, err := until()
			if err != nil {
				pollErr = err
				cancel()
				continue wait
			}
			if ok {
				held = time.Now()
				cancel()
			}
		}
	}
}

// ClientCounter reads one of the client namespace's counters now.
func (e *Env) ClientCounter(name string) (int64, error) {
	c, err := e.Client().Counters()
	if err != nil {
		return 0, err
	}
	v, ok := c.Get(name)
	if !ok {
		return 0, fmt.Errorf("counter %s absent in the client namespace", name)
	}
	return v, nil
}

// Mark records a named moment of the timeline, now.
func (e *Env) Mark(name string) { e.MarkAt(name, time.Now()) }

// MarkAt records a named moment that happened at t.
func (e *Env) MarkAt(name string, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Obs.Marks = append(e.Obs.Marks, lab.Mark{Name: name, At: t, Conns: len(e.Obs.Conns)})
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
