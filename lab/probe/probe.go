// Package probe tells whether a TCP server supports TCP Fast Open (RFC 7413)
// without opening a connection: it sends one crafted SYN carrying a cookie
// request, reads the SYN-ACK, reports the cookie the server offered, and
// resets the half-open connection. It is the scapy recipe
//
//	sr1(IP(dst=dst)/TCP(dport=dport, flags="S", options=[("TFO", "")]))
//
// in Go, for namespaces the lab built.
//
// The SYN looks like a Linux SYN (MSS, SACK-permitted, timestamps, window
// scale) plus the cookie request, kind 34 length 2 or the experimental kind
// 254 length 4 magic 0xF989 (RFC 7413 §4.1.1), because servers and
// middleboxes may treat a bare SYN differently.
//
// What happens on the wire, observed against Linux 6.18 on a veth pair:
//
//   - The client kernel has no socket for the probe's port, so it answers
//     the SYN-ACK with its own RST (seq = our ISN+1) in the receive path,
//     before the probe's read returns; the probe's own RST follows some
//     tens of microseconds later and finds nothing left to reset (the
//     server drops an RST for no connection silently). Holding the port
//     with a bound, non-listening TCP socket does not change that (a bound
//     socket is not looked up for incoming segments); it only keeps other
//     sockets off the port. The probe's RST is what cleans up when the
//     kernel's RST does not leave the client (a firewall dropping outgoing
//     RSTs, as port scanners set up) or is lost.
//   - The RST carries no ACK and no timestamp: a Linux server in SYN-RECV
//     accepts an RST whose seq is exactly its rcv_nxt, so the probe can
//     reset even when the SYN-ACK never reached it. Without any RST the
//     server would keep the SYN-RECV entry and retransmit its SYN-ACK for
//     about a minute (tcp_synack_retries).
//   - A Linux server with TFO on answers either form with an 8-byte cookie
//     in the same form, the same cookie for every probe from one address;
//     with TFO off it answers a normal SYN-ACK; a closed port gives RST+ACK.
//     An MPTCP listener (what Go's net.Listen opens by default since 1.24)
//     offers the cookie too but leaves the timestamp option out of that
//     SYN-ACK, for a plain TCP client as well.
//
// The raw socket is an IPPROTO_TCP one: it sends TCP segments (the kernel
// builds the IP header) and receives a copy of every TCP segment for the
// local address, which the kernel's TCP processes as well. Connecting it to
// the target keeps the copies to that peer and turns ICMP errors about the
// SYN into read errors, reported in Result.Reason.
package probe

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"
)

// DefaultTimeout is how long the probe waits for an answer to each SYN
// when Options.Timeout is 0.
const DefaultTimeout = time.Second

// Options tune a probe. The zero value sends one kind-34 SYN from a free
// ephemeral port and waits up to DefaultTimeout.
type Options struct {
	// Timeout bounds the wait for an answer to each SYN (0: DefaultTimeout).
	// An earlier deadline of the context wins.
	Timeout time.Duration
	// Retries is how many times the SYN is sent again, unchanged, when
	// Timeout passed without an answer, as a kernel retransmits. 0: one SYN.
	Retries int
	// Experimental asks for a cookie in the experimental form (kind 254,
	// magic 0xF989) that pre-RFC implementations understand.
	Experimental bool
	// SrcPort is the source port; 0 takes a free ephemeral port. The port is
	// held by a bound TCP socket for the duration of the probe.
	SrcPort uint16
	// MSS is the MSS option's value; 0 means 1460 (IPv4) or 1440 (IPv6).
	MSS uint16
}

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

// Result is what a probe learnt about the server.
type Result struct {
	// Target is the probed server.
	Target netip.AddrPort `json:"target"`
	// Source is the address and port the SYN came from.
	Source netip.AddrPort `json:"source"`
	// Answered: a SYN-ACK or an RST acknowledged the SYN.
	Answered bool `json:"answered"`
	// RST: the answer was an RST (nothing listens, or a middlebox reset).
	RST bool `json:"rst"`
	// SupportsTFO: the SYN-ACK offered a cookie of valid length.
	SupportsTFO bool `json:"supports_tfo"`
	// Cookie is the cookie the SYN-ACK carried (also when its length is
	// invalid, see Reason).
	Cookie HexBytes `json:"cookie,omitempty"`
	// Experimental: the SYN-ACK's TFO option was the kind 254/0xF989 form.
	Experimental bool `json:"experimental"`
	// RTT is the time from the last SYN sent to the answer.
	RTT time.Duration `json:"rtt_ns"`
	// SYNs is how many times the SYN was sent.
	SYNs int `json:"syns"`
	// Reason says in words why the other fields are what they are.
	Reason string `json:"reason"`
}

// String renders r as one line, for logs and the command line.
func (r Result) String() string {
	var verdict string
	switch {
	case r.SupportsTFO:
		verdict = fmt.Sprintf("TFO supported, cookie %x", []byte(r.Cookie))
	case r.RST:
		verdict = "refused"
	case r.Answered:
		verdict = "no TFO"
	default:
		verdict = "unknown"
	}
	s := fmt.Sprintf("%s: %s (%s)", r.Target, verdict, r.Reason)
	if r.Answered {
		s += fmt.Sprintf(", rtt %v", r.RTT)
	}
	return s
}

// HexBytes is a byte string that JSON (and any other text encoding) shows
// in hex, the way tcpdump and Wireshark print a cookie.
type HexBytes []byte

// MarshalText implements encoding.TextMarshaler.
func (b HexBytes) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(b)), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *HexBytes) UnmarshalText(text []byte) error {
	d, err := hex.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		return fmt.Errorf("hex bytes: %w", err)
	}
	*b = d
	return nil
}

// Probe sends a TFO cookie request to dst from src and reports the answer.
//
// run runs a function on an OS thread inside the client's network
// namespace; Probe calls it once, to create its sockets, which stay in that
// namespace afterwards. A nil run uses the current namespace. src may be
// the zero Addr: the route to dst picks the source address. The raw socket
// needs CAP_NET_RAW in that namespace.
//
// The error is for local failures only (sockets, sending) and for a
// canceled ctx; whatever the server or the path did, including silence
// until Options.Timeout or ctx's deadline, is in the Result. On an error
// the Result holds what was learnt before it.
//
// Before returning, Probe sends an RST with seq = ISN+1 unless the server
// refused with an RST itself, so the server keeps no half-open connection.
func Probe(ctx context.Context, run func(func() error) error, src netip.Addr, dst netip.AddrPort, opts Options) (Result, error) {
	return probe(ctx, run, src, dst, opts, true)
}

// probe is Probe; reset false leaves the half-open connection in place, for
// the test that shows the probe's own RST is what removes it.
func probe(ctx context.Context, run func(func() error) error, src netip.Addr, dst netip.AddrPort, opts Options, reset bool) (res Result, err error) {
	res.Target = dst
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	src = src.Unmap()
	switch {
	case !dst.Addr().IsValid() || dst.Port() == 0:
		return res, fmt.Errorf("probe %s: need an address and a port", dst)
	case src.IsValid() && src.Is4() != dst.Addr().Is4():
		return res, fmt.Errorf("probe %s from %s: address families differ", dst, src)
	case opts.Retries < 0:
		return res, fmt.Errorf("probe %s: negative Retries %d", dst, opts.Retries)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("probe %s: %w", dst, err)
	}
	if run == nil {
		run = func(f func() error) error { return f() }
	}
	var c *conn
	if err := run(func() (err error) { c, err = openConn(src, dst, opts.SrcPort); return err }); err != nil {
		return res, fmt.Errorf("probe %s: %w", dst, err)
	}
	defer c.close()
	res.Source = c.local

	p := synParams{local: c.local, remote: c.remote, isn: rand.Uint32(), tsval: rand.Uint32(), mss: opts.MSS, experimental: opts.Experimental}
	if p.mss == 0 {
		p.mss = defaultMSS6
		if c.ipv4 {
			p.mss = defaultMSS4
		}
	}
	syn, err := buildSYN(p)
	if err != nil {
		return res, fmt.Errorf("probe %s: %w", dst, err)
	}
	if reset {
		defer func() {
			if res.RST {
				return // refused: the server holds nothing
			}
			rst, rerr := buildRST(c.local, c.remote, p.isn+1)
			if rerr == nil {
				rerr = c.send(rst)
			}
			if rerr != nil && err == nil {
				err = fmt.Errorf("probe %s: reset the half-open connection: %w", dst, rerr)
			}
		}()
	}

	var waited time.Duration
	for res.SYNs <= opts.Retries {
		sent := time.Now()
		if err := c.send(syn); err != nil {
			return res, fmt.Errorf("probe %s: SYN: %w", dst, err)
		}
		res.SYNs++
		deadline := sent.Add(opts.timeout())
		// The caller's deadline is a timeout like Options.Timeout. The read
		// deadline may fire before ctx's own timer marks it done, so note
		// which one bounds this wait rather than asking ctx afterwards.
		ctxBound := false
		if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
			deadline, ctxBound = d, true
		}
		r, at, ok, err := c.await(ctx, deadline, p.isn)
		waited += deadline.Sub(sent)
		var icmp icmpError
		switch {
		case ok:
			res.RTT = at.Sub(sent)
			judge(&res, r, opts.Experimental)
			return res, nil
		case errors.As(err, &icmp):
			res.Reason = icmp.Error()
			return res, nil
		case errors.Is(err, context.DeadlineExceeded) || (err == nil && ctxBound):
			res.Reason = noAnswer(waited, res.SYNs)
			return res, nil
		case err != nil:
			return res, fmt.Errorf("probe %s: %w", dst, err)
		}
	}
	res.Reason = noAnswer(waited, res.SYNs)
	return res, nil
}

func noAnswer(waited time.Duration, syns int) string {
	s := fmt.Sprintf("no answer within %v", waited.Round(time.Millisecond))
	if syns > 1 {
		s += fmt.Sprintf(" to %d SYNs", syns)
	}
	return s
}
