package delay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/proc"
)

// A queue's reader runs best as a process of its own: in a program that
// runs a dozen labs at once (the report), or beside CPU-hungry peers
// (tshark, scapy), the Go runtime and the kernel's fair scheduler may
// leave a woken goroutine waiting tens of milliseconds, even 150 ms, both
// for the packet's arrival and for its release, and the delay is only as
// good as the later of the two. A process of its own, started under
// chrt(1) at a real-time priority, wakes on time: all its threads inherit
// the priority, and they sleep almost all the time.
//
// The process is this very binary: the package's init function runs the
// reader instead of the program when childEnv is set (the re-exec pattern),
// so it works from tfolab and from any test binary that links this
// package, without a helper binary to install.

// childEnv carries "queue,delay-ns,family" to the child.
const childEnv = "TFOLAB_DELAY_READER"

// Chrt is the program that starts the child at a real-time priority
// (util-linux, on every Debian system).
const Chrt = "/usr/bin/chrt"

func init() {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(childMain(spec))
	}
}

var readyLine = regexp.MustCompile(`^delay: ready`)

// childMain is the reader process: bind the queue in the namespace it was
// started in, say it is ready, print its stats on SIGUSR1, and on SIGTERM
// release what it holds, print its stats and exit.
func childMain(spec string) int {
	opts, err := parseSpec(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delay:", err)
		return 2
	}
	opts.Run = func(f func() error) error { return f() } // started inside the namespace
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	q, err := Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delay:", err)
		return 1
	}
	fmt.Println("delay: ready")
	n := 0
	for s := range sig {
		n++
		b, _ := json.Marshal(q.Stats())
		if s == syscall.SIGUSR1 {
			fmt.Printf("delay: stats %d %s\n", n, b)
			continue
		}
		err := q.Close()
		b, _ = json.Marshal(q.Stats())
		fmt.Printf("delay: stats %d %s\n", n, b)
		if err != nil {
			fmt.Fprintln(os.Stderr, "delay:", err)
			return 1
		}
		return 0
	}
	return 0
}

func specOf(o Options) string {
	return fmt.Sprintf("%d,%d,%d", o.Queue, o.Delay.Nanoseconds(), int(o.Family))
}

func parseSpec(s string) (Options, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return Options{}, fmt.Errorf("%s=%q: want queue,delay-ns,family", childEnv, s)
	}
	q, err1 := strconv.ParseUint(parts[0], 10, 16)
	d, err2 := strconv.ParseInt(parts[1], 10, 64)
	f, err3 := strconv.Atoi(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return Options{}, fmt.Errorf("%s=%q: %w", childEnv, s, err)
	}
	return Options{Queue: uint16(q), Delay: time.Duration(d), Family: lab.Family(f)}, nil
}

// Reader is a queue's reader running as a process of its own.
type Reader struct {
	p        *proc.Process
	opts     Options
	RealTime bool // started under chrt

	mu   sync.Mutex
	last Stats
}

// Spawn starts the reader for opts as a process inside the namespace
// opts.Run enters, at a real-time priority if the system allows it (it
// falls back to an ordinary one), and returns once its queue is bound.
// Stop ends it; register Stop for teardown at once.
func Spawn(ctx context.Context, opts Options) (*Reader, error) {
	if opts.Run == nil {
		return nil, errors.New("delay: no namespace runner: the queue must be bound inside the namespace its rule lives in")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("delay: find this program to run the reader: %w", err)
	}
	env := []string{childEnv + "=" + specOf(opts), "PATH=" + proc.DefaultPATH, "GOMAXPROCS=2"}
	spec := proc.Spec{Name: fmt.Sprintf("delay-%d", opts.Queue), Path: Chrt,
		Args: []string{"--fifo", strconv.Itoa(realtimePriority), exe}, Env: env, Ready: proc.FirstLine(readyLine)}
	r := &Reader{opts: opts, RealTime: true}
	r.p, err = proc.Start(ctx, opts.Run, spec)
	if err != nil {
		// No chrt, or no right to a real-time policy: the same reader,
		// at an ordinary priority.
		spec.Path, spec.Args = exe, nil
		r.RealTime = false
		var plainErr error
		if r.p, plainErr = proc.Start(ctx, opts.Run, spec); plainErr != nil {
			return nil, fmt.Errorf("delay: start the reader: %w (under %s: %v)", plainErr, Chrt, err)
		}
	}
	return r, nil
}

var statsLine = regexp.MustCompile(`^delay: stats (\d+) (\{.*\})$`)

// Stats asks the reader for its stats (SIGUSR1) and waits for the answer.
func (r *Reader) Stats(ctx context.Context) (Stats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	before := r.lines()
	if err := syscall.Kill(r.p.Pid(), syscall.SIGUSR1); err != nil {
		return r.last, fmt.Errorf("delay: ask reader %d for stats: %w", r.p.Pid(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for {
		if st, n, ok := r.latest(); ok && n > before {
			r.last = st
			return st, nil
		}
		select {
		case <-ctx.Done():
			return r.last, fmt.Errorf("delay: reader %d did not report its stats: %w", r.p.Pid(), ctx.Err())
		case <-r.p.Done():
			return r.last, fmt.Errorf("delay: reader %d ended", r.p.Pid())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// lines is the sequence number of the latest stats line so far.
func (r *Reader) lines() int {
	_, n, _ := r.latest()
	return n
}

// latest parses the last stats line of the reader's output.
func (r *Reader) latest() (Stats, int, bool) {
	out := strings.Split(strings.TrimSpace(string(r.p.Output())), "\n")
	for i := len(out) - 1; i >= 0; i-- {
		m := statsLine.FindStringSubmatch(out[i])
		if m == nil {
			continue
		}
		var st Stats
		n, _ := strconv.Atoi(m[1])
		if json.Unmarshal([]byte(m[2]), &st) != nil {
			continue
		}
		return st, n, true
	}
	return Stats{}, 0, false
}

// Stop ends the reader (it releases what it holds first) and returns its
// final stats. Traffic then passes undelayed (--queue-bypass).
func (r *Reader) Stop() (Stats, error) {
	err := r.p.Stop()
	st, _, _ := r.latest()
	if st.Packets == 0 {
		st = r.last
	}
	return st, err
}

// Delay is the hold time.
func (r *Reader) Delay() time.Duration { return r.opts.Delay }
