// Package tfo runs real TCP Fast Open (RFC 7413) clients and servers on
// Linux, the way applications in the wild drive the kernel, and reports what
// the kernel did with each connection.
//
// The client (Request) connects, sends one request and reads the reply to
// EOF in one of three kernel modes: sendto(MSG_FASTOPEN) on an unconnected
// socket, TCP_FASTOPEN_CONNECT followed by connect()+write(), or a plain
// connect()+write() as a control. Each call returns a Result with the
// kernel's own verdict (tcp_info: TCPI_OPT_SYN_DATA and
// tcpi_fastopen_client_fail) and application-level timings.
//
// The server (Listen) accepts connections, optionally TFO-enabled with
// TCP_FASTOPEN and a per-listener TCP_FASTOPEN_KEY, reads one line, replies
// and closes, recording per connection whether the SYN's data was accepted.
//
// The package never switches network namespaces itself. Callers pass a
// Runner that runs a function inside the namespace (for example
// func(f func() error) error { return netnsx.Do(ns, f) }); it is used only
// to create sockets, which stay bound to that namespace afterwards. All
// socket I/O goes through the Go runtime poller, so contexts and deadlines
// always interrupt waits and no goroutine is left blocked in a syscall.
package tfo

// Runner runs f with the calling OS thread inside a network namespace and
// returns f's error. The package calls it only to create sockets. A nil
// Runner runs f in the current namespace.
type Runner func(func() error) error

func (r Runner) run(f func() error) error {
	if r == nil {
		return f()
	}
	return r(f)
}
