package assertions

import (
	"strings"
	"testing"

	"github.com/tfolab/tfolab/observation"
)

func callsObservation() *observation.Observation {
	o := observation.New("t", 4)
	o.Conns = []observation.Conn{{Label: "x", Calls: []observation.Call{
		{Side: "client", Op: "sendto", Ret: -1, Errno: "EINPROGRESS"},
		{Side: "client", Op: "poll", Ret: 1, Detail: "POLLOUT"},
		{Side: "server", Op: "tcp_info at accept", Ret: 0xa0, Detail: "CLOSE"},
		{Side: "server", Op: "read", Ret: 10},
		{Side: "client", Op: "tcpi_rtt", Ret: 30200},
	}}}
	return o
}

// Each call check holds on the call it names and fails, with the calls
// as evidence, on any other result, side or op.
func TestCallChecks(t *testing.T) {
	o := callsObservation()
	for _, c := range []struct {
		check ConnCheck
		want  bool
	}{
		{FailedWith("client", "sendto", "EINPROGRESS"), true},
		{FailedWith("client", "sendto", "EALREADY"), false},
		{FailedWith("server", "sendto", "EINPROGRESS"), false},
		{Returned("server", "read", 10), true},
		{Returned("server", "read", 9), false},
		{Returned("client", "sendto", -1), false}, // an error is no return value
		{Reported("client", "poll", "POLLOUT"), true},
		{Reported("client", "poll", "POLLIN"), false},
		{Reported("server", "tcp_info at accept", "CLOSE"), true},
		{OptionsHave("server", "tcp_info at accept", 0xa0, true), true},
		{OptionsHave("server", "tcp_info at accept", 0x20, false), false},
		{OptionsHave("server", "tcp_info at accept", 0x01, false), true},
		{ReturnedWithin("client", "tcpi_rtt", 30000, 40000), true},
		{ReturnedWithin("client", "tcpi_rtt", 10000, 20000), false},
		{Returned("client", "no such call", 0), false},
	} {
		ok, detail := c.check.check(o, 0)
		if ok != c.want {
			t.Errorf("%s: got %t, want %t (%s)", c.check.desc, ok, c.want, detail)
		}
		if !ok && !strings.Contains(detail, "the connection's calls") {
			t.Errorf("%s: failure without the calls as evidence: %s", c.check.desc, detail)
		}
	}
}
