package assertions

import (
	"fmt"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/observation"
)

// Checks of the socket API a scripted connection used (observation.Call):
// what each call returned, its errno, poll's events, tcp_info's state, as
// packetdrill scripts state them ("sendto(...) = -1 EINPROGRESS").

// ClientRST is the next RST the client sends.
func ClientRST() Step { return Step{fromClient: true, kind: KindRST}.by("ClientRST") }

// ServerRST is the next RST the server sends.
func ServerRST() Step { return Step{kind: KindRST}.by("ServerRST") }

// ClientFIN is the next FIN the client sends.
func ClientFIN() Step { return Step{fromClient: true, kind: KindFIN}.by("ClientFIN") }

// ServerFIN is the next FIN the server sends.
func ServerFIN() Step { return Step{kind: KindFIN}.by("ServerFIN") }

// findCall is the connection's call op made at side.
func findCall(c observation.Conn, side, op string) (observation.Call, bool) {
	for _, k := range c.Calls {
		if k.Side == side && k.Op == op {
			return k, true
		}
	}
	return observation.Call{}, false
}

// listCalls prints the connection's calls, the evidence of a failure.
func listCalls(c observation.Conn) string {
	var b strings.Builder
	b.WriteString("the connection's calls:\n")
	if len(c.Calls) == 0 {
		b.WriteString("  (none recorded)\n")
	}
	for _, k := range c.Calls {
		fmt.Fprintf(&b, "  %8.1f ms %s: %s = %d", float64(k.At.Microseconds())/1000, k.Side, k.Op, k.Ret)
		if k.Errno != "" {
			b.WriteString(" " + k.Errno)
		}
		if k.Detail != "" {
			b.WriteString(" (" + k.Detail + ")")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// callCheck is a check of the call op made at side.
func callCheck(side, op, desc string, ok func(k observation.Call) bool) ConnCheck {
	return ConnCheck{
		desc: fmt.Sprintf("%s %s %s", side, op, desc),
		check: func(o *observation.Observation, i int) (bool, string) {
			c := o.Conns[i]
			k, found := findCall(c, side, op)
			if !found {
				return false, fmt.Sprintf("no call %q at the %s\n%s", op, side, listCalls(c))
			}
			if !ok(k) {
				return false, fmt.Sprintf("got %d %s %s\n%s", k.Ret, k.Errno, k.Detail, listCalls(c))
			}
			return true, ""
		},
	}
}

// Returned expects the call op at side ("client" or "server") to have
// returned ret without an error.
func Returned(side, op string, ret int) ConnCheck {
	return callCheck(side, op, fmt.Sprintf("returned %d", ret), func(k observation.Call) bool {
		return k.Errno == "" && k.Ret == ret
	}).by("Returned", side, op, ret)
}

// FailedWith expects the call op at side to have failed with errno
// ("EINPROGRESS").
func FailedWith(side, op, errno string) ConnCheck {
	return callCheck(side, op, "failed with "+errno, func(k observation.Call) bool {
		return k.Ret == -1 && k.Errno == errno
	}).by("FailedWith", side, op, errno)
}

// Reported expects the call op at side to have succeeded and reported
// detail: poll's revents ("POLLOUT"), tcp_info's state ("CLOSE").
func Reported(side, op, detail string) ConnCheck {
	return callCheck(side, op, "reported "+detail, func(k observation.Call) bool {
		return k.Errno == "" && k.Detail == detail
	}).by("Reported", side, op, detail)
}

// OptionsHave expects the tcp_info call op at side to report tcpi_options
// with every bit of mask set (want) or none of them (!want).
func OptionsHave(side, op string, mask int, want bool) ConnCheck {
	return callCheck(side, op, fmt.Sprintf("tcpi_options %s 0x%x", wantDesc(want, "has", "lacks"), mask), func(k observation.Call) bool {
		return k.Errno == "" && (k.Ret&mask == mask) == want && (want || k.Ret&mask == 0)
	}).by("OptionsHave", side, op, mask, want)
}

// NoPackets expects the connection to have put no packet at all on the
// wire on side (a deferred connect that was never written to).
func NoPackets(side Side) ConnCheck {
	return onSide(side, "no packet at all", func(o *observation.Observation, i int, pkts []capture.Packet, link string) (bool, string) {
		if len(pkts) == 0 {
			return true, ""
		}
		return false, listPackets(pkts, 0, link)
	}).by("NoPackets", side)
}

// ServerSYN is the next SYN (without ACK) the server's end sends: a
// simultaneous open's crossing SYN.
func ServerSYN() Step { return Step{kind: KindSYN}.by("ServerSYN") }

// ClientSYNACK is the next SYN-ACK the client's end sends (simultaneous
// open).
func ClientSYNACK() Step { return Step{fromClient: true, kind: KindSYNACK}.by("ClientSYNACK") }

// ReturnedWithin expects the call op at side to have returned a value in
// [lo, hi] without an error (tcpi_rtt in microseconds, a byte count).
func ReturnedWithin(side, op string, lo, hi int) ConnCheck {
	return callCheck(side, op, fmt.Sprintf("returned a value in [%d, %d]", lo, hi), func(k observation.Call) bool {
		return k.Errno == "" && k.Ret >= lo && k.Ret <= hi
	}).by("ReturnedWithin", side, op, lo, hi)
}

// SynAckAcked expects the connection's SYN-ACK, on side, to acknowledge
// exactly n bytes of the client's SYN data (ack = ISN+1+n): a part of it,
// all of it, or none (n = 0).
func SynAckAcked(side Side, n int) ConnCheck {
	return onSide(side, fmt.Sprintf("the SYN-ACK acks %d bytes of the SYN's data", n), func(o *observation.Observation, i int, pkts []capture.Packet, link string) (bool, string) {
		syn, synack := o.Handshake(i, pkts)
		if syn == nil || synack == nil {
			return false, "no SYN and SYN-ACK captured\n" + listPackets(pkts, -1, link)
		}
		if got := int(synack.Ack - syn.Seq - 1); got != n {
			return false, fmt.Sprintf("it acks %d of the SYN's %d bytes\n%s", got, syn.Length, listPackets(pkts, -1, link))
		}
		return true, ""
	}).by("SynAckAcked", side, n)
}

// RTTSampleIsHandshake expects the client's tcp_info call op (tcpi_rtt,
// in µs) to be the handshake's round trip as the client's own capture
// timed it, SYN out to SYN-ACK in, within sampleSlack (both clocks are the
// client kernel's; the emulated path's scheduling delays, whatever they
// are, show on both alike), and that round trip to be the path's: at
// least pathRTT (the router's holds), less than twice it (a path held
// twice as long is not the one configured).
func RTTSampleIsHandshake(op string, pathRTT time.Duration) ConnCheck {
	desc := fmt.Sprintf("client %s is the handshake's round trip on the client's capture (within %v), itself in [%v, %v)", op, sampleSlack, pathRTT, 2*pathRTT)
	return ConnCheck{
		desc: desc,
		check: func(o *observation.Observation, i int) (bool, string) {
			c := o.Conns[i]
			k, found := findCall(c, "client", op)
			if !found || k.Errno != "" {
				return false, fmt.Sprintf("no successful call %q at the client\n%s", op, listCalls(c))
			}
			syn, synack := o.Handshake(i, o.ConnPackets(i, AtClient))
			if syn == nil || synack == nil {
				return false, "no SYN and SYN-ACK on the client's capture to time the round trip by"
			}
			wire := synack.Time.Sub(syn.Time)
			sample := time.Duration(k.Ret) * time.Microsecond
			detail := fmt.Sprintf("%s %v, the capture's SYN to SYN-ACK %v", op, sample, wire.Round(time.Microsecond))
			switch {
			case (sample - wire).Abs() > sampleSlack:
				return false, detail + ": not the handshake's round trip"
			case sample < pathRTT || sample >= 2*pathRTT:
				return false, fmt.Sprintf("%s: not the path's round trip of %v", detail, pathRTT)
			}
			return true, detail
		},
	}.by("RTTSampleIsHandshake", op, pathRTT)
}

// sampleSlack is how far a kernel RTT sample (µs stamps of the SYN's
// transmit and the SYN-ACK's receive) may sit from the capture's stamps of
// the same two packets (the packet taps beside them, same kernel clock).
const sampleSlack = time.Millisecond
