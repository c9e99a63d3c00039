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
