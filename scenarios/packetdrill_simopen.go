package scenarios

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"
	"golang.org/x/sys/unix"

	. "github.com/tfolab/tfolab/assertions"
)

// Ports of the simultaneous open: each end binds its own and sends to the
// other's.
const (
	simServerPort = 7100
	simClientPort = 7101
)

// simOneWay is the router's hold on every packet: long enough that both
// ends are in SYN-SENT when the other's SYN arrives.
const simOneWay = 40 * time.Millisecond

// SimultaneousFastOpen is simultaneous-fast-open.pkt with two real ends:
// both send a SYN with data (no-cookie mode, 0x5, on both nodes) to the
// other's bound port, the router holds the SYNs until both are in
// SYN-SENT, so they cross. Linux does not take data from a crossing SYN:
// each end answers with a SYN-ACK that acks only the other's SYN, both
// connections are established, and each end sends its data again.
func SimultaneousFastOpen(fam topology.Family) Scenario {
	return simultaneousFastOpen(fam, true)
}

func simultaneousFastOpen(fam topology.Family, delayed bool) Scenario {
	s := Scenario{
		Name:        fmt.Sprintf("packetdrill/client/simultaneous-open/%s", strings.ToLower(fam.String())),
		Description: "both ends send a SYN with data to each other, the SYNs cross: established, each SYN's data sent again",
		Labels:      append([]string{"packetdrill", "routed", strings.ToLower(fam.String())}, "client"),
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     tfoSysctls(tfoClientNoCookie, tfoClientNoCookie),
		Services:    []Service{{Kind: newScriptedListener(0, 0)}},
		Clients:     []Client{{Kind: LabClient{Mode: tfo.ModeSendto}}},
		Timeout:     5 * time.Second,
	}
	if delayed {
		s.Middleboxes = []MiddleboxSpec{{Box: middlebox.Delay(simOneWay)}}
	}
	s.Script(SimultaneousTimeline())
	n := len(pdPayload)
	s.Expect = []types.GomegaMatcher{
		Labelled("simultaneous",
			Returned("client", "sendto", n),
			Returned("server", "sendto", n),
			Dialogue(AtClient,
				ClientSYN().WithoutFastOpen().WithPayload(n),
				ServerSYN().WithPayload(n),
				ClientSYNACK().WithoutPayload(),
				ServerSYNACK().AckingSYNOnly().WithoutPayload()),
			Dialogue(AtClient, ClientSYN(), ClientData().WithPayload(n)),
			Dialogue(AtClient, ServerSYN(), ServerData().WithPayload(n)),
			Reported("client", "poll", "POLLOUT"),
			Reported("server", "poll", "POLLOUT"),
			Returned("client", "read", n),
			Returned("server", "read", n),
			OptionsHave("client", "tcp_info", tcpiOptSynData, false),
			OptionsHave("server", "tcp_info", tcpiOptSynData, false)),
	}
	// The diagnoser knows no simultaneous open: each end's SYN meets the
	// other's SYN, never a SYN-ACK to it, so it reads one direction.
	s.Diagnosis = diagnosed(diagnose.Inconclusive)
	return s
}

// SimultaneousTimeline is SimultaneousFastOpen's: both ends connect to
// each other at once.
func SimultaneousTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		topo, fam := env.site.Topo, env.site.Family
		a, err := topo.Addr(topology.Client, fam)
		if err != nil {
			return err
		}
		b, err := topo.ServiceAddr(topology.Server, fam)
		if err != nil {
			return err
		}
		pa, pb := netip.AddrPortFrom(a, simClientPort), netip.AddrPortFrom(b, simServerPort)
		c := &apiConn{env: env, label: "simultaneous", remote: pb, start: time.Now()}
		if c.cli, err = tfo.NewSock(env.Client().Runner(), b, false); err != nil {
			return err
		}
		if c.srv, err = tfo.NewSock(topo.Namespace(topology.Server).Runner(), a, false); err != nil {
			c.cli.Close("close")
			return err
		}
		payload := []byte(pdPayload)
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Bind("bind", pa) })
		c.server(func(s *tfo.Sock) tfo.CallResult { return s.Bind("bind", pb) })
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Sendto("sendto", payload, unix.MSG_FASTOPEN, pb) })
		c.server(func(s *tfo.Sock) tfo.CallResult { return s.Sendto("sendto", payload, unix.MSG_FASTOPEN, pa) })
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
		c.server(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
		c.client(func(s *tfo.Sock) tfo.CallResult { r, _ := s.ReadWait("read", 512, 2*time.Second); return r })
		c.server(func(s *tfo.Sock) tfo.CallResult { r, _ := s.ReadWait("read", 512, 2*time.Second); return r })
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.TCPInfo("tcp_info") })
		c.server(func(s *tfo.Sock) tfo.CallResult { return s.TCPInfo("tcp_info") })
		c.done()
		return ctx.Err()
	}, "SimultaneousTimeline")
}
