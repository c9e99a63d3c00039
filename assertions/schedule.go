package assertions

import (
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

// BySchedule is the check build(n) makes for n, the SYN retransmissions
// the observation's own schedule fits within bound (RetransmissionsWithin):
// a connection cut off at bound shows that many, whatever the kernel.
func BySchedule(bound time.Duration, desc string, build func(n int) ConnCheck) ConnCheck {
	return ConnCheck{desc: desc, check: func(o *observation.Observation, i int) (bool, string) {
		return build(RetransmissionsWithin(*o, bound)).check(o, i)
	}}
}
