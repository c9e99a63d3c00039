package scenarios

import (
	"fmt"
	"strings"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"

	. "github.com/tfolab/tfolab/assertions"
)

// Middleboxes is the middlebox catalogue's scenarios (issue: middlebox
// catalogue; more behaviours join here).
func Middleboxes() []Scenario {
	var out []Scenario
	for _, fam := range []topology.Family{topology.IPv4, topology.IPv6} {
		for _, mode := range []tfo.Mode{tfo.ModeSendto, tfo.ModeConnect} {
			out = append(out, DropSynData(fam, mode))
		}
	}
	return out
}

func mustMiddlebox(name string) middlebox.Middlebox {
	mb, ok := middlebox.ByName(name)
	if !ok {
		// The catalogue is static: a missing name is a programming error
		// caught by the first test run, so report it loudly in the rules.
		return middlebox.Middlebox{Name: name, Rules: func(topology.Family, middlebox.Params) ([]middlebox.Rule, error) {
			return nil, fmt.Errorf("no middlebox named %q", name)
		}}
	}
	return mb
}

// DropSynData: a router that silently drops SYNs carrying payload. The
// cookie request (no payload) passes, so the client learns a cookie; every
// later connection sends SYN+cookie+data, loses it, and after one initial
// RTO retransmits a plain SYN (no option 34, no data), which passes; the
// data follows the handshake. The kernel keeps trying TFO on each new
// connection and pays the RTO every time: no blackhole detection fires,
// because only one timeout happens per connection.
func DropSynData(fam topology.Family, mode tfo.Mode) Scenario {
	fallback := []ConnCheck{
		Dialogue("client",
			ClientSYN().WithCookie().WithPayload(payloadLen),
			ClientSYN().WithoutFastOpen().WithoutPayload(),
			ServerSYNACK().AckingSYNOnly(),
			ClientData().WithPayload(payloadLen)),
		NoPacket("server", ClientSYN().WithPayload(payloadLen)),
		Dialogue("server", ClientSYN().WithoutFastOpen().WithoutPayload()),
		SynDataAcked(false),
		ClientFail(tfo.ClientFailSynRetransmitted),
		Responded(),
		FirstByteAfterSynRetransmissions(1),
	}
	return Scenario{
		Name:        fmt.Sprintf("middlebox/drop-syn-data/routed/%s/%s", strings.ToLower(fam.String()), mode),
		Description: "router drops SYNs with payload: each TFO connection falls back after one RTO, and the next tries TFO again",
		Labels:      []string{"middlebox", "routed", strings.ToLower(fam.String())},
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls: map[string]map[string]string{
			topology.Client: {"net.ipv4.tcp_fastopen": tfoClient},
			topology.Server: {"net.ipv4.tcp_fastopen": tfoServer},
		},
		Server:    Server{FastOpenQueue: serverQueue},
		Middlebox: &MiddleboxSpec{Box: mustMiddlebox("drop-syn-data")},
		Workload:  Workload{Mode: mode, Connections: 3},
		Expect: []types.GomegaMatcher{
			Conn(0,
				Dialogue("client",
					ClientSYN().WithCookieRequest().WithoutPayload(),
					ServerSYNACK().WithCookie()),
				Responded(),
				FirstByteAfterSynRetransmissions(0)),
			Conn(1, fallback...),
			Conn(2, fallback...),
			MiddleboxMatched(2),
			CountersOf(topology.Client, HaveCounterDeltas(
				Delta(lab.TCPFastOpenActive, 0),
				Delta(lab.TCPFastOpenActiveFail, 2),
				Delta(lab.TCPSynRetrans, 2),
				Delta(lab.TCPFastOpenBlackhole, 0))),
			CountersOf(topology.Server, HaveCounterDeltas(
				Delta(lab.TCPFastOpenPassive, 0),
				Delta(lab.TCPFastOpenCookieReqd, 1))),
			CookieCached(topology.Client, true),
		},
	}
}
