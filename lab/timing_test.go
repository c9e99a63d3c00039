package lab

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

// secs turns seconds into durations.
func secs(s ...float64) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, v := range s {
		out[i] = time.Duration(v * float64(time.Second))
	}
	return out
}

// every127 is the SYN schedule of tcp_syn_retries 127 without linear
// timeouts: 1, 3, 7, ... 127 s (RTO 1 s doubling to 64 s), then the RTO is
// capped at TCP_RTO_MAX and every retransmission comes 120 s later.
func every127(linear int) []time.Duration {
	var at []time.Duration
	t, rto := time.Duration(0), time.Second
	for k := 1; k <= 127+linear; k++ {
		t += rto
		at = append(at, t)
		if k > linear {
			rto = min(2*rto, MaxRTO)
		}
	}
	return at
}

// The expected schedules are worked out by hand from net/ipv4/tcp_timer.c
// (see NewSynScheduleFrom): expiries come InitialRTO apart for the first
// linear+1 timeouts, then the RTO doubles up to 120 s; at each expiry the
// socket gives up if it has made retries+linear retransmissions, or if it
// has made one and the time since the first SYN reaches the limit: the user
// timeout, else tcp_model_timeout(retries) = (2^(retries+1) − 1) s for up
// to 6 retries and 127 s + 120 s per further retry. With a user timeout the
// timer is clamped to what is left of it (one jiffy once it has passed).
func TestSynScheduleFollowsKernel(t *testing.T) {
	for _, tc := range []struct {
		retries, linear int
		user            time.Duration
		at              []time.Duration
		giveUp, limit   time.Duration
		byCount         bool
	}{
		// No user timeout.
		{1, 0, 0, secs(1), 3 * time.Second, 3 * time.Second, true},
		// The time limit of 1 retry (3 s) ends it before the count of 1+4.
		{1, 4, 0, secs(1, 2), 3 * time.Second, 3 * time.Second, false},
		{2, 0, 0, secs(1, 3), 7 * time.Second, 7 * time.Second, true},
		{2, 4, 0, secs(1, 2, 3, 4, 5), 7 * time.Second, 7 * time.Second, false},
		{3, 0, 0, secs(1, 3, 7), 15 * time.Second, 15 * time.Second, true},
		{3, 4, 0, secs(1, 2, 3, 4, 5, 7, 11), 19 * time.Second, 15 * time.Second, true},
		{6, 0, 0, secs(1, 3, 7, 15, 31, 63), 127 * time.Second, 127 * time.Second, true},
		{6, 4, 0, secs(1, 2, 3, 4, 5, 7, 11, 19, 35, 67), 131 * time.Second, 127 * time.Second, true},
		{127, 0, 0, every127(0), (127 + 121*120) * time.Second, (127 + 121*120) * time.Second, true},
		{127, 4, 0, every127(4), (131 + 121*120) * time.Second, (127 + 121*120) * time.Second, true},
		// TCP_USER_TIMEOUT 500 ms: the first timer is armed unclamped
		// (tcp_connect) and the time test needs one retransmission, so R1
		// goes out at 1 s; the user timeout has passed, the timer is
		// re-armed for one jiffy and the socket gives up then.
		{1, 0, 500 * ms, secs(1), time.Second + Jiffy, 500 * ms, true},
		{1, 4, 500 * ms, secs(1), time.Second + Jiffy, 500 * ms, false},
		{2, 0, 500 * ms, secs(1), time.Second + Jiffy, 500 * ms, false},
		{2, 4, 500 * ms, secs(1), time.Second + Jiffy, 500 * ms, false},
		{3, 0, 500 * ms, secs(1), time.Second + Jiffy, 500 * ms, false},
		{3, 4, 500 * ms, secs(1), time.Second + Jiffy, 500 * ms, false},
		{6, 0, 500 * ms, secs(1), time.Second + Jiffy, 500 * ms, false},
		{6, 4, 500 * ms, secs(1), time.Second + Jiffy, 500 * ms, false},
		{127, 0, 500 * ms, secs(1), time.Second + Jiffy, 500 * ms, false},
		{127, 4, 500 * ms, secs(1), time.Second + Jiffy, 500 * ms, false},
		// 1500 ms: after R1 the timer is clamped to the 500 ms left.
		{1, 0, 1500 * ms, secs(1), 1500 * ms, 1500 * ms, true},
		{1, 4, 1500 * ms, secs(1), 1500 * ms, 1500 * ms, false},
		{2, 0, 1500 * ms, secs(1), 1500 * ms, 1500 * ms, false},
		{2, 4, 1500 * ms, secs(1), 1500 * ms, 1500 * ms, false},
		{3, 0, 1500 * ms, secs(1), 1500 * ms, 1500 * ms, false},
		{3, 4, 1500 * ms, secs(1), 1500 * ms, 1500 * ms, false},
		{6, 0, 1500 * ms, secs(1), 1500 * ms, 1500 * ms, false},
		{6, 4, 1500 * ms, secs(1), 1500 * ms, 1500 * ms, false},
		{127, 0, 1500 * ms, secs(1), 1500 * ms, 1500 * ms, false},
		{127, 4, 1500 * ms, secs(1), 1500 * ms, 1500 * ms, false},
		// A user timeout in mid-schedule clamps the last timer to it...
		{6, 4, 4500 * ms, secs(1, 2, 3, 4), 4500 * ms, 4500 * ms, false},
		// ...and one beyond the count does not extend it.
		{2, 0, 10 * time.Second, secs(1, 3), 7 * time.Second, 10 * time.Second, true},
	} {
		name := fmt.Sprintf("retries=%d/linear=%d/user=%v", tc.retries, tc.linear, tc.user)
		s, err := NewSynScheduleFrom(SynTimerConfig{Retries: tc.retries, Linear: tc.linear, UserTimeout: tc.user})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !slices.Equal(s.At, tc.at) {
			t.Errorf("%s: retransmissions at %v, want %v", name, short(s.At), short(tc.at))
		}
		if s.GiveUp != tc.giveUp || s.Limit != tc.limit || s.ByCount != tc.byCount {
			t.Errorf("%s: give-up %v (limit %v, by count %v), want %v (limit %v, by count %v)",
				name, s.GiveUp, s.Limit, s.ByCount, tc.giveUp, tc.limit, tc.byCount)
		}
		if len(s.Late) != len(s.At) {
			t.Errorf("%s: %d lateness bounds for %d retransmissions", name, len(s.Late), len(s.At))
		}
		if tc.user == 0 && (tc.retries == 1 || tc.retries == 6) {
			if old := NewSynSchedule(tc.retries, tc.linear); !slices.Equal(old.At, s.At) || old.GiveUp != s.GiveUp {
				t.Errorf("%s: NewSynSchedule gives %v / %v, NewSynScheduleFrom %v / %v", name, short(old.At), old.GiveUp, short(s.At), s.GiveUp)
			}
		}
		windowsNeverPanic(t, name, s)
	}
}

// short prints long schedules by their ends.
func short(at []time.Duration) string {
	if len(at) <= 12 {
		return fmt.Sprint(at)
	}
	return fmt.Sprintf("%v ... %v (%d)", at[:6], at[len(at)-3:], len(at))
}

// windowsNeverPanic calls Window for every n from −1 to len(At)+2 and checks
// that the windows tile the schedule.
func windowsNeverPanic(t *testing.T, name string, s SynSchedule) {
	t.Helper()
	for n := -1; n <= len(s.At)+2; n++ {
		lo, hi, err := s.Window(n)
		valid := n >= 0 && n <= len(s.At)
		if valid != (err == nil) {
			t.Errorf("%s: Window(%d) = %v, %v, %v", name, n, lo, hi, err)
			continue
		}
		if !valid {
			continue
		}
		wantLo, wantHi := time.Duration(0), s.GiveUp
		if n > 0 {
			wantLo = s.At[n-1] - Jiffy
		}
		if n < len(s.At) {
			wantHi = s.At[n]
		}
		if lo != wantLo || hi != wantHi || lo >= hi {
			t.Errorf("%s: Window(%d) = [%v, %v), want [%v, %v)", name, n, lo, hi, wantLo, wantHi)
		}
	}
}

func TestNewSynScheduleClampsWithoutPanic(t *testing.T) {
	for _, tc := range []struct{ retries, linear, wantRetries, wantLinear int }{
		{1, 0, 1, 0}, {0, 0, 1, 0}, {-5, -1, 1, 0}, {128, 200, 127, 127}, {1 << 30, 1 << 30, 127, 127},
	} {
		s := NewSynSchedule(tc.retries, tc.linear)
		if s.Config.Retries != tc.wantRetries || s.Config.Linear != tc.wantLinear {
			t.Errorf("NewSynSchedule(%d, %d) models %d/%d, want %d/%d", tc.retries, tc.linear,
				s.Config.Retries, s.Config.Linear, tc.wantRetries, tc.wantLinear)
		}
		windowsNeverPanic(t, fmt.Sprintf("NewSynSchedule(%d, %d)", tc.retries, tc.linear), s)
	}
	// The defect that started this: index −1.
	lo, hi, err := NewSynSchedule(1, 0).Window(1)
	if err != nil || lo != time.Second-Jiffy || hi != 3*time.Second {
		t.Errorf("NewSynSchedule(1, 0).Window(1) = %v, %v, %v; want [996ms, 3s)", lo, hi, err)
	}
	// A bare literal has no give-up time: the last window is an error.
	bare := SynSchedule{At: secs(1)}
	if _, _, err := bare.Window(1); err == nil {
		t.Error("Window past the last retransmission of a schedule without GiveUp: no error")
	}
	if _, _, err := (SynSchedule{}).Window(0); err == nil {
		t.Error("Window of an empty schedule: no error")
	}
}

func TestSynTimerConfigRejectsNonsense(t *testing.T) {
	for _, tc := range []struct {
		cfg  SynTimerConfig
		want string
	}{
		{SynTimerConfig{Retries: 0}, "tcp_syn_retries 0"},
		{SynTimerConfig{Retries: 128}, "tcp_syn_retries 128"},
		{SynTimerConfig{Retries: 6, Linear: -1}, "tcp_syn_linear_timeouts -1"},
		{SynTimerConfig{Retries: 6, Linear: 128}, "tcp_syn_linear_timeouts 128"},
		{SynTimerConfig{Retries: 6, InitialRTO: -time.Second}, "initial RTO"},
		{SynTimerConfig{Retries: 6, InitialRTO: 3 * ms}, "initial RTO"},
		{SynTimerConfig{Retries: 6, InitialRTO: 1001 * ms}, "initial RTO"},
		{SynTimerConfig{Retries: 6, InitialRTO: 121 * time.Second}, "initial RTO"},
		{SynTimerConfig{Retries: 6, MaxRTO: 999 * ms}, "maximum RTO"},
		{SynTimerConfig{Retries: 6, MaxRTO: 121 * time.Second}, "maximum RTO"},
		{SynTimerConfig{Retries: 6, MaxRTO: 1500*ms + time.Microsecond}, "maximum RTO"},
		{SynTimerConfig{Retries: 6, InitialRTO: 2 * time.Second, MaxRTO: time.Second}, "above the maximum RTO"},
		{SynTimerConfig{Retries: 6, UserTimeout: -ms}, "TCP_USER_TIMEOUT"},
		{SynTimerConfig{Retries: 6, UserTimeout: 1500 * time.Microsecond}, "TCP_USER_TIMEOUT"},
		{SynTimerConfig{Retries: 6, UserTimeout: 1 << 62}, "TCP_USER_TIMEOUT"},
	} {
		if _, err := NewSynScheduleFrom(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one about %q", tc.cfg, err, tc.want)
		}
	}
}

// Other initial and maximum RTOs go through tcp_model_timeout()'s
// threshold ilog2(rto_max / rto_base).
func TestSynScheduleOtherRTOs(t *testing.T) {
	for _, tc := range []struct {
		cfg    SynTimerConfig
		at     []time.Duration
		giveUp time.Duration
		limit  time.Duration
	}{
		// A BPF TIMEOUT_INIT of 200 ms: 0.2, 0.6 s, and 7 × 200 ms.
		{SynTimerConfig{Retries: 2, InitialRTO: 200 * ms}, secs(0.2, 0.6), 1400 * ms, 1400 * ms},
		// ... with linear timeouts the 1.4 s limit ends it after R5.
		{SynTimerConfig{Retries: 2, Linear: 4, InitialRTO: 200 * ms}, secs(0.2, 0.4, 0.6, 0.8, 1.0), 1400 * ms, 1400 * ms},
		// 3 s: ilog2(120/3) = 5 doublings, then 120 s: limit 63×3 + 120.
		{SynTimerConfig{Retries: 6, InitialRTO: 3 * time.Second}, secs(3, 9, 21, 45, 93, 189), 309 * time.Second, 309 * time.Second},
		// tcp_rto_max_ms = 1000: no doubling at all, limit 1 + 6×1 s.
		{SynTimerConfig{Retries: 6, MaxRTO: time.Second}, secs(1, 2, 3, 4, 5, 6), 7 * time.Second, 7 * time.Second},
		// tcp_rto_max_ms = 5000: 1, 2, 4, then 5 s steps.
		{SynTimerConfig{Retries: 6, MaxRTO: 5 * time.Second}, secs(1, 3, 7, 12, 17, 22), 27 * time.Second, 27 * time.Second},
	} {
		s, err := NewSynScheduleFrom(tc.cfg)
		if err != nil {
			t.Errorf("%+v: %v", tc.cfg, err)
			continue
		}
		if !slices.Equal(s.At, tc.at) || s.GiveUp != tc.giveUp || s.Limit != tc.limit {
			t.Errorf("%+v: retransmissions %v, give-up %v, limit %v; want %v, %v, %v",
				tc.cfg, s.At, s.GiveUp, s.Limit, tc.at, tc.giveUp, tc.limit)
		}
		windowsNeverPanic(t, fmt.Sprintf("%+v", tc.cfg), s)
	}
}

// Late adds up calc_index()'s round-up of every timer armed so far:
// 8 jiffies (32 ms) for 1 and 2 s, 64 (256 ms) for 4 to 16 s, 512
// (2.048 s) for 32 and 64 s.
func TestSynScheduleLateness(t *testing.T) {
	s := NewSynSchedule(6, 4)
	want := []time.Duration{32, 64, 96, 128, 160, 192, 448, 704, 960, 3008}
	for i, w := range want {
		if s.Late[i] != w*ms {
			t.Errorf("Late[%d] = %v, want %v", i, s.Late[i], w*ms)
		}
	}
	if s.GiveUpLate != 5056*ms {
		t.Errorf("GiveUpLate = %v, want 5.056s", s.GiveUpLate)
	}
	if lo, hi := s.GiveUpWindow(); lo != 131*time.Second-Jiffy || hi != 131*time.Second+5056*ms {
		t.Errorf("GiveUpWindow = [%v, %v]", lo, hi)
	}
	for _, tc := range []struct{ d, gran int64 }{
		{1, 1}, {62, 1}, {63, 8}, {250, 8}, {503, 8}, {504, 64}, {4031, 64}, {4032, 512}, {30000, 512}, {32256, 4096},
	} {
		if g := wheelGranularity(tc.d); g != tc.gran {
			t.Errorf("wheelGranularity(%d) = %d, want %d", tc.d, g, tc.gran)
		}
	}
}

// When the expiry that gives up falls exactly on the time limit, a timer
// that fires early finds the limit not yet reached and sends one more SYN.
func TestSynScheduleJitterVariants(t *testing.T) {
	for _, tc := range []struct {
		cfg         SynTimerConfig
		earlyAt     []time.Duration
		earlyGiveUp time.Duration
	}{
		{SynTimerConfig{Retries: 1, Linear: 4}, secs(1, 2, 3), 4 * time.Second},
		{SynTimerConfig{Retries: 2, Linear: 4}, secs(1, 2, 3, 4, 5, 7), 11 * time.Second},
		{SynTimerConfig{Retries: 6, Linear: 4, UserTimeout: 1500 * ms}, secs(1, 1.5), 1500*ms + Jiffy},
	} {
		s, err := NewSynScheduleFrom(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		e, ok := s.IfEarly()
		if !ok || !slices.Equal(e.At, tc.earlyAt) || e.GiveUp != tc.earlyGiveUp {
			t.Errorf("%+v: IfEarly = %v, %v, %v; want %v, %v", tc.cfg, e.At, e.GiveUp, ok, tc.earlyAt, tc.earlyGiveUp)
		}
	}
	// The count decides these, far from the time limit: jitter cannot
	// move them.
	for _, cfg := range []SynTimerConfig{{Retries: 2}, {Retries: 3, Linear: 4}, {Retries: 6, Linear: 4}} {
		s, err := NewSynScheduleFrom(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.IfEarly(); ok {
			t.Errorf("%+v: an early timer changes the schedule", cfg)
		}
		if _, ok := s.IfLate(); ok {
			t.Errorf("%+v: late timers change the schedule", cfg)
		}
	}
	// Lateness that reaches the limit one expiry early: with an initial
	// RTO of one jiffy, 2 retries and 1 linear timeout expire at 1, 2, 4,
	// 8 jiffies and the limit is 7 jiffies: nominally R3 goes out at 4 and
	// the count ends it at 8, but the one-jiffy round-up of each timer
	// (calc_index) brings the third expiry to 7 and the time test ends it
	// there.
	s, err := NewSynScheduleFrom(SynTimerConfig{Retries: 2, Linear: 1, InitialRTO: Jiffy})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.At, []time.Duration{4 * ms, 8 * ms, 16 * ms}) || s.GiveUp != 32*ms || s.Limit != 28*ms || !s.ByCount {
		t.Fatalf("1 jiffy: %v, give-up %v, limit %v, by count %v", s.At, s.GiveUp, s.Limit, s.ByCount)
	}
	if l, ok := s.IfLate(); !ok || !slices.Equal(l.At, []time.Duration{4 * ms, 8 * ms}) || l.GiveUp != 16*ms {
		t.Errorf("1 jiffy: IfLate = %v give-up %v, %v; want [4ms 8ms], 16ms", l.At, l.GiveUp, ok)
	}
	// Bare literals have no configuration to vary.
	if _, ok := (SynSchedule{At: secs(1, 2)}).IfEarly(); ok {
		t.Error("bare literal: IfEarly differs")
	}
}

func TestSynScheduleWithUserTimeout(t *testing.T) {
	s := NewSynSchedule(6, 4)
	u, err := s.WithUserTimeout(500 * ms)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(u.At, secs(1)) || u.GiveUp != time.Second+Jiffy {
		t.Errorf("user timeout 500ms: %v, give-up %v", u.At, u.GiveUp)
	}
	back, err := u.WithUserTimeout(0)
	if err != nil || !slices.Equal(back.At, s.At) || back.GiveUp != s.GiveUp {
		t.Errorf("user timeout back to 0: %v, %v, %v", back.At, back.GiveUp, err)
	}
	if _, err := s.WithUserTimeout(-time.Second); err == nil {
		t.Error("negative user timeout: no error")
	}
	if _, err := (SynSchedule{At: secs(1)}).WithUserTimeout(time.Second); err == nil {
		t.Error("bare literal: no error")
	}
}

// The SYN retransmissions of one connection, seen on the wire: on time,
// late, or early because the timer was armed from lagging jiffies.
func TestSynScheduleEarlyBy(t *testing.T) {
	s := NewSynSchedule(6, 4)
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		out := []time.Time{t0}
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		syns []time.Time
		want time.Duration
	}{
		{"only the SYN", at(), 0},
		{"on time", at(1000, 2000, 3000), 0},
		{"late", at(1030, 2250, 3100), 0},
		// Measured in CI rehearsal: first SYN, then 0.843, 1.866, 2.882 s.
		{"early", at(843, 1866, 2882), 157 * time.Millisecond},
		{"more SYNs than the schedule", at(1000, 2000, 3000, 4000, 5000, 7000, 11000, 19000, 35000, 67000, 131000, 251000), 0},
	} {
		if got := s.EarlyBy(tc.syns); got != tc.want {
			t.Errorf("%s: EarlyBy = %v, want %v", tc.name, got, tc.want)
		}
	}
}
