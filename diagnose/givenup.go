package diagnose

import "fmt"

// A TFO SYN with data that no TCP segment answered, that was never
// retransmitted, though the capture went on past the first retransmission
// timeout: Linux retransmits an unanswered SYN after 1 s unless the socket
// is gone by then. In SYN-SENT the kernel takes an ICMP destination
// unreachable as fatal (tcp_v4_err, tcp_v6_err: tcp_done_with_error), so a
// firewall that REJECTs the data SYN with an ICMP type (firewalld's
// default: admin-prohibited) ends the connection at once with
// EHOSTUNREACH (IPv4) or EACCES (IPv6); the ICMP error itself is no TCP
// and not in what diagnose reads. An application that gives up within a
// second does the same on the wire.

// givenUp reports such a connection.
func givenUp(c *conn) bool {
	return c.nSynack == 0 && !c.rst && c.nSYN == 1 && c.maxData > 0 && c.tfoAttempt() &&
		c.endT.Sub(c.lastSYNt) >= unfinishedWithin
}

// givenUpReason is the syn-data-dropped reason when given-up connections
// make it.
func givenUpReason(n int) string {
	return fmt.Sprintf("%s with data got no TCP answer and %s never retransmitted, though the capture went on past the 1 s retransmission timeout: "+
		"the client's kernel dropped the connection at once, which an ICMP error does (a firewall that REJECTs SYNs with data with an icmp type, "+
		"e.g. admin-prohibited: the application gets EHOSTUNREACH or EACCES, no fallback; a capture with ICMP shows it), or an application that gave up within a second",
		plural(n, "TFO SYN"), map[bool]string{true: "was", false: "were"}[n == 1])
}
