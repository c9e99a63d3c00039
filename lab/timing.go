package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"time"
)

// Protocol constants the timing expectations derive from.
const (
	// InitialRTO is TCP_TIMEOUT_INIT (include/net/tcp.h): the first SYN's
	// retransmission timeout when no RTT sample exists (RFC 6298 §2.1).
	// tcp_connect_init() sets icsk_rto from tcp_timeout_init(), which
	// returns it unless a BPF_SOCK_OPS_TIMEOUT_INIT program says otherwise.
	InitialRTO = time.Second
	// Jiffy is one tick at this kernel's CONFIG_HZ=250 (/proc/config.gz).
	// The retransmission timer counts in jiffies; a measurement started
	// between two ticks can see a timer fire up to one jiffy early.
	Jiffy = 4 * time.Millisecond
	// MaxRTO is TCP_RTO_MAX (include/net/tcp.h), 120 s: the default of
	// net.ipv4.tcp_rto_max_ms and the cap of exponential backoff.
	MaxRTO = 120 * time.Second
	// MaxSynRetries is MAX_TCP_SYNCNT (include/net/tcp.h), the upper bound
	// of net.ipv4.tcp_syn_retries, TCP_SYNCNT and
	// net.ipv4.tcp_syn_linear_timeouts.
	MaxSynRetries = 127
)

// Ranges the kernel accepts for the inputs of the SYN timer.
const (
	minMaxRTO      = time.Second // tcp_rto_max_ms: extra1 = SYSCTL_ONE_THOUSAND
	maxUserTimeout = math.MaxInt32 * time.Millisecond
	usPerJiffy     = int64(Jiffy / time.Microsecond)
)

// SynTimerConfig is what the kernel's retransmission timer of an active
// open (SYN_SENT) depends on.
type SynTimerConfig struct {
	// Retries is icsk_syn_retries (TCP_SYNCNT) or, when that is unset,
	// net.ipv4.tcp_syn_retries: 1..MaxSynRetries.
	Retries int `json:"tcp_syn_retries"`
	// Linear is net.ipv4.tcp_syn_linear_timeouts: 0..MaxSynRetries (0 on
	// kernels older than 6.5, which do not have it).
	Linear int `json:"tcp_syn_linear_timeouts"`
	// InitialRTO is tcp_timeout_init(): a whole number of jiffies from one
	// jiffy to TCP_RTO_MAX. 0 means InitialRTO.
	InitialRTO time.Duration `json:"initial_rto_ns,omitempty"`
	// MaxRTO is tcp_rto_max(sk), from net.ipv4.tcp_rto_max_ms or
	// TCP_RTO_MAX_MS: a whole number of milliseconds from 1 s to 120 s, no
	// less than InitialRTO. 0 means MaxRTO.
	MaxRTO time.Duration `json:"max_rto_ns,omitempty"`
	// UserTimeout is the socket's TCP_USER_TIMEOUT, a whole number of
	// milliseconds; 0 means unset.
	UserTimeout time.Duration `json:"user_timeout_ns,omitempty"`
}

// validated returns c with defaults filled in, or an error naming the first
// value the kernel would refuse (or that this model does not cover).
func (c SynTimerConfig) validated() (SynTimerConfig, error) {
	if c.InitialRTO == 0 {
		c.InitialRTO = InitialRTO
	}
	if c.MaxRTO == 0 {
		c.MaxRTO = MaxRTO
	}
	switch {
	case c.Retries < 1 || c.Retries > MaxSynRetries:
		return c, fmt.Errorf("SYN timer: tcp_syn_retries %d outside 1..%d", c.Retries, MaxSynRetries)
	case c.Linear < 0 || c.Linear > MaxSynRetries:
		return c, fmt.Errorf("SYN timer: tcp_syn_linear_timeouts %d outside 0..%d", c.Linear, MaxSynRetries)
	case c.InitialRTO < Jiffy || c.InitialRTO > MaxRTO || c.InitialRTO%Jiffy != 0:
		return c, fmt.Errorf("SYN timer: initial RTO %v is not a whole number of jiffies (%v) in [%v, %v]", c.InitialRTO, Jiffy, Jiffy, MaxRTO)
	case c.MaxRTO < minMaxRTO || c.MaxRTO > MaxRTO || c.MaxRTO%time.Millisecond != 0:
		return c, fmt.Errorf("SYN timer: maximum RTO %v is not a whole number of ms in [%v, %v]", c.MaxRTO, minMaxRTO, MaxRTO)
	case c.InitialRTO > c.MaxRTO:
		// tcp_model_timeout() would take ilog2(0): not a configuration
		// this model (or the kernel's) describes.
		return c, fmt.Errorf("SYN timer: initial RTO %v above the maximum RTO %v", c.InitialRTO, c.MaxRTO)
	case c.UserTimeout < 0 || c.UserTimeout > maxUserTimeout || c.UserTimeout%time.Millisecond != 0:
		return c, fmt.Errorf("SYN timer: TCP_USER_TIMEOUT %v is not a whole number of ms in [0, %v]", c.UserTimeout, maxUserTimeout)
	}
	return c, nil
}

// SynSchedule is when the kernel retransmits a SYN that is never answered,
// and when it gives up, measured from the first SYN. Times are nominal: what
// the kernel arms, in jiffies. Timers fire later than that (see Late), and
// fire early only when they were armed while the jiffies counter lagged
// real time (see EarlyBy).
type SynSchedule struct {
	// At[k] is the time of retransmission k+1.
	At []time.Duration `json:"at_ns"`
	// GiveUp is when the socket fails with ETIMEDOUT (tcp_write_err), at
	// the first timer expiry that tcp_write_timeout() finds expired.
	// 0 for a schedule built without a model (a bare At literal).
	GiveUp time.Duration `json:"give_up_ns,omitempty"`
	// Late[k] bounds how much later than At[k] retransmission k+1 can
	// fire by the timer wheel alone, GiveUpLate likewise for GiveUp: the
	// sum of the wheel granularity of every timer armed before it (see
	// wheelGranularity). Scheduling delays of the timer softirq come on
	// top.
	Late       []time.Duration `json:"late_ns,omitempty"`
	GiveUpLate time.Duration   `json:"give_up_late_ns,omitempty"`
	// Limit is the time limit of the give-up's time test in
	// retransmits_timed_out(): the user timeout if set, else
	// tcp_model_timeout(Retries, InitialRTO).
	Limit time.Duration `json:"limit_ns,omitempty"`
	// ByCount: the give-up came from the count test
	// (icsk_retransmits >= Retries+Linear), which timer jitter cannot
	// move; otherwise the time test decided it.
	ByCount bool `json:"by_count,omitempty"`
	// Config is what the schedule was derived from (zero for a bare At
	// literal).
	Config SynTimerConfig `json:"config"`
}

// NewSynSchedule derives the schedule for tcp_syn_retries = retries and
// tcp_syn_linear_timeouts = linear (0 on kernels without it), with the
// default initial and maximum RTO and no user timeout. Values outside the
// kernel's ranges, which the kernel refuses to store, are clamped into
// them; NewSynScheduleFrom reports them as errors instead.
//
// With the defaults 6 and 4: retransmissions at 1, 2, 3, 4, 5, 7, 11, 19,
// 35, 67 s and ETIMEDOUT at 131 s. With 1 and 4: retransmissions at 1, 2 s
// and ETIMEDOUT at 3 s (the time limit of one exponential retry, 3 s, comes
// before the count of 1+4).
func NewSynSchedule(retries, linear int) SynSchedule {
	s, err := NewSynScheduleFrom(SynTimerConfig{
		Retries: min(max(retries, 1), MaxSynRetries),
		Linear:  min(max(linear, 0), MaxSynRetries),
	})
	if err != nil {
		// Unreachable: clamped values with default RTOs are valid.
		return SynSchedule{}
	}
	return s
}

// NewSynScheduleFrom derives the schedule from cfg, or returns an error for
// a value the kernel would not accept.
//
// The model replays net/ipv4/tcp_timer.c (Linux 6.18):
//
//   - tcp_connect() stamps retrans_stamp with the first SYN and arms the
//     timer with icsk_rto = tcp_timeout_init() (InitialRTO), unclamped.
//   - At each expiry tcp_retransmit_timer() first calls tcp_write_timeout().
//     In SYN_SENT it gives up when icsk_retransmits >= retry_until +
//     tcp_syn_linear_timeouts (retry_until = icsk_syn_retries ?:
//     tcp_syn_retries), or else when retransmits_timed_out(sk, retry_until,
//     icsk_user_timeout) holds: at least one retransmission was made and the
//     time since retrans_stamp, in ms, is at least the user timeout or, when
//     none is set, tcp_model_timeout(retry_until, tcp_timeout_init()) =
//     ((2 << retry_until) − 1) × rto_base up to ilog2(rto_max/rto_base)
//     doublings, then rto_max per further retry. The time test counts the
//     retries alone, not the linear timeouts: with few retries and linear
//     timeouts the time limit ends the connection before the count does.
//   - Otherwise tcp_update_rto_stats() counts the retransmission
//     (icsk_retransmits++, total_rto++), the SYN is sent again, and the RTO
//     doubles, capped at tcp_rto_max(), only once total_rto exceeds
//     tcp_syn_linear_timeouts: the first Linear+1 timeouts are all
//     InitialRTO.
//   - The timer is re-armed with tcp_clamp_rto_to_user_timeout(): with a user
//     timeout, min(icsk_rto, msecs_to_jiffies(user_timeout − elapsed)), or
//     one jiffy once the user timeout has passed.
//
// Not modelled: a socket on a route with the tcp_usec_ts feature, whose time
// test adds one jiffy (retransmits_timed_out()); a retransmission that fails
// for local congestion and is retried after TCP_RESOURCE_PROBE_INTERVAL; the
// SYN-ACK side (tcp_synack_retries), which has no linear timeouts.
func NewSynScheduleFrom(cfg SynTimerConfig) (SynSchedule, error) {
	cfg, err := cfg.validated()
	if err != nil {
		return SynSchedule{}, err
	}
	return simulate(cfg, onTime), nil
}

// WithUserTimeout returns the schedule of a socket that has TCP_USER_TIMEOUT
// d (0: unset) and otherwise the configuration s was derived from.
func (s SynSchedule) WithUserTimeout(d time.Duration) (SynSchedule, error) {
	if s.Config.Retries == 0 {
		return SynSchedule{}, errors.New("SYN schedule has no timer configuration to derive from")
	}
	cfg := s.Config
	cfg.UserTimeout = d
	return NewSynScheduleFrom(cfg)
}

// IfEarly returns the schedule the kernel follows when the timer of a time
// test fires even a little before its nominal expiry (armed while jiffies
// lagged), and whether it differs from s. It differs when the expiry that
// gives up lands exactly on Limit: the kernel then finds the limit not yet
// reached, retransmits once more at GiveUp and gives up one timeout later.
func (s SynSchedule) IfEarly() (SynSchedule, bool) {
	return s.variant(early)
}

// IfLate returns the schedule the kernel follows when every timer fires as
// late as the timer wheel allows, and whether it differs from s. It differs
// when that lateness reaches Limit one expiry before GiveUp: the kernel
// then gives up one retransmission sooner.
func (s SynSchedule) IfLate() (SynSchedule, bool) {
	return s.variant(late)
}

func (s SynSchedule) variant(j jitter) (SynSchedule, bool) {
	cfg, err := s.Config.validated()
	if err != nil {
		return s, false
	}
	v := simulate(cfg, j)
	return v, len(v.At) != len(s.At) || v.GiveUp != s.GiveUp
}

// jitter says when, relative to its nominal expiry, the kernel reads the
// clock at a timer's expiry.
type jitter int

const (
	onTime jitter = iota // exactly at the nominal expiry
	early                // the time test reads one microsecond before it
	late                 // after all the wheel lateness accumulated so far
)

// simulate replays tcp_connect() and tcp_retransmit_timer() for a valid
// configuration (see NewSynScheduleFrom). Kernel quantities keep the
// kernel's units: the RTO in jiffies, the elapsed time in ms
// (tcp_time_stamp_ts() without usec timestamps), and time itself in µs.
func simulate(cfg SynTimerConfig, j jitter) SynSchedule {
	s := SynSchedule{Config: cfg}
	rtoBase := int64(cfg.InitialRTO / Jiffy)            // tcp_timeout_init()
	rtoMax := msecsToJiffies(cfg.MaxRTO.Milliseconds()) // icsk_rto_max
	userMS := cfg.UserTimeout.Milliseconds()
	limitMS := userMS
	if limitMS == 0 {
		limitMS = modelTimeoutMS(int64(cfg.Retries), rtoBase, rtoMax)
	}
	s.Limit = time.Duration(limitMS) * time.Millisecond
	maxRetransmits := cfg.Retries + cfg.Linear // SYN_SENT adds the linear count

	var nowUS, lateUS int64 // nominal time since the first SYN, wheel lateness
	// elapsedMS is tcp_time_stamp_ts() − retrans_stamp as the kernel
	// reads it at this expiry; timeTest marks the read of the give-up's
	// time test, the one an early timer moves.
	elapsedMS := func(timeTest bool) int64 {
		t := nowUS
		switch {
		case j == early && timeTest:
			t--
		case j == late:
			t += lateUS
		}
		return t / 1000
	}
	arm := func(d int64) { // tcp_reset_xmit_timer() caps at tcp_rto_max()
		d = min(d, rtoMax)
		nowUS += d * usPerJiffy
		lateUS += wheelGranularity(d) * usPerJiffy
	}

	rto := rtoBase
	arm(rto) // tcp_connect()
	retransmits := 0
	for {
		// tcp_write_timeout()
		if retransmits >= maxRetransmits {
			s.ByCount = true
			break
		}
		if retransmits > 0 && elapsedMS(true) >= limitMS {
			break
		}
		// tcp_update_rto_stats(), then the SYN goes out again.
		retransmits++
		s.At = append(s.At, time.Duration(nowUS)*time.Microsecond)
		s.Late = append(s.Late, time.Duration(lateUS)*time.Microsecond)
		if retransmits > cfg.Linear { // total_rto > tcp_syn_linear_timeouts
			rto = min(rto<<1, rtoMax)
		}
		// tcp_clamp_rto_to_user_timeout()
		next := rto
		if userMS > 0 {
			if remaining := userMS - elapsedMS(false); remaining <= 0 {
				next = 1
			} else {
				next = min(rto, msecsToJiffies(remaining))
			}
		}
		arm(next)
	}
	s.GiveUp = time.Duration(nowUS) * time.Microsecond
	s.GiveUpLate = time.Duration(lateUS) * time.Microsecond
	return s
}

// modelTimeoutMS is tcp_model_timeout(): how long boundary retransmissions
// take with exponential backoff from rtoBase capped at rtoMax (jiffies in,
// ms out).
func modelTimeoutMS(boundary, rtoBase, rtoMax int64) int64 {
	thresh := int64(ilog2(rtoMax / rtoBase))
	var timeout int64
	if boundary <= thresh {
		timeout = ((2 << boundary) - 1) * rtoBase
	} else {
		timeout = ((2<<thresh)-1)*rtoBase + (boundary-thresh)*rtoMax
	}
	return timeout * int64(Jiffy/time.Millisecond) // jiffies_to_msecs()
}

// ilog2 is the kernel's ilog2 for n ≥ 1.
func ilog2(n int64) int {
	k := -1
	for ; n > 0; n >>= 1 {
		k++
	}
	return k
}

// msecsToJiffies is msecs_to_jiffies() for HZ dividing 1000: rounded up.
func msecsToJiffies(ms int64) int64 {
	per := int64(Jiffy / time.Millisecond)
	return (ms + per - 1) / per
}

// wheelGranularity is how many jiffies late a timer armed d jiffies ahead
// can fire, from kernel/time/timer.c: calc_wheel_index() files it in the
// level whose range holds d (level n holds deltas below LVL_START(n+1) =
// 63 << 3n) and calc_index() rounds its expiry up to the next multiple of
// that level's granularity 8^n, so it fires after 1 to 8^n jiffies more
// than d. A 1 s RTO can thus fire 32 ms late, a 4 to 16 s one 256 ms late,
// a 32 to 120 s one 2.048 s late.
func wheelGranularity(d int64) int64 {
	const levels = 9 // LVL_DEPTH for HZ > 100
	for lvl := range int64(levels) {
		if d < 63<<(3*lvl) {
			return 1 << (3 * lvl)
		}
	}
	return 1 << (3 * (levels - 1))
}

// Window returns the interval in which something that waited for exactly n
// SYN retransmissions completes: no earlier than retransmission n (less one
// jiffy of timer granularity), and before retransmission n+1, which would
// mean one more was paid, or before the give-up after the last one. n = 0
// is [0, first retransmission). The protocol, not a tuned constant, sets the
// width. An n the schedule has no retransmission for is an error.
func (s SynSchedule) Window(n int) (lo, hi time.Duration, err error) {
	switch {
	case len(s.At) == 0:
		return 0, 0, errors.New("SYN schedule has no retransmissions")
	case n < 0 || n > len(s.At):
		return 0, 0, fmt.Errorf("SYN schedule has %d retransmissions, no window for %d", len(s.At), n)
	case n == 0:
		return 0, s.At[0], nil
	case n < len(s.At):
		return s.At[n-1] - Jiffy, s.At[n], nil
	case s.GiveUp == 0:
		return 0, 0, fmt.Errorf("SYN schedule has no give-up time, no window after its last retransmission %d", n)
	}
	return s.At[n-1] - Jiffy, s.GiveUp, nil
}

// GiveUpWindow returns when the socket can fail with ETIMEDOUT: from one
// jiffy before GiveUp to GiveUpLate after it (timer wheel lateness; the
// scheduling delay of the timer softirq comes on top). See IfEarly and
// IfLate for the expiries timer jitter can move the give-up to when the time
// test decides it.
func (s SynSchedule) GiveUpWindow() (lo, hi time.Duration) {
	return s.GiveUp - Jiffy, s.GiveUp + s.GiveUpLate
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

// SynScheduleOf reads the namespace's SYN timer sysctls (tcp_syn_retries,
// and where the kernel has them tcp_syn_linear_timeouts and tcp_rto_max_ms)
// and derives the schedule of a socket without TCP_SYNCNT or
// TCP_USER_TIMEOUT (see SynSchedule.WithUserTimeout).
func (n *Namespace) SynScheduleOf() (SynSchedule, error) {
	var cfg SynTimerConfig
	var err error
	if cfg.Retries, err = n.intSysctl("net.ipv4.tcp_syn_retries", false); err != nil {
		return SynSchedule{}, err
	}
	if cfg.Linear, err = n.intSysctl("net.ipv4.tcp_syn_linear_timeouts", true); err != nil {
		return SynSchedule{}, err
	}
	ms, err := n.intSysctl("net.ipv4.tcp_rto_max_ms", true)
	if err != nil {
		return SynSchedule{}, err
	}
	cfg.MaxRTO = time.Duration(ms) * time.Millisecond
	s, err := NewSynScheduleFrom(cfg)
	if err != nil {
		return SynSchedule{}, fmt.Errorf("namespace %s: %w", n.Name, err)
	}
	return s, nil
}

// intSysctl reads an integer sysctl; with optional, a kernel that lacks it
// reads as 0.
func (n *Namespace) intSysctl(key string, optional bool) (int, error) {
	v, err := n.Sysctl(key)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	i, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s = %q: %w", key, v, err)
	}
	return i, nil
}

// DetectionAt is when a TFO SYN that gets no answer trips blackhole
// detection (tcp_fastopen_active_detect_blackhole, called from
// tcp_write_timeout at every expiry before the retransmission counter
// moves): at the third expiry (icsk_retransmits == 2), which is the third
// retransmission's time, or at the give-up when the socket gives up before
// that. 0 for a schedule with neither.
func (s SynSchedule) DetectionAt() time.Duration {
	if len(s.At) >= 3 {
		return s.At[2]
	}
	return s.GiveUp
}
