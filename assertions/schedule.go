package assertions

import (
	"fmt"
	"time"

	"github.com/tfolab/tfolab/observation"
)

// RetransmissionsWithin is how many SYN retransmissions the observation's
// SYN schedule (the first client's own sysctls: tcp_syn_retries and, on
// kernels that have it, tcp_syn_linear_timeouts) fires, late timers
// included, before a connection bounded by bound is given up: 2 in 2.5 s on
// a kernel with linear timeouts (1 s, 2 s), 1 on one without (1 s, 3 s).
func RetransmissionsWithin(s observation.Observation, bound time.Duration) int {
	n := 0
	for k, at := range s.SynSchedule.At {
		late := time.Duration(0)
		if k < len(s.SynSchedule.Late) {
			late = s.SynSchedule.Late[k]
		}
		if at+late >= bound {
			break
		}
		n++
	}
	return n
}

// UnansweredSynDataBySchedule is the client's SYN with a cookie and
// payload bytes of data, then the plain SYN retransmissions (no option,
// no data) that the observation's own SYN schedule fires within bound
// (RetransmissionsWithin): a connection cut off at bound shows that many,
// whatever the kernel: 2 in 2.5 s with linear timeouts, 1 without.
func UnansweredSynDataBySchedule(bound time.Duration, payload int) ConnCheck {
	return ConnCheck{
		desc: fmt.Sprintf("client SYN with a cookie and %d bytes of data, then the plain SYN retransmissions its SYN schedule fires within %v", payload, bound),
		check: func(o *observation.Observation, i int) (bool, string) {
			steps := []Step{ClientSYN().WithCookie().WithPayload(payload)}
			for range RetransmissionsWithin(*o, bound) {
				steps = append(steps, ClientSYN().WithoutFastOpen().WithoutPayload())
			}
			return Dialogue(AtClient, steps...).check(o, i)
		},
	}.by("UnansweredSynDataBySchedule", bound, payload)
}
