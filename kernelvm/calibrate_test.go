package kernelvm

import (
	"testing"
	"time"
)

func TestGuestParallel(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		host, guest time.Duration
		want        int
	}{
		{50 * ms, 50 * ms, 16},  // KVM: as fast as the host
		{50 * ms, 400 * ms, 2},  // TCG, 8× slower
		{50 * ms, 2000 * ms, 1}, // never below one
		{50 * ms, 25 * ms, 16},  // never above the default
		{0, 400 * ms, 16},       // nothing measured on the host
	} {
		if got := GuestParallel(16, c.host, c.guest); got != c.want {
			t.Errorf("host %v guest %v: got %d, want %d", c.host, c.guest, got, c.want)
		}
	}
}

func TestCalibrateMeasuresSomething(t *testing.T) {
	if d := Calibrate(); d <= 0 || d > 10*time.Second {
		t.Errorf("Calibrate() = %v", d)
	}
}
