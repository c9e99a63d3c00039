package firewall

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/observation"
)

// What a ruleset's ICMP errors do to TFO, read from a TCP capture that
// shows none of them: the client's kernel acts on the error at once.

// tcpRTOMin is TCP_RTO_MIN (include/net/tcp.h: HZ/5): no retransmission
// timer of the kernel fires sooner, so a SYN retransmitted before it was
// sent by something else.
const tcpRTOMin = 200 * time.Millisecond

// tooBigRetransmit reports a SYN with data followed, before any timer
// could fire, by a plain SYN without data: the kernel's answer to ICMP
// fragmentation needed (IPv4) or packet too big (IPv6) in SYN-SENT. In
// tcp_v4_err/tcp_v6_err the path MTU drops, and tcp_simple_retransmit
// marks every queued segment of a fast-open SYN lost (since 5.14; before,
// the socket waited for its RTO) and sends the SYN again at once, without
// its data, which follows the handshake at the new MSS.
func tooBigRetransmit(syns []capture.Packet) (time.Duration, bool) {
	if len(syns) < 2 || syns[0].Length == 0 || syns[1].Length != 0 || syns[1].FastOpen != nil {
		return 0, false
	}
	after := syns[1].Time.Sub(syns[0].Time)
	return after, after < tcpRTOMin
}

// refusedHow says, for the refused connections, what refused them: a RST
// in the client's capture, or nothing TCP at all (an ICMP error: REJECT
// with an icmp-* type; the capture holds TCP only).
func (f *Finding) refusedHow(obs *observation.Observation) {
	var byRST, byICMP []string
	errnos := map[string]bool{}
	for _, fact := range f.Conns {
		if fact.Outcome != Refused {
			continue
		}
		rst := false
		for _, p := range obs.ConnPackets(fact.Index, observation.ClientSide) {
			if p.IsRST() && p.Dst == obs.Conns[fact.Index].Local {
				rst = true
			}
		}
		if rst {
			byRST = append(byRST, fmt.Sprint(fact.Index))
		} else {
			byICMP = append(byICMP, fmt.Sprint(fact.Index))
			errnos[obs.Conns[fact.Index].Errno] = true
		}
	}
	if len(byRST) > 0 {
		f.Notes = append(f.Notes, fmt.Sprintf("a RST answered the SYN of connection(s) %s: the application got ECONNREFUSED, no fallback", strings.Join(byRST, ", ")))
	}
	if len(byICMP) > 0 {
		f.Notes = append(f.Notes, fmt.Sprintf("no TCP answer came to the SYN of connection(s) %s, yet they failed at once with %s: an ICMP error refused them (REJECT with an icmp type; in SYN-SENT the kernel takes destination-unreachable as fatal), no fallback",
			strings.Join(byICMP, ", "), strings.Join(slices.Sorted(maps.Keys(errnos)), ", ")))
	}
}

func tooBig(syns []capture.Packet) bool { _, ok := tooBigRetransmit(syns); return ok }

// tooBigNote is the connection's note when tooBig holds.
func tooBigNote(syns []capture.Packet) string {
	after, _ := tooBigRetransmit(syns)
	return fmt.Sprintf("fragmentation needed: its SYN with data went again without the data after %s, before any retransmission timer (an ICMP fragmentation-needed / packet-too-big from a hop whose MTU is below the data SYN); TFO lost, no RTO paid", after.Round(time.Microsecond))
}
