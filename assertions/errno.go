package assertions

import (
	"fmt"
	"time"

	"github.com/tfolab/tfolab/observation"
)

// ConnFailedWith expects the connection to have ended with the system error
// errno ("EHOSTUNREACH", "EACCES") before within: an ICMP error that the
// kernel took as fatal in SYN-SENT, answered at once rather than after a
// retransmission timeout.
func ConnFailedWith(errno string, within time.Duration) ConnCheck {
	return ConnCheck{
		desc: fmt.Sprintf("failed with %s within %v (no fallback, no retransmission)", errno, within),
		check: func(o *observation.Observation, i int) (bool, string) {
			c := o.Conns[i]
			if !c.Failed() {
				return false, fmt.Sprintf("it succeeded (response %q)", c.Response)
			}
			if c.Errno != errno {
				return false, fmt.Sprintf("failed with %q (errno %q), want %s", c.Error, c.Errno, errno)
			}
			if c.FailedAt >= within {
				return false, fmt.Sprintf("%s came at %v, want before %v", errno, c.FailedAt, within)
			}
			return true, fmt.Sprintf("%s after %v", errno, c.FailedAt.Round(time.Microsecond))
		},
	}.by("ConnFailedWith", errno, within)
}
