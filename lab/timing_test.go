package lab

import (
	"testing"
	"time"
)

func TestSynSchedule(t *testing.T) {
	for _, tc := range []struct {
		retries, linear int
		want            []time.Duration
	}{
		{6, 4, []time.Duration{1, 2, 3, 4, 5, 7, 11, 19, 35, 67}},
		{6, 0, []time.Duration{1, 3, 7, 15, 31, 63}},
		{2, 1, []time.Duration{1, 2, 4}},
	} {
		s := NewSynSchedule(tc.retries, tc.linear)
		if len(s.At) != len(tc.want) {
			t.Fatalf("%d/%d: %v", tc.retries, tc.linear, s.At)
		}
		for i, w := range tc.want {
			if s.At[i] != w*time.Second {
				t.Errorf("%d/%d: retransmission %d at %v, want %ds", tc.retries, tc.linear, i+1, s.At[i], w)
			}
		}
	}
	lo, hi, err := NewSynSchedule(6, 4).Window(1)
	if err != nil || lo != time.Second-Jiffy || hi != 2*time.Second {
		t.Fatalf("Window(1) = %v, %v, %v", lo, hi, err)
	}
	if _, _, err := NewSynSchedule(6, 4).Window(0); err == nil {
		t.Fatal("Window(0) must fail")
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
	} {
		if got := s.EarlyBy(tc.syns); got != tc.want {
			t.Errorf("%s: EarlyBy = %v, want %v", tc.name, got, tc.want)
		}
	}
}
