package assertions

import (
	"testing"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/observation"
)

func TestRetransmissionsWithinFollowTheKernelsSchedule(t *testing.T) {
	for _, c := range []struct {
		retries, linear int
		want            int
	}{
		{6, 4, 2}, // 6.5+: 1 s, 2 s, 3 s ...
		{6, 0, 1}, // 6.1: 1 s, 3 s, 7 s ...
	} {
		o := observation.Observation{SynSchedule: lab.NewSynSchedule(c.retries, c.linear)}
		if got := RetransmissionsWithin(o, 2500*time.Millisecond); got != c.want {
			t.Errorf("retries %d linear %d: got %d within 2.5 s, want %d (%v)", c.retries, c.linear, got, c.want, o.SynSchedule.At)
		}
	}
}
