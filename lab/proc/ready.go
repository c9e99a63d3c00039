package proc

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"time"
)

// Readiness says when Start may return: the process serves, has printed a
// line, or (for a one-shot client) has finished. A nil Readiness means
// ready as soon as the process has been started. The set is closed (the
// waits use the process's internals); When takes any custom check.
type Readiness interface {
	// wait returns nil once p is ready, or an error: ErrEnded if p ended
	// first, errOutputClosed, ctx's error, or a failed check.
	wait(ctx context.Context, p *Process) error
	String() string
}

// ErrEnded is in Start's error (errors.Is) when the process ended before
// it was ready.
var ErrEnded = errors.New("ended before it was ready")

// ListeningOn is ready once a TCP socket in the LISTEN state that accepts
// connections to addr appears in the process's network namespace: a
// listener on addr itself, or on the wildcard of its family (0.0.0.0:P
// covers IPv4, [::]:P covers both). It asks sock_diag for the listeners
// (TCPSockets) from a thread inside the namespace; the socket need not
// belong to the process itself.
func ListeningOn(addr netip.AddrPort) Readiness { return listeningOn{addr} }

type listeningOn struct{ addr netip.AddrPort }

func (l listeningOn) String() string { return "listening on " + l.addr.String() }

func (l listeningOn) wait(ctx context.Context, p *Process) error {
	return p.inNamespace(func() error {
		return poll(ctx, p.ended, func() (bool, error) {
			socks, err := TCPSockets(StateMask(StateListen))
			if err != nil {
				return false, err
			}
			return Listening(socks, l.addr), nil
		})
	})
}

// poll calls check with a backoff from 50 µs doubling to 5 ms until it
// says yes, fails, ended is closed or ctx ends. A listener usually appears
// within a millisecond or two of the start, so a fixed sleep would either
// waste time or be too short under load.
func poll(ctx context.Context, ended <-chan struct{}, check func() (bool, error)) error {
	const first, most = 50 * time.Microsecond, 5 * time.Millisecond
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for d := first; ; d = min(2*d, most) {
		select {
		case <-ended:
			return ErrEnded
		default:
		}
		ok, err := check()
		if err != nil || ok {
			return err
		}
		t.Reset(d)
		select {
		case <-t.C:
		case <-ended:
			return ErrEnded
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// FirstLine is ready once a line of the process's combined stdout and
// stderr matches re (lines printed before the check began count). Programs
// that buffer a pipe's output (Python without -u) may print late.
func FirstLine(re *regexp.Regexp) Readiness { return firstLine{re} }

type firstLine struct{ re *regexp.Regexp }

func (f firstLine) String() string { return fmt.Sprintf("a line matching %q", f.re) }

func (f firstLine) wait(ctx context.Context, p *Process) error {
	_, err := p.out.waitLine(ctx, f.re)
	return err // errOutputClosed: Start works out whether the process ended
}

// Exited is ready when the process has ended, whatever its status: for
// one-shot clients (curl, a Python probe), whose status and output the
// caller reads with Wait and Output. Start fails only if ctx ends first.
// Stop is still needed, to remove the temp dir.
func Exited() Readiness { return exited{} }

type exited struct{}

func (exited) String() string { return "exit" }

func (exited) wait(ctx context.Context, p *Process) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// When is ready once check returns nil; check is retried with the same
// backoff as ListeningOn while it returns an error, and its last error is
// reported if ctx ends first. check runs in the caller's namespace, not
// the process's: to connect from inside the lab, call the namespace
// runner in it.
func When(what string, check func(ctx context.Context) error) Readiness {
	return when{what, check}
}

type when struct {
	what  string
	check func(context.Context) error
}

func (w when) String() string { return w.what }

func (w when) wait(ctx context.Context, p *Process) error {
	var last error
	err := poll(ctx, p.ended, func() (bool, error) {
		last = w.check(ctx)
		return last == nil, nil
	})
	if err != nil && last != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (last check: %v)", err, last)
	}
	return err
}
