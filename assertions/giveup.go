package assertions

import (
	"fmt"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/observation"
)

// WakeSlack is how late after a kernel event the lab can witness it: the
// application's poller wakes on the socket error, or the counter poll runs.
// Measured here up to 148 ms past the model plus timer-wheel lateness with
// CPU hogs on both cores (docs/kernel-notes.md §10).
const WakeSlack = 250 * time.Millisecond

// schedule is the observation's SYN schedule with a socket's user timeout.
func schedule(o *observation.Observation, userTimeout time.Duration) (lab.SynSchedule, error) {
	if userTimeout == 0 {
		return o.SynSchedule, nil
	}
	return o.SynSchedule.WithUserTimeout(userTimeout)
}

// GaveUp expects the connection to have failed with ETIMEDOUT where the
// client's SYN timer model (its sysctls, and userTimeout as the socket's
// TCP_USER_TIMEOUT) says the socket gives up, after exactly the
// retransmissions the model predicts: no earlier than the give-up less a
// jiffy and less how early its own retransmissions went out, no later than
// the give-up plus the timer wheel's lateness plus WakeSlack.
func GaveUp(userTimeout time.Duration) ConnCheck {
	what := "the SYN timer model"
	if userTimeout > 0 {
		what = fmt.Sprintf("the SYN timer model with TCP_USER_TIMEOUT %v", userTimeout)
	}
	return ConnCheck{
		desc: "gave up with ETIMEDOUT when and after what " + what + " predicts",
		check: func(o *observation.Observation, i int) (bool, string) {
			s, err := schedule(o, userTimeout)
			if err != nil {
				return false, err.Error()
			}
			c := o.Conns[i]
			syns := o.ClientSYNs(i)
			lo, hi := s.GiveUpWindow()
			lo -= s.EarlyBy(packetTimes(syns))
			hi += WakeSlack
			switch {
			case c.Errno != "ETIMEDOUT":
				return false, fmt.Sprintf("ended with %q (errno %q), want ETIMEDOUT from the give-up at %v", c.Error, c.Errno, s.GiveUp)
			case len(syns) != 1+len(s.At):
				return false, fmt.Sprintf("sent %d SYNs, the model %d (the SYN and retransmissions at %v)\n%s", len(syns), 1+len(s.At), s.At, listPackets(o.ConnPackets(i, AtClient), -1, o.LinkOf(i, AtClient)))
			case c.FailedAt < lo || c.FailedAt > hi:
				return false, fmt.Sprintf("failed at %v, want in [%v, %v] (give-up at %v by the model)", c.FailedAt, lo, hi, s.GiveUp)
			}
			return true, fmt.Sprintf("gave up at %v after %d SYN retransmission(s); the model: %v", c.FailedAt.Round(time.Millisecond), len(s.At), s.GiveUp)
		},
	}.by("GaveUp", userTimeout)
}

// DetectedAtGiveUp expects blackhole detection k to have been seen where a
// TFO socket that gives up before (or at) its third timeout detects: at
// the model's give-up (tcp_write_timeout calls the detection with
// expired set), within the same bounds as GaveUp; userTimeout is the
// detecting socket's TCP_USER_TIMEOUT.
func DetectedAtGiveUp(k int, userTimeout time.Duration) obsMatcher {
	return obsMatcher{
		name: fmt.Sprintf("detection %d at the give-up", k),
		desc: fmt.Sprintf("blackhole detection %d came at the detecting socket's give-up, as the SYN timer model predicts", k),
		check: func(o *observation.Observation) (bool, string) {
			s, err := schedule(o, userTimeout)
			if err != nil {
				return false, err.Error()
			}
			dets := o.ConnsLabelled(observation.RoleDetect, k)
			if len(dets) == 0 {
				return false, fmt.Sprintf("no %s connection of round %d", observation.RoleDetect, k)
			}
			i := dets[len(dets)-1]
			m, ok := o.MarkOf(observation.MarkDetection, k)
			if !ok {
				return false, fmt.Sprintf("detection %d never seen (TCPFastOpenBlackhole did not move)\n%s", k, o.MarkSummary())
			}
			at := m.At.Sub(o.Conns[i].Start)
			lo, hi := s.GiveUpWindow()
			lo -= s.EarlyBy(packetTimes(o.ClientSYNs(i)))
			hi += WakeSlack
			if at < lo || at > hi {
				return false, fmt.Sprintf("seen %v after the detecting SYN, want in [%v, %v] (give-up at %v)", at, lo, hi, s.GiveUp)
			}
			return true, fmt.Sprintf("detection seen %v after the detecting SYN; the model's give-up: %v", at.Round(time.Millisecond), s.GiveUp)
		},
	}.by("DetectedAtGiveUp", k, userTimeout)
}

// DataRetransmittedBeforeDetection expects the connection's first data
// segment after the handshake to have been sent 1+min to 1+max times
// before blackhole detection k was seen: a TFO socket in ESTABLISHED also
// detects at its third retransmission timeout (icsk_retransmits == 2 in
// tcp_write_timeout); a tail-loss probe may add one copy first. It reports
// each copy's time after the first, to tell the probe from the RTOs.
func DataRetransmittedBeforeDetection(k, min, max int) ConnCheck {
	return ConnCheck{
		desc: fmt.Sprintf("its data after the handshake was retransmitted %d to %d times before detection %d was seen", min, max, k),
		check: func(o *observation.Observation, i int) (bool, string) {
			m, ok := o.MarkOf(observation.MarkDetection, k)
			if !ok {
				return false, fmt.Sprintf("detection %d never seen", k)
			}
			c := o.Conns[i]
			var copies []capture.Packet
			for _, p := range o.ConnPackets(i, AtClient) {
				if p.Src != c.Local || p.Flags.Has(capture.FlagSYN) || p.Length == 0 {
					continue
				}
				if len(copies) == 0 || p.Seq == copies[0].Seq {
					copies = append(copies, p)
				}
			}
			if len(copies) == 0 {
				return false, "no data segment after the handshake"
			}
			before := 0
			var gaps []time.Duration
			for _, p := range copies[1:] {
				gaps = append(gaps, p.Time.Sub(copies[0].Time).Round(time.Millisecond))
				if !p.Time.After(m.At) {
					before++
				}
			}
			figures := fmt.Sprintf("retransmissions at %v after the first copy; detection seen %v after it", gaps, m.At.Sub(copies[0].Time).Round(time.Millisecond))
			if before < min || before > max {
				return false, fmt.Sprintf("%d retransmissions before detection, want %d to %d: %s", before, min, max, figures)
			}
			return true, figures
		},
	}.by("DataRetransmittedBeforeDetection", k, min, max)
}
