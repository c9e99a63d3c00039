package assertions

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/observation"
)

// Expectations that follow what the run was configured with rather than a
// fixed value: the report runs the catalogue under a user's sysctl profile
// and an emulated RTT, and these still say what must hold.

// MinEmulatedRTT is the smallest round trip a saving can be measured
// against: below it the saving (tens of microseconds on bare veths) is
// lost in the lab's scheduling noise.
const MinEmulatedRTT = 10 * time.Millisecond

// Saving is what TFO saved one connection against another, on the wire.
type Saving struct {
	// RTT is the plain connection's handshake round trip on the wire.
	RTT time.Duration
	// Plain and TFO are each connection's time from its first SYN to the
	// first byte of the reply arriving, on the client link, less the
	// applications' think time: the client's between the handshake's end
	// and its request (plain only: TFO's request is in the SYN), and the
	// server's between the request's arrival and the reply, on the server
	// link. What is left is the protocol's: round trips.
	Plain, TFO time.Duration
	// FirstBytePlain and FirstByteTFO are the first bytes as the
	// application measured them, think time and all.
	FirstBytePlain, FirstByteTFO time.Duration
}

// Saved is Plain − TFO.
func (s Saving) Saved() time.Duration { return s.Plain - s.TFO }

// RTTs is Saved in round trips.
func (s Saving) RTTs() float64 { return float64(s.Saved()) / float64(s.RTT) }

// landmarks are a connection's moments on one link: its first SYN, the
// first SYN-ACK, its first segment with data (the SYN itself, with TFO),
// and the first data segment of the reply.
type landmarks struct{ syn, synack, request, reply time.Time }

func landmarksOf(o *observation.Observation, i int, side Side) landmarks {
	var l landmarks
	c := o.Conns[i]
	for _, p := range o.ConnPackets(i, side) {
		fromClient := p.Src == c.Local
		if l.syn.IsZero() && p.IsSYN() && fromClient {
			l.syn = p.Time
		}
		if l.synack.IsZero() && p.IsSYNACK() && !fromClient {
			l.synack = p.Time
		}
		if l.request.IsZero() && fromClient && p.HasPayload() {
			l.request = p.Time
		}
		if l.reply.IsZero() && !fromClient && p.HasPayload() {
			l.reply = p.Time
		}
	}
	return l
}

// wire is connection i's time to its reply on the wire, without either
// application's think time (see Saving), and its handshake RTT.
func wire(o *observation.Observation, i int) (reply, rtt time.Duration, err error) {
	cl, sv := landmarksOf(o, i, AtClient), landmarksOf(o, i, AtServer)
	for _, t := range []time.Time{cl.syn, cl.synack, cl.request, cl.reply, sv.request, sv.reply} {
		if t.IsZero() {
			return 0, 0, fmt.Errorf("connection %d: the captures lack a SYN, SYN-ACK, request or reply to measure on the wire", i)
		}
	}
	reply = cl.reply.Sub(cl.syn) - sv.reply.Sub(sv.request)
	if cl.request.After(cl.synack) { // the request went after the handshake
		reply -= cl.request.Sub(cl.synack)
	}
	return reply, cl.synack.Sub(cl.syn), nil
}

// SavingOf measures what connection tfo saved against connection plain.
func SavingOf(o *observation.Observation, plain, tfo int) (Saving, error) {
	if plain >= len(o.Conns) || tfo >= len(o.Conns) {
		return Saving{}, fmt.Errorf("the workload made %d connections", len(o.Conns))
	}
	p, t := o.Conns[plain], o.Conns[tfo]
	if p.Failed() || t.Failed() {
		return Saving{}, errors.New("a connection failed")
	}
	pw, rtt, err := wire(o, plain)
	if err != nil {
		return Saving{}, err
	}
	tw, _, err := wire(o, tfo)
	if err != nil {
		return Saving{}, err
	}
	return Saving{RTT: rtt, Plain: pw, TFO: tw, FirstBytePlain: p.FirstByte, FirstByteTFO: t.FirstByte}, nil
}

// SavesOneRTT expects TFO to save one round trip in time to first byte
// (RFC 7413 §1): connection tfo (data in its SYN) gets its reply one
// handshake RTT earlier than connection plain (request after the
// handshake), to within a fifth of that RTT, on the wire (SavingOf). The
// RTT is the plain connection's own and must be an emulated one (at least
// MinEmulatedRTT): the claim is about the round trip, so it needs one.
func SavesOneRTT(plain, tfo int) obsMatcher {
	return obsMatcher{
		name: "TFO saving",
		desc: fmt.Sprintf("connection %d (TFO) gets its reply one RTT (± 20 %%) earlier than connection %d (plain handshake), on the wire, on a path of at least %v", tfo, plain, MinEmulatedRTT),
		check: func(o *observation.Observation) (bool, string) {
			s, err := SavingOf(o, plain, tfo)
			if err != nil {
				return false, fmt.Sprintf("%v\n%s", err, o.ConnSummary())
			}
			r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
			msg := fmt.Sprintf("reply on the wire, without the applications' think time: TFO %v, plain %v: TFO saves %v = %.2f RTT (RTT %v on the wire; the application saw first bytes at %v and %v)",
				r(s.TFO), r(s.Plain), r(s.Saved()), s.RTTs(), r(s.RTT), r(s.FirstByteTFO), r(s.FirstBytePlain))
			switch {
			case s.RTT < MinEmulatedRTT:
				return false, msg + fmt.Sprintf(": the path's RTT is under %v: no emulated RTT (delay middlebox) to measure a saving against", MinEmulatedRTT)
			case s.Saved() < s.RTT-s.RTT/5 || s.Saved() > s.RTT+s.RTT/5:
				return false, msg + ": want one RTT ± 20 %"
			}
			return true, msg
		},
	}.by("SavesOneRTT", plain, tfo)
}

// BlackholeTimeoutKey is the sysctl that turns blackhole detection on.
const BlackholeTimeoutKey = "net.ipv4.tcp_fastopen_blackhole_timeout_sec"

// BlackholeTimeoutOf reads node's effective blackhole timeout from the
// observation (0: detection off).
func BlackholeTimeoutOf(o *observation.Observation, node string) (time.Duration, error) {
	n, ok := o.Nodes[node]
	if !ok {
		return 0, fmt.Errorf("no node %q in the observation", node)
	}
	v, ok := n.Sysctls[BlackholeTimeoutKey]
	if !ok {
		return 0, fmt.Errorf("%s of %s not recorded", BlackholeTimeoutKey, node)
	}
	s, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || s < 0 {
		return 0, fmt.Errorf("%s of %s is %q", BlackholeTimeoutKey, node, v)
	}
	return time.Duration(s) * time.Second, nil
}

// PausesFollowSysctl expects blackhole detection to do what node's own
// tcp_fastopen_blackhole_timeout_sec says, whoever set it (the namespace's
// default, the scenario, a profile):
//
//   - 0: nothing is detected (TCPFastOpenBlackhole +0) and every
//     observation.RoleDetect connection stalls, TFO tried again each time;
//   - T > 0: every RoleDetect connection is detected (a MarkDetection
//     mark per round, the counter up by as many), the "during" connection
//     of each round goes out as a plain SYN and is served, and pause k,
//     where probed (observation.RoleProbe), lasts T·2^(k−1) (PauseLasted,
//     with maxGap its resolution).
func PausesFollowSysctl(node string, maxGap time.Duration) obsMatcher {
	return obsMatcher{
		name: "pauses as configured",
		desc: fmt.Sprintf("blackhole detection does what %s's %s says: 0 detects nothing and every %q connection stalls; T pauses T, 2T, 4T", node, BlackholeTimeoutKey, observation.RoleDetect),
		check: func(o *observation.Observation) (bool, string) {
			T, err := BlackholeTimeoutOf(o, node)
			if err != nil {
				return false, err.Error()
			}
			dets := o.ConnsLabelled(observation.RoleDetect, 0)
			if len(dets) == 0 {
				return false, fmt.Sprintf("no %q connection was made\n%s", observation.RoleDetect, o.ConnSummary())
			}
			got, ok := o.Counters(node).Get(lab.TCPFastOpenBlackhole)
			if !ok {
				return false, "TCPFastOpenBlackhole not counted on " + node
			}
			marks := 0
			for _, m := range o.Marks {
				if m.Name == observation.MarkDetection {
					marks++
				}
			}
			if T == 0 {
				if got != 0 || marks != 0 {
					return false, fmt.Sprintf("detection off, yet TCPFastOpenBlackhole %+d and %d detection marks\n%s", got, marks, o.ConnSummary())
				}
				for _, i := range dets {
					if !o.Conns[i].Stalled {
						return false, fmt.Sprintf("detection off: connection %d [%s %d] did not stall\n%s", i, o.Conns[i].Label, o.Conns[i].Round, o.ConnSummary())
					}
				}
				return true, fmt.Sprintf("timeout 0 (detection off): never paused, all %d connections into the hole stalled", len(dets))
			}
			if int64(marks) != got || marks != len(dets) {
				return false, fmt.Sprintf("timeout %v: %d %q connections, %d detections seen, TCPFastOpenBlackhole %+d: want one detection each\n%s%s",
					T, len(dets), observation.RoleDetect, marks, got, o.ConnSummary(), o.MarkSummary())
			}
			during := Labelled("during",
				Dialogue(AtClient, ClientSYN().WithoutFastOpen().WithoutPayload()),
				SynDataAcked(false),
				Responded())
			if ok, detail := during.check(o); !ok {
				return false, fmt.Sprintf("timeout %v: a connection during a pause: %s", T, detail)
			}
			var measured []string
			for k := 1; k <= marks; k++ {
				if len(o.ConnsLabelled(observation.RoleProbe, k)) == 0 {
					continue // not probed: it outlasts the run
				}
				ok, detail := PauseLasted(k, T<<(k-1), maxGap).check(o)
				if !ok {
					return false, fmt.Sprintf("timeout %v: pause %d: %s", T, k, detail)
				}
				measured = append(measured, detail)
			}
			return true, fmt.Sprintf("timeout %v: %d detections\n%s", T, marks, strings.Join(measured, "\n"))
		},
	}.by("PausesFollowSysctl", node, maxGap)
}
