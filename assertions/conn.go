package assertions

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/observation"
)

// ConnCheck is an expectation about one connection of an Observation.
type ConnCheck struct {
	desc  string
	check func(o *observation.Observation, i int) (bool, string)
	call  *Call // how it was built (call.go)
}

// wantDesc describes a check of something that should hold (want) or
// not: yes when want is true, no when it is false.
func wantDesc(want bool, yes, no string) string {
	if want {
		return yes
	}
	return no
}

// descs joins the checks' descriptions.
func descs(checks []ConnCheck) string {
	var out []string
	for _, c := range checks {
		out = append(out, c.desc)
	}
	return strings.Join(out, "; ")
}

// checkConn applies checks to connection i in order. At the first that
// fails it returns false and "<its description>: <detail>"; otherwise
// true and what the checks measured.
func checkConn(o *observation.Observation, i int, checks []ConnCheck) (ok bool, failure string, measured []string) {
	for _, c := range checks {
		ok, detail := c.check(o, i)
		if !ok {
			return false, c.desc + ": " + detail, nil
		}
		if detail != "" {
			measured = append(measured, detail)
		}
	}
	return true, "", measured
}

// Conn applies checks to connection i (0-based, in workload order).
func Conn(i int, checks ...ConnCheck) obsMatcher {
	return obsMatcher{
		name: fmt.Sprintf("connection %d", i),
		desc: fmt.Sprintf("connection %d: %s", i, descs(checks)),
		check: func(o *observation.Observation) (bool, string) {
			if i >= len(o.Conns) {
				return false, fmt.Sprintf("the workload made %d connections, there is no connection %d", len(o.Conns), i)
			}
			ok, failure, measured := checkConn(o, i, checks)
			if !ok {
				return false, fmt.Sprintf("connection %d: %s", i, failure)
			}
			return true, strings.Join(measured, "\n")
		},
	}.by("Conn", i, checks)
}

// EveryConn applies checks to every connection of the workload.
func EveryConn(checks ...ConnCheck) obsMatcher {
	return obsMatcher{
		name: "every connection",
		desc: "every connection: " + descs(checks),
		check: func(o *observation.Observation) (bool, string) {
			if len(o.Conns) == 0 {
				return false, "the workload made no connection"
			}
			var all []string
			for i := range o.Conns {
				ok, failure, measured := checkConn(o, i, checks)
				if !ok {
					return false, fmt.Sprintf("connection %d: %s", i, failure)
				}
				for _, m := range measured {
					all = append(all, fmt.Sprintf("connection %d: %s", i, m))
				}
			}
			return true, strings.Join(all, "\n")
		},
	}.by("EveryConn", checks)
}

// Responded expects the connection to have completed and the reply to be
// the server's echo of the request, intact.
func Responded() ConnCheck {
	return ConnCheck{
		desc: "got its request echoed back intact",
		check: func(o *observation.Observation, i int) (bool, string) {
			return replied(o.Conns[i], o.Conns[i].Request)
		},
	}.by("Responded")
}

// RepliedWith expects the connection to have completed with exactly want
// as the reply: a server that speaks first (Scenario.Server.Greeting)
// rather than echoing.
func RepliedWith(want []byte) ConnCheck {
	return ConnCheck{
		desc: fmt.Sprintf("got the server's reply %q intact", want),
		check: func(o *observation.Observation, i int) (bool, string) {
			return replied(o.Conns[i], want)
		},
	}.by("RepliedWith", want)
}

// replied checks that c completed with exactly want as its response.
func replied(c observation.Conn, want []byte) (bool, string) {
	if c.Failed() {
		if c.Stalled {
			return false, fmt.Sprintf("stalled: %v", c.Error)
		}
		return false, fmt.Sprintf("failed: %v", c.Error)
	}
	if !bytes.Equal(c.Response, want) {
		return false, fmt.Sprintf("response %q, want %q", c.Response, want)
	}
	return true, ""
}

// SynDataAcked expects tcpi_options to carry TCPI_OPT_SYN_DATA (want=true):
// the client's SYN carried data and the server acknowledged it.
func SynDataAcked(want bool) ConnCheck {
	return ConnCheck{
		desc: wantDesc(want, "the SYN's data was acknowledged (TCPI_OPT_SYN_DATA)", "no data was acknowledged in the SYN (no TCPI_OPT_SYN_DATA)"),
		check: func(o *observation.Observation, i int) (bool, string) {
			got := o.Conns[i].SynData
			if got == want {
				return true, ""
			}
			return false, fmt.Sprintf("tcpi SYN_DATA=%t, tcpi_fastopen_client_fail=%s", got, o.Conns[i].ClientFail)
		},
	}.by("SynDataAcked", want)
}

// ClientFail expects tcpi_fastopen_client_fail to be want.
func ClientFail(want tfo.ClientFail) ConnCheck {
	return ConnCheck{
		desc: fmt.Sprintf("tcpi_fastopen_client_fail is %s", want),
		check: func(o *observation.Observation, i int) (bool, string) {
			if got := o.Conns[i].ClientFail; got != want {
				return false, fmt.Sprintf("got %s", got)
			}
			return true, ""
		},
	}.by("ClientFail", want)
}

// ServerAcceptedSynData expects the server's accepted socket to report
// passive TFO (want=true) or not.
func ServerAcceptedSynData(want bool) ConnCheck {
	return ConnCheck{
		desc: wantDesc(want, "the server accepted the SYN's data (passive TFO)", "the server did not accept data in the SYN"),
		check: func(o *observation.Observation, i int) (bool, string) {
			c := o.Conns[i]
			for _, svc := range o.Services {
				if c.Served != "" {
					if svc.Node != c.Served { // a pool: the record is where the SYN landed
						continue
					}
				} else if c.Service != "" && svc.Name != c.Service {
					continue
				}
				for _, a := range svc.Accepted {
					if a.Remote == c.Local {
						if a.SynData == want {
							return true, ""
						}
						return false, fmt.Sprintf("%s's accepted socket from %s has SYN_DATA=%t", svc.Name, a.Remote, a.SynData)
					}
				}
			}
			return false, fmt.Sprintf("no server has a record of a connection from %s", c.Local)
		},
	}.by("ServerAcceptedSynData", want)
}

// FirstByteAfterSynRetransmissions expects the first response byte after
// exactly n SYN retransmissions: within the client's SYN schedule window
// [retransmission n − 1 jiffy, retransmission n+1), the lower end moved
// earlier by as much as the connection's retransmissions went out early
// (lab.SynSchedule.EarlyBy). n = 0 means no retransmission was paid:
// before the first one (InitialRTO).
func FirstByteAfterSynRetransmissions(n int) ConnCheck {
	return ConnCheck{
		desc: fmt.Sprintf("first response byte after exactly %d SYN retransmission(s)", n),
		check: func(o *observation.Observation, i int) (bool, string) {
			c := o.Conns[i]
			if c.Failed() {
				return false, fmt.Sprintf("no response: %v", c.Error)
			}
			lo, hi := time.Duration(0), lab.InitialRTO
			if n > 0 {
				var err error
				if lo, hi, err = o.SynSchedule.Window(n); err != nil {
					return false, err.Error()
				}
				lo -= o.SynSchedule.EarlyBy(packetTimes(o.ClientSYNs(i)))
			}
			if c.FirstByte < lo || c.FirstByte >= hi {
				return false, fmt.Sprintf("first byte at %v, want in [%v, %v) (SYN retransmissions at %v)", c.FirstByte, lo, hi, o.SynSchedule.At)
			}
			if n == 0 {
				return true, ""
			}
			return true, fmt.Sprintf("first byte at %v, after %d SYN retransmission(s): the fallback's cost (window [%v, %v))", c.FirstByte.Round(time.Millisecond), n, lo, hi)
		},
	}.by("FirstByteAfterSynRetransmissions", n)
}

// Refused expects the connection to have failed with ECONNREFUSED: an RST
// answered its SYN and the application got an error, not a fallback.
func Refused() ConnCheck {
	return ConnCheck{
		desc: "was refused (ECONNREFUSED reached the application)",
		check: func(o *observation.Observation, i int) (bool, string) {
			c := o.Conns[i]
			if c.Errno == "ECONNREFUSED" {
				return true, ""
			}
			if !c.Failed() {
				return false, fmt.Sprintf("it succeeded (response %q)", c.Response)
			}
			return false, fmt.Sprintf("failed otherwise: %v", c.Error)
		},
	}.by("Refused")
}

// Stalled expects the connection to have hit the workload's bound without a
// single response byte: the lab gave up waiting, the kernel had not.
func Stalled() ConnCheck {
	return ConnCheck{
		desc: "stalled: no response byte before the workload's bound",
		check: func(o *observation.Observation, i int) (bool, string) {
			c := o.Conns[i]
			if c.Stalled && len(c.Response) == 0 {
				return true, ""
			}
			if !c.Failed() {
				return false, fmt.Sprintf("it completed (first byte at %v)", c.FirstByte)
			}
			return false, fmt.Sprintf("stalled=%t, %d response bytes, error %v", c.Stalled, len(c.Response), c.Error)
		},
	}.by("Stalled")
}
