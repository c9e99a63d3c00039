package assertions

// The probe (lab/probe) judged by the captures on both ends: Diagnose
// tells why a probe answered as it did (the CLI's `tfolab probe` prints
// it), and the probe matchers hold a scenario's probes to it.

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/probe"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/lab/tfocookie"
	"github.com/tfolab/tfolab/observation"
)

// ProbeCause is what the captures on both ends say about a probe's answer.
type ProbeCause string

// The causes Diagnose tells apart.
const (
	CauseOffered        ProbeCause = "the server offered a cookie and it reached the client"
	CauseServerOff      ProbeCause = "the SYN reached the server with its cookie request and the server answered without a TFO option: TFO is off on the server (or on that listener)"
	CauseStrippedOnWay  ProbeCause = "the SYN left the client with its cookie request and reached the server without it: a middlebox on the path stripped the option"
	CauseStrippedBack   ProbeCause = "the server's SYN-ACK left with a cookie and reached the client without it: a middlebox on the way back stripped the option"
	CauseRefused        ProbeCause = "the server refused the connection (RST)"
	CauseNoAnswer       ProbeCause = "no answer reached the client"
	CauseNoServerCopy   ProbeCause = "no server's capture saw the probe's SYN"
	CauseUnknownAtProbe ProbeCause = "the probe's own answer disagrees with the captures"
)

// Diagnose tells why probe i of the observation answered as it did, from
// the captures on the client's side and on the server that got the SYN,
// and names that server ("" if none saw it).
func Diagnose(o *observation.Observation, i int) (ProbeCause, string) {
	if i < 0 || i >= len(o.Probes) {
		return CauseNoAnswer, ""
	}
	r := o.Probes[i]
	client, server := probeSeen(o, r)
	switch {
	case r.RST:
		return CauseRefused, server.node
	case !r.Answered:
		return CauseNoAnswer, server.node
	case r.SupportsTFO:
		return CauseOffered, server.node
	case server.syn == nil:
		return CauseNoServerCopy, ""
	case client.syn.FastOpen != nil && server.syn.FastOpen == nil:
		return CauseStrippedOnWay, server.node
	case server.synack != nil && server.synack.FastOpen != nil && !server.synack.FastOpen.IsRequest() &&
		(client.synack == nil || client.synack.FastOpen == nil):
		return CauseStrippedBack, server.node
	case server.syn.FastOpen != nil && server.synack != nil && server.synack.FastOpen == nil:
		return CauseServerOff, server.node
	}
	return CauseUnknownAtProbe, server.node
}

// probeView is one capture's view of a probe: its packets, its SYN and the
// SYN-ACK to it.
type probeView struct {
	node, link  string
	syn, synack *capture.Packet
	packets     []capture.Packet
}

// probeSeen finds the probe on the captures: the client's side is the one
// that saw its SYN first (the SYN leaves there), the server's the one that
// saw it last; with a single capture, the server's view is empty.
func probeSeen(o *observation.Observation, r probe.Result) (client, server probeView) {
	var views []probeView
	for _, key := range o.LinkNames() {
		l := o.Links[key]
		v := probeView{node: l.Node, link: key}
		for _, p := range l.Packets {
			if (p.Src == r.Source && p.Dst == r.Target) || (p.Src == r.Target && p.Dst == r.Source) {
				v.packets = append(v.packets, p)
			}
		}
		for k := range v.packets {
			p := &v.packets[k]
			if v.syn == nil && p.IsSYN() && p.Src == r.Source {
				v.syn = p
			}
			if v.syn != nil && v.synack == nil && p.IsSYNACK() && p.Src == r.Target {
				v.synack = p
			}
		}
		if v.syn != nil {
			views = append(views, v)
		}
	}
	if len(views) == 0 {
		return probeView{}, probeView{}
	}
	sort.SliceStable(views, func(a, b int) bool { return views[a].syn.Time.Before(views[b].syn.Time) })
	client = views[0]
	if len(views) > 1 {
		server = views[len(views)-1]
	}
	return client, server
}

// ProbeSaid expects probe i to have said the server supports TFO (want) or
// not, and its captures to give cause as the reason.
func ProbeSaid(i int, want bool, cause ProbeCause) obsMatcher {
	return obsMatcher{
		name: fmt.Sprintf("probe %d", i),
		desc: fmt.Sprintf("probe %d says %s: %s", i, wantDesc(want, "yes", "no"), cause),
		check: onProbe(i, func(o *observation.Observation, r probe.Result) (bool, string) {
			got, server := Diagnose(o, i)
			if r.SupportsTFO != want || got != cause {
				return false, fmt.Sprintf("probe: %s\ncaptures (server %q): %s\n%s", r, server, got, o.PacketSummary())
			}
			return true, ""
		}),
	}.by("ProbeSaid", i, want, cause)
}

// ProbeCookie expects probe i's cookie to be the one key makes for the
// probe's addresses: the cookie every server holding key hands out.
func ProbeCookie(i int, key tfo.Key) obsMatcher {
	return obsMatcher{
		name: fmt.Sprintf("probe %d cookie", i),
		desc: fmt.Sprintf("probe %d's cookie is SipHash-2-4(the pool's key, client, service)", i),
		check: onProbe(i, func(o *observation.Observation, r probe.Result) (bool, string) {
			want := tfocookie.Make(key.Primary, r.Source.Addr(), r.Target.Addr())
			if !bytes.Equal(r.Cookie, want) {
				return false, fmt.Sprintf("probe: %s; want cookie %x", r, want)
			}
			return true, ""
		}),
	}.by("ProbeCookie", i, key)
}

// ProbeReset expects the server that got probe i's SYN to have seen an RST
// for it after its SYN-ACK (the client kernel's or the probe's own): the
// half-open connection is gone on both ends.
func ProbeReset(i int) obsMatcher {
	return obsMatcher{
		name: fmt.Sprintf("probe %d reset", i),
		desc: fmt.Sprintf("the server that answered probe %d saw an RST for it: no half-open connection is left", i),
		check: onProbe(i, func(o *observation.Observation, r probe.Result) (bool, string) {
			_, server := probeSeen(o, r)
			if server.synack == nil {
				return false, fmt.Sprintf("no server capture saw a SYN-ACK to the probe (%s)", r)
			}
			for _, p := range server.packets {
				if p.IsRST() && p.Src == r.Source && !p.Time.Before(server.synack.Time) {
					return true, ""
				}
			}
			return false, fmt.Sprintf("no RST from %s reached %s after its SYN-ACK\n%s", r.Source, server.node, listPackets(server.packets, -1, server.link))
		}),
	}.by("ProbeReset", i)
}

// onProbe is a check of probe i of the timeline (its i-th lab/probe
// result): one that was never made fails it.
func onProbe(i int, check func(o *observation.Observation, r probe.Result) (bool, string)) func(o *observation.Observation) (bool, string) {
	return func(o *observation.Observation) (bool, string) {
		if i >= len(o.Probes) {
			return false, fmt.Sprintf("the timeline made %d probes", len(o.Probes))
		}
		return check(o, o.Probes[i])
	}
}
