package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/rawpeer"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/topology"
	"golang.org/x/sys/unix"

	. "github.com/tfolab/tfolab/assertions"
)

// partialPayload is the SYN's data in the partial-ack scenario: 18 bytes,
// as in the script; the peer acks the first partialAcked.
const (
	partialPayload = "tfolab-partial-ack\n"
	partialAcked   = 9
)

// PartialAckPeer is lab/rawpeer acking only the first AckBytes of a SYN's
// data (0: all of it), handing out Cookie, sending no data of its own: a
// SYN-ACK no Linux server sends.
type PartialAckPeer struct {
	AckBytes int
	Cookie   []byte
	// AnyCookieLength lets Cookie be of a length RFC 7413 forbids.
	AnyCookieLength bool
}

func (PartialAckPeer) Kind() string { return "rawpeer-partial-ack" }

func (p PartialAckPeer) Validate() error {
	if p.AckBytes < 0 {
		return fmt.Errorf("partial-ack peer: %d bytes", p.AckBytes)
	}
	if len(p.Cookie) == 0 {
		return errors.New("partial-ack peer without a cookie")
	}
	return nil
}

func (p PartialAckPeer) Start(ctx context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	return startRawPeer(ctx, site, node, rawpeer.Options{
		Addr: addr, Cookie: p.Cookie, AnyCookieLength: p.AnyCookieLength, AckSynData: true, AckSynDataBytes: p.AckBytes,
	})
}

// SynDataPartlyAcked is syn-data-partial-or-over-ack.pkt's partial ack,
// against a Linux client: the SYN-ACK acks 9 of the SYN's 18 bytes. The
// client sends the other 9 at once, does not report TCPI_OPT_SYN_DATA
// (the data was not all acked), counts an active TFO failure, and keeps
// the cookie: its next SYN carries it again.
func SynDataPartlyAcked(fam topology.Family) Scenario {
	return synDataPartlyAcked(fam, partialAcked)
}

func synDataPartlyAcked(fam topology.Family, acked int) Scenario {
	s := Scenario{
		Name:        fmt.Sprintf("packetdrill/client/syn-data-partial-ack/%s", strings.ToLower(fam.String())),
		Description: "a scripted server acks 9 of the SYN's 18 bytes of data: the client sends the rest at once and keeps the cookie",
		Labels:      pdLabels(fam, "client", "rawpeer"),
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     map[string]map[string]string{topology.Client: {"net.ipv4.tcp_fastopen": tfoClient}},
		Services:    []Service{{Kind: PartialAckPeer{AckBytes: acked, Cookie: scriptedCookie}}},
		Clients:     []Client{{Kind: LabClient{Mode: tfo.ModeSendto}}},
		Timeout:     5 * time.Second,
	}
	s.Script(PartialAckTimeline())
	n := len(partialPayload)
	partly := []ConnCheck{
		Returned("client", "sendto", n),
		Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(n), ServerSYNACK(), ClientData().WithPayload(n-partialAcked)),
		SynAckAcked(AtClient, partialAcked),
		OptionsHave("client", "tcp_info", tcpiOptSynData, false),
		Returned("client", "read", 0),
	}
	s.Expect = []types.GomegaMatcher{
		Labelled("partial", partly...),
		// The cache entry survives: the next SYN carries the cookie.
		Labelled("again", partly...),
		CountersOf(topology.Client, HaveCounterDeltas(Delta(lab.TCPFastOpenActive, 0), Delta(lab.TCPFastOpenActiveFail, 2))),
		CookieCached(topology.Client, true),
	}
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	return s
}

// InvalidCookie is valid-cookie-format.pkt's cookies of a forbidden
// length (RFC 7413 §4.1.1: 4 to 16 bytes, even), from lab/rawpeer: 18
// bytes, too long. The client must not cache it: its next SYN asks for a
// cookie again (in the experimental form, the standard request having
// gone, as far as the kernel can tell, unanswered).
func InvalidCookie(fam topology.Family) Scenario {
	return invalidCookie(fam, bytes.Repeat([]byte{0xc0, 0x0c}, 9))
}

func invalidCookie(fam topology.Family, cookie []byte) Scenario {
	s := Scenario{
		Name:        fmt.Sprintf("packetdrill/client/invalid-cookie/%s", strings.ToLower(fam.String())),
		Description: "a scripted server hands out an 18-byte cookie: the client ignores it and asks again",
		Labels:      pdLabels(fam, "client", "rawpeer"),
		Topology:    topology.Routed(),
		Family:      fam,
		Sysctls:     map[string]map[string]string{topology.Client: {"net.ipv4.tcp_fastopen": tfoClient}},
		Services:    []Service{{Kind: PartialAckPeer{Cookie: cookie, AnyCookieLength: true}}},
		Clients:     []Client{{Kind: LabClient{Mode: tfo.ModeSendto}}},
		Timeout:     5 * time.Second,
	}
	s.Script(InvalidCookieTimeline())
	s.Expect = []types.GomegaMatcher{
		Labelled("learn", Dialogue(AtClient, ClientSYN().WithCookieRequest().Experimental(false))),
		Labelled("again",
			FailedWith("client", "sendto", "EINPROGRESS"),
			Dialogue(AtClient, ClientSYN().WithCookieRequest().Experimental(true).WithoutPayload())),
		CookieCached(topology.Client, false),
	}
	// The diagnoser takes the 18-byte option for a cookie handed out,
	// where the client, rightly, took none.
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	return s
}

// PartialAckTimeline is SynDataPartlyAcked's: a cookie, then two
// connections whose SYN data the peer acks in part.
func PartialAckTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		learnOnce(env, "learn", nil)
		for _, label := range []string{"partial", "again"} {
			c := env.newAPIConn(label, "", 0, nil, false)
			c.client(func(s *tfo.Sock) tfo.CallResult {
				return s.Sendto("sendto", []byte(partialPayload), unix.MSG_FASTOPEN, c.remote)
			})
			c.client(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
			c.client(func(s *tfo.Sock) tfo.CallResult { return s.TCPInfo("tcp_info") })
			// The peer closes once it has the whole line.
			c.client(func(s *tfo.Sock) tfo.CallResult { r, _ := s.ReadWait("read", 512, time.Second); return r })
			c.done()
		}
		return ctx.Err()
	}, "PartialAckTimeline")
}

// InvalidCookieTimeline is InvalidCookie's: a cookie request, then one
// more connection.
func InvalidCookieTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		learnOnce(env, "learn", nil)
		c := env.newAPIConn("again", "", 0, nil, false)
		c.client(func(s *tfo.Sock) tfo.CallResult {
			return s.Sendto("sendto", []byte(partialPayload), unix.MSG_FASTOPEN, c.remote)
		})
		c.client(func(s *tfo.Sock) tfo.CallResult { return s.Poll("poll", unix.POLLOUT, time.Second) })
		c.done()
		return ctx.Err()
	}, "InvalidCookieTimeline")
}
