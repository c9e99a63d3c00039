package assertions

import (
	"fmt"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/observation"
)

// Labelled applies checks to every connection the timeline labelled label,
// whatever its round. At least one such connection must exist.
func Labelled(label string, checks ...ConnCheck) obsMatcher {
	return obsMatcher{
		name: fmt.Sprintf("%q connections", label),
		desc: fmt.Sprintf("every %q connection: %s", label, descs(checks)),
		check: func(o *observation.Observation) (bool, string) {
			n := 0
			var all []string
			for i, c := range o.Conns {
				if c.Label != label {
					continue
				}
				n++
				ok, failure, measured := checkConn(o, i, checks)
				if !ok {
					return false, fmt.Sprintf("connection %d [%s %d]: %s", i, c.Label, c.Round, failure)
				}
				for _, m := range measured {
					all = append(all, fmt.Sprintf("connection %d [%s %d]: %s", i, c.Label, c.Round, m))
				}
			}
			if n == 0 {
				return false, fmt.Sprintf("no %q connection was made\n%s", label, o.ConnSummary())
			}
			return true, strings.Join(all, "\n")
		},
	}.by("Labelled", label, checks)
}

// packetTimes returns the capture times of pkts.
func packetTimes(pkts []capture.Packet) []time.Time {
	out := make([]time.Time, len(pkts))
	for i, p := range pkts {
		out[i] = p.Time
	}
	return out
}

// ClockSlack is how stale the kernel's jiffies may be when a probe is
// decided: a vCPU of this VM that missed ticks reads an old jiffies value
// and sees the pause as still on (a pause that looked 39 ms too long was
// measured). It widens only the "still paused" side.
const ClockSlack = 100 * time.Millisecond

// PauseLasted expects the k-th blackhole detection (the connection with
// role observation.RoleDetect, round k) to have paused active TFO for want, measured on the
// client link's clock:
//
//   - the stamp is not observed, only bounded: no later than its
//     witnesses, the 3rd SYN retransmission on the capture (the kernel
//     detects at the 3rd consecutive RTO, icsk_retransmits == 2, stamps
//     jiffies and then retransmits in the same timer callback) and the
//     lab's counter poll; no earlier than the first SYN plus three RTOs,
//     less a jiffy each and less how early the connection's own
//     retransmissions went out (lab.SynSchedule.EarlyBy: a timer armed
//     from lagging jiffies fires early on the wire);
//   - the pause ends when jiffies reach stamp + want·HZ, so within
//     (stamp + want − 1 jiffy, stamp + want] in wall time;
//   - the RoleProbe connections of round k bracket that end: the last one whose SYN
//     went out without option 34 (dated by its start) and the first one
//     whose SYN carried a cookie (dated on the wire). The bracket must be tighter than maxGap (the lab's own
//     timing resolution) for the measurement to mean anything.
func PauseLasted(k int, want, maxGap time.Duration) obsMatcher {
	return obsMatcher{
		name: fmt.Sprintf("pause %d", k),
		desc: fmt.Sprintf("detection %d paused active TFO for %v (± 1 jiffy around the stamp's bounds, + %v stale jiffies; probes ≤ %v apart)", k, want, ClockSlack, maxGap),
		check: func(o *observation.Observation) (bool, string) {
			dets := o.ConnsLabelled(observation.RoleDetect, k)
			if len(dets) == 0 {
				return false, fmt.Sprintf("no %s connection of round %d\n%s", observation.RoleDetect, k, o.ConnSummary())
			}
			det := dets[len(dets)-1]
			syns := o.ClientSYNs(det)
			if len(syns) < 4 {
				return false, fmt.Sprintf("%s %d sent %d SYNs, want the SYN and 3 retransmissions\n%s", observation.RoleDetect, k, len(syns), listPackets(o.ConnPackets(det, AtClient), -1, o.LinkOf(det, AtClient)))
			}
			// Both witnesses come after the stamp: take the earlier.
			earliest := syns[0].Time.Add(o.SynSchedule.DetectionAt() - 3*lab.Jiffy - o.SynSchedule.EarlyBy(packetTimes(syns)))
			stamp := syns[3].Time
			if m, ok := o.MarkOf(observation.MarkDetection, k); ok && m.At.Before(stamp) {
				stamp = m.At
			}
			// The last plain probe is dated by its Start (taken before
			// sendto, so before the kernel's decision), the first TFO probe
			// by its SYN on the wire (after the decision): the bracket can
			// only widen, never wrongly shrink, when the VM hiccups. Probes
			// overlap, so order them by those dates, not by completion.
			var lastPlainStart time.Time
			var firstTFO *capture.Packet
			probes := 0
			for _, i := range o.ConnsLabelled(observation.RoleProbe, k) {
				c := o.Conns[i]
				probes++
				s := o.ClientSYNs(i)
				if len(s) == 0 {
					return false, fmt.Sprintf("probe connection %d: no SYN captured", i)
				}
				syn := s[0]
				if syn.FastOpen == nil {
					if c.Start.After(lastPlainStart) {
						lastPlainStart = c.Start
					}
				} else if firstTFO == nil || syn.Time.Before(firstTFO.Time) {
					firstTFO = &syn
				}
			}
			if lastPlainStart.IsZero() {
				return false, fmt.Sprintf("no probe saw the pause (all %d used TFO)", probes)
			}
			if firstTFO == nil {
				return false, fmt.Sprintf("no probe used TFO again: last plain probe %v after the stamp, want the pause over after %v", lastPlainStart.Sub(stamp), want)
			}
			if lastPlainStart.After(firstTFO.Time) {
				return false, fmt.Sprintf("a probe started %v after the stamp went out plain after one had used TFO at %v: the pause came back", lastPlainStart.Sub(stamp), firstTFO.Time.Sub(stamp))
			}
			lo, hi := lastPlainStart.Sub(stamp), firstTFO.Time.Sub(stamp)
			msg := fmt.Sprintf("pause ended between %v and %v after the stamp's witness (3rd SYN retransmission at %s; the stamp is no earlier than %v before it)", lo, hi, stamp.Format("15:04:05.000000"), stamp.Sub(earliest))
			switch {
			case hi-lo > maxGap:
				return false, msg + fmt.Sprintf(": probes %v apart, too coarse to measure (want ≤ %v)", hi-lo, maxGap)
			case lo >= want+lab.Jiffy+ClockSlack:
				return false, msg + fmt.Sprintf(": still paused at %v, want over by %v + 1 jiffy + %v clock slack", lo, want, ClockSlack)
			case firstTFO.Time.Sub(earliest) <= want-lab.Jiffy:
				return false, msg + fmt.Sprintf(": TFO back %v after the earliest possible stamp, want paused for %v − 1 jiffy", firstTFO.Time.Sub(earliest), want)
			}
			return true, fmt.Sprintf("detection %d: pause of %v expected; it ended between %v and %v after the stamp's witness (stamp no earlier than %v before it; %d probes)",
				k, want, lo.Round(time.Millisecond), hi.Round(time.Millisecond), stamp.Sub(earliest).Round(time.Millisecond), probes)
		},
	}.by("PauseLasted", k, want, maxGap)
}

// Completed expects the connection to have ended cleanly (no error), whatever
// the server replied.
func Completed() ConnCheck {
	return ConnCheck{
		desc: "completed without error",
		check: func(o *observation.Observation, i int) (bool, string) {
			if c := o.Conns[i]; c.Failed() {
				return false, c.Error
			}
			return true, ""
		},
	}.by("Completed")
}
