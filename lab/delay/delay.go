// Package delay emulates a link's propagation delay without netem (this
// kernel has no sch_netem): an iptables rule sends packets to an NFQUEUE
// queue, and a reader in user space holds each packet's verdict for a fixed
// time before it accepts it.
//
// The rule is the caller's (see Rule); it should carry --queue-bypass, so
// that traffic passes unharmed when no reader is bound (the reader died, or
// was never started). The reader is a netlink socket created inside the
// namespace the rule lives in (Options.Run) and stays bound to it.
//
// Equivalent to (but without the tc qdisc this kernel lacks):
//
//	tc qdisc add dev IF root netem delay 25ms
package delay

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/rules"
	"golang.org/x/sys/unix"
)

// Options configure a Queue.
type Options struct {
	// Queue is the NFQUEUE number the rule sends packets to (per network
	// namespace, so every lab can use the same numbers).
	Queue uint16
	// Delay is how long each packet is held.
	Delay time.Duration
	// Family is the rule's family (iptables or ip6tables).
	Family lab.Family
	// Run runs a function inside the namespace the rule lives in
	// (lab.Namespace.Runner); the queue's netlink socket is created there.
	Run func(func() error) error
	// MaxQueueLen bounds the packets the kernel holds for the reader; 0 is
	// DefaultMaxQueueLen. Beyond it packets pass undelayed (fail-open), so
	// an overload shows as a shorter delay, never as loss.
	MaxQueueLen uint32
}

// DefaultMaxQueueLen holds a second of traffic at 64k packets/s.
const DefaultMaxQueueLen = 65536

// Rule is the iptables rule that sends the TCP packets arriving in the
// namespace to queue q, in mangle PREROUTING: there the packet still has
// its receive timestamp (ip_forward clears it later), so the hold counts
// from the packet's arrival, not from when the reader got to it. An
// accept verdict goes on to the next table, so every FORWARD rule of a
// firewall beside it still sees the packet; only a rule appended after it
// in mangle PREROUTING itself would be skipped. --queue-bypass lets
// packets through when no reader is bound.
func Rule(q uint16) rules.Rule {
	return rules.Rule{Table: "mangle", Chain: "PREROUTING", Spec: []string{
		"-p", "tcp", "-j", "NFQUEUE", "--queue-num", strconv.Itoa(int(q)), "--queue-bypass"}}
}

// Queue is a running reader that delays every packet of its queue.
type Queue struct {
	opts   Options
	nf     *nfqueue.Nfqueue
	cancel context.CancelFunc

	mu      sync.Mutex
	pending []held
	wake    chan struct{}
	stats   Stats
	closed  bool

	quit, done chan struct{}
	// stamps keeps receive timestamps on (see Start).
	stamps int
}

type held struct {
	id  uint32
	due time.Time
}

// Stats describe what a queue did.
type Stats struct {
	// Packets is how many packets were held and accepted.
	Packets uint64
	// Late is how much later than due the verdicts went out: the emulated
	// delay's error (timer wake-up and the verdict's own send).
	LateMin, LateMax, LateSum time.Duration
	// Errors counts failed receives or verdicts; Lost counts messages the
	// socket lost (ENOBUFS): those packets stay queued until Close.
	Errors, Lost uint64
	// RealTime is whether the releasing thread got its real-time priority.
	RealTime bool
}

// realtimePriority is the releasing thread's SCHED_FIFO priority: low
// among real-time threads (1–99), above every ordinary one.
const realtimePriority = 10

// LateMean is the mean lateness of a verdict.
func (s Stats) LateMean() time.Duration {
	if s.Packets == 0 {
		return 0
	}
	return s.LateSum / time.Duration(s.Packets)
}

func (s Stats) String() string {
	rt := ""
	if !s.RealTime {
		rt = " (no real-time priority)"
	}
	return fmt.Sprintf("%d packets held, verdicts late by %v min, %v mean, %v max%s; %d errors, %d lost",
		s.Packets, s.LateMin.Round(time.Microsecond), s.LateMean().Round(time.Microsecond), s.LateMax.Round(time.Microsecond), rt, s.Errors, s.Lost)
}

// Start binds a reader to opts.Queue inside the namespace opts.Run enters
// and starts holding packets. Close stops it.
//
// Bind before a rule queues traffic to opts.Queue (middlebox.Delay does):
// go-nfqueue reads the replies to its configuration on the socket queued
// packets arrive on, so a packet queued in the middle of the configuration
// fails the bind ("mismatched sequence in netlink reply").
func Start(opts Options) (*Queue, error) {
	if opts.Run == nil {
		return nil, errors.New("delay: no namespace runner: the queue must be bound inside the namespace its rule lives in")
	}
	if opts.Delay < 0 {
		return nil, fmt.Errorf("delay: negative delay %v", opts.Delay)
	}
	if opts.MaxQueueLen == 0 {
		opts.MaxQueueLen = DefaultMaxQueueLen
	}
	family := uint8(unix.AF_INET)
	if opts.Family == lab.IPv6 {
		family = unix.AF_INET6
	}
	q := &Queue{opts: opts, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	// The netlink socket is created on a thread inside the namespace and
	// stays bound to it; everything after can run anywhere.
	err := opts.Run(func() error {
		nf, err := nfqueue.Open(&nfqueue.Config{
			NfQueue:      opts.Queue,
			MaxQueueLen:  opts.MaxQueueLen,
			Copymode:     nfqueue.NfQnlCopyMeta, // the id and timestamp are all we need
			Flags:        nfqueue.NfQaCfgFlagFailOpen,
			AfFamily:     family,
			WriteTimeout: time.Second,
		})
		if err != nil {
			return err
		}
		q.nf = nf
		// The kernel timestamps received packets only while some socket
		// asks for it (captures do; tcpdump does the same): one that asks
		// keeps NFQA_TIMESTAMP in every queued packet for as long as the
		// queue lives.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			nf.Close()
			return fmt.Errorf("timestamp socket: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			unix.Close(fd)
			nf.Close()
			return fmt.Errorf("timestamp socket: %w", err)
		}
		q.stamps = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delay: open queue %d: %w", opts.Queue, err)
	}
	// A burst larger than the socket's buffer would lose messages, and
	// their packets would stay queued: ask the kernel not to report that
	// (the verdicts of what did arrive still go out) and make room.
	_ = q.nf.SetOption(netlink.NoENOBUFS, true)
	_ = q.nf.Con.SetReadBuffer(8 << 20)

	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	if err := q.nf.RegisterWithErrorFunc(ctx, q.hold, q.receiveError(ctx)); err != nil {
		cancel()
		q.nf.Close()
		unix.Close(q.stamps)
		return nil, fmt.Errorf("delay: bind queue %d: %w", opts.Queue, err)
	}
	go q.release()
	return q, nil
}

// hold queues a packet's verdict for its due time. It runs on the
// library's receive goroutine and never blocks on the release loop.
func (q *Queue) hold(a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	now := time.Now()
	arrived := now
	// The skb's own timestamp (set on receive when anything, such as a
	// capture, enabled timestamps) excludes the queue's hand-off latency.
	if a.Timestamp != nil && !a.Timestamp.After(now) && now.Sub(*a.Timestamp) < time.Second {
		arrived = *a.Timestamp
	}
	q.mu.Lock()
	q.pending = append(q.pending, held{id: *a.PacketID, due: arrived.Add(q.opts.Delay)})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return 0
}

func (q *Queue) receiveError(ctx context.Context) nfqueue.ErrorFunc {
	return func(err error) int {
		if ctx.Err() != nil {
			return 1 // closing
		}
		q.mu.Lock()
		if errors.Is(err, unix.ENOBUFS) {
			q.stats.Lost++
		} else {
			q.stats.Errors++
		}
		q.mu.Unlock()
		var op *netlink.OpError
		if errors.As(err, &op) && (op.Timeout() || op.Temporary()) {
			return 0
		}
		if errors.Is(err, unix.ENOBUFS) {
			return 0
		}
		return 1
	}
}

// release accepts packets as they fall due. The delay is the same for
// every packet, so the pending list is in due order: the head is always
// the next to go.
func (q *Queue) release() {
	defer close(q.done)
	// One thread sleeps for the queue, with no timer slack (the kernel
	// otherwise may add 50 µs to every wake-up) and, where allowed, a
	// real-time priority: on a machine busy with other labs a plain thread
	// woken on time may wait milliseconds for a CPU, and every packet
	// would be that much late. It sleeps almost all the time, so it takes
	// nothing from anyone. The thread is discarded with the goroutine
	// (never unlocked), slack, priority and all.
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	rt := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: realtimePriority}, 0) == nil
	q.mu.Lock()
	q.stats.RealTime = rt
	q.mu.Unlock()
	var wake wakeup
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return
		}
		var due []held
		now := time.Now()
		i := 0
		for ; i < len(q.pending) && !q.pending[i].due.After(now); i++ {
		}
		due = append(due, q.pending[:i]...)
		q.pending = q.pending[i:]
		var next time.Time
		if len(q.pending) > 0 {
			next = q.pending[0].due
		}
		q.mu.Unlock()

		if len(due) > 0 {
			// One verdict accepts the whole due prefix (ids grow in
			// arrival order): one syscall, however many packets.
			at := time.Now() // the packets leave with the verdict
			err := q.nf.SetVerdictBatch(due[len(due)-1].id, nfqueue.NfAccept)
			q.mu.Lock()
			if err != nil {
				q.stats.Errors++
			} else {
				for _, h := range due {
					q.record(at.Sub(h.due))
				}
			}
			q.mu.Unlock()
		}
		if next.IsZero() {
			select {
			case <-q.wake:
			case <-q.quit:
				return
			}
			continue
		}
		wake.sleepUntil(next)
	}
}

// wakeup sleeps in nanosleep(2): the kernel's hrtimer wakes the thread
// within tens to hundreds of microseconds on this VM, where a Go timer may
// fire up to a millisecond late (the runtime's netpoller sleeps in whole
// milliseconds). What lateness remains is mostly steady (the VM's timer
// and the thread's wake-up), so it learns it (a moving average of how late
// it woke) and goes to sleep that much earlier: the error of the emulated
// delay then centres on zero instead of adding up on every hop.
//
// Nothing needs to interrupt the sleep: the delay is the same for every
// packet, so a packet queued meanwhile falls due after the head, and Close
// waits at most one delay. Signals (the runtime preempts with SIGURG) only
// shorten a round of the loop.
type wakeup struct{ late time.Duration }

// maxLead bounds how much earlier than due a sleep may end.
const maxLead = time.Millisecond

func (w *wakeup) sleepUntil(target time.Time) {
	until := target.Add(-w.late)
	for left := time.Until(until); left > 0; left = time.Until(until) {
		ts := unix.NsecToTimespec(left.Nanoseconds())
		_ = unix.Nanosleep(&ts, nil) // EINTR: loop with what is left
	}
	late := time.Since(until)
	w.late += (late - w.late) / 8
	w.late = min(max(w.late, 0), maxLead)
}

func (q *Queue) record(late time.Duration) {
	s := &q.stats
	if s.Packets == 0 || late < s.LateMin {
		s.LateMin = late
	}
	if late > s.LateMax {
		s.LateMax = late
	}
	s.LateSum += late
	s.Packets++
}

// Stats returns what the queue did so far.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.stats
}

// Delay is the hold time.
func (q *Queue) Delay() time.Duration { return q.opts.Delay }

// Close accepts every packet still held (nothing is lost at teardown),
// unbinds the queue and closes its socket. It is safe to call twice.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	pending := q.pending
	q.pending = nil
	q.mu.Unlock()
	close(q.quit)
	<-q.done
	var errs []error
	for _, h := range pending {
		if err := q.nf.SetVerdict(h.id, nfqueue.NfAccept); err != nil {
			errs = append(errs, err)
			break // the socket is gone: the kernel drops the rest on unbind
		}
	}
	q.cancel()
	if err := q.nf.Close(); err != nil && !errors.Is(err, unix.EBADF) {
		errs = append(errs, err)
	}
	unix.Close(q.stamps)
	if len(errs) > 0 {
		return fmt.Errorf("delay: close queue %d: %w", q.opts.Queue, errors.Join(errs...))
	}
	return nil
}
