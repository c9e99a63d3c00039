package tfo

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestPollEventsNames(t *testing.T) {
	for ev, want := range map[int16]string{
		0:            "none",
		unix.POLLOUT: "POLLOUT",
		unix.POLLIN | unix.POLLOUT | unix.POLLERR | unix.POLLHUP: "POLLIN|POLLOUT|POLLERR|POLLHUP",
	} {
		if got := PollEvents(ev); got != want {
			t.Errorf("PollEvents(%#x) = %q, want %q", ev, got, want)
		}
	}
}

func TestTCPStateNames(t *testing.T) {
	for st, want := range map[uint8]string{1: "ESTABLISHED", 2: "SYN_SENT", 7: "CLOSE", 8: "CLOSE_WAIT", 0: "state 0", 99: "state 99"} {
		if got := TCPStateName(st); got != want {
			t.Errorf("TCPStateName(%d) = %q, want %q", st, got, want)
		}
	}
}

// ENOTSUP and EOPNOTSUPP are one number on Linux; a socket call's is
// named as the socket API names it.
func TestCallErrnoNames(t *testing.T) {
	for errno, want := range map[unix.Errno]string{0: "", unix.EOPNOTSUPP: "EOPNOTSUPP", unix.EINPROGRESS: "EINPROGRESS", unix.ECONNRESET: "ECONNRESET"} {
		if got := (CallResult{Errno: errno}).ErrnoName(); got != want {
			t.Errorf("ErrnoName(%d) = %q, want %q", errno, got, want)
		}
	}
}
