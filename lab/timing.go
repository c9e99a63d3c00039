package lab

import (
	"fmt"
	"strconv"
	"time"
)

// Protocol constants the timing expectations derive from.
const (
	// InitialRTO is TCP_TIMEOUT_INIT (include/net/tcp.h): the first SYN's
	// retransmission timeout when no RTT sample exists (RFC 6298 §2.1).
	InitialRTO = time.Second
	// Jiffy is one tick at this kernel's CONFIG_HZ=250; timers fire on tick
	// boundaries, so a timer may fire up to one jiffy early relative to a
	// wall-clock measurement started between ticks.
	Jiffy = 4 * time.Millisecond
)

// SynSchedule is when a SYN is retransmitted, measured from the first SYN:
// At[k] is the time of retransmission k+1.
type SynSchedule struct {
	At []time.Duration
}

// NewSynSchedule derives the schedule from tcp_syn_retries and
// tcp_syn_linear_timeouts (0 on kernels without it): the first linear+1
// timeouts are InitialRTO each, then the timeout doubles (tcp_timer.c:
// tcp_retransmit_timer backs off once total_rto exceeds the linear count).
// A SYN_SENT socket makes retries+linear retransmissions before it gives up
// (tcp_write_timeout adds the linear count to max_retransmits; measured
// here: 9 retransmissions within 40 s with the defaults). With the defaults
// 6 and 4 that is 1, 2, 3, 4, 5, 7, 11, 19, 35, 67 s and ETIMEDOUT at 131 s;
// with linear 0 the classic 1, 3, 7, 15, 31, 63 s and ETIMEDOUT at 127 s.
func NewSynSchedule(retries, linear int) SynSchedule {
	var s SynSchedule
	var t time.Duration
	for k := 1; k <= retries+linear; k++ {
		interval := InitialRTO
		if k > linear+1 {
			interval = InitialRTO << (k - linear - 1)
		}
		t += interval
		s.At = append(s.At, t)
	}
	return s
}

// Window returns the interval in which something that waited for exactly n
// SYN retransmissions (n ≥ 1) completes: no earlier than retransmission n
// (less one jiffy of timer granularity), and before retransmission n+1,
// which would mean one more was paid. The protocol, not a tuned constant,
// sets the width.
func (s SynSchedule) Window(n int) (lo, hi time.Duration, err error) {
	if n < 1 || n > len(s.At) {
		return 0, 0, fmt.Errorf("SYN schedule has %d retransmissions, no window for %d", len(s.At), n)
	}
	lo = s.At[n-1] - Jiffy
	if n < len(s.At) {
		hi = s.At[n]
	} else {
		hi = s.At[n-1] + (s.At[n-1] - s.At[n-2]) // past the last one: the give-up timeout
	}
	return lo, hi, nil
}

// EarlyBy returns how much earlier than the schedule a connection's SYN
// retransmissions went out, from the capture times of its SYNs (the first
// SYN, then its retransmissions in order); 0 when none was early. Timers
// never fire before their expiry in jiffies, but a timer armed while the
// jiffies counter lagged real time (a vCPU that missed ticks) fires early
// on the wire by that lag: a 1 s RTO was seen at 0.84 s on this VM. Every
// later expiry derived from the same arming is early by as much, so timing
// lower bounds subtract it.
func (s SynSchedule) EarlyBy(syns []time.Time) time.Duration {
	var early time.Duration
	for k := 1; k < len(syns) && k <= len(s.At); k++ {
		if d := s.At[k-1] - syns[k].Sub(syns[0]); d > early {
			early = d
		}
	}
	return early
}

// SynScheduleOf reads the namespace's SYN retransmission sysctls.
func (n *Namespace) SynScheduleOf() (SynSchedule, error) {
	retries, err := n.Sysctl("net.ipv4.tcp_syn_retries")
	if err != nil {
		return SynSchedule{}, err
	}
	r, err := strconv.Atoi(retries)
	if err != nil {
		return SynSchedule{}, fmt.Errorf("tcp_syn_retries %q: %w", retries, err)
	}
	linear := 0
	if v, err := n.Sysctl("net.ipv4.tcp_syn_linear_timeouts"); err == nil {
		if linear, err = strconv.Atoi(v); err != nil {
			return SynSchedule{}, fmt.Errorf("tcp_syn_linear_timeouts %q: %w", v, err)
		}
	}
	return NewSynSchedule(r, linear), nil
}
