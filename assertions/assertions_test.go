package assertions

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/tcpmetrics"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/observation"
)

// Synthetic observations: what the kernel would show for a cookie request
// followed by a TFO connection, built by hand, so each matcher is tested
// both ways without root.

var (
	t0, srv, cli = labtest.T0, labtest.Server, labtest.Client
	cookie       = []byte{1, 2, 3, 4, 5, 6, 7, 8}
)

func syn(at time.Duration, from netip.AddrPort, fo *capture.FastOpenOption, payload int) capture.Packet {
	return capture.Packet{Time: t0.Add(at), Src: from, Dst: srv, Flags: capture.FlagSYN, Seq: 100, Length: payload, Payload: make([]byte, payload), FastOpen: fo}
}

func synack(at time.Duration, to netip.AddrPort, fo *capture.FastOpenOption, ack uint32) capture.Packet {
	return capture.Packet{Time: t0.Add(at), Src: srv, Dst: to, Flags: capture.FlagSYN | capture.FlagACK, Seq: 900, Ack: ack, FastOpen: fo}
}

// cookieThenData is a passing cookie-then-data observation.
func cookieThenData() *observation.Observation {
	o := observation.New("synthetic", lab.IPv4)
	req := &capture.FastOpenOption{}
	withCookie := &capture.FastOpenOption{Cookie: cookie}
	c0, c1 := cli(40000), cli(40001)
	o.Links["client/to-router"] = &observation.Link{Node: "client", Interface: "to-router", Packets: []capture.Packet{
		syn(0, c0, req, 0), synack(time.Millisecond, c0, withCookie, 101),
		syn(time.Second, c1, withCookie, 21), synack(time.Second+time.Millisecond, c1, nil, 122),
	}}
	o.Links["server/to-router"] = &observation.Link{Node: "server", Interface: "to-router", Packets: []capture.Packet{
		syn(time.Second, c1, withCookie, 21),
	}}
	for i, c := range []netip.AddrPort{c0, c1} {
		o.Conns = append(o.Conns, observation.Conn{Client: "client", Node: "client", Service: "service", Mode: "sendto",
			Local: c, Remote: srv, Request: []byte("x\n"), Response: []byte("x\n"), SynData: i == 1,
			Start: t0.Add(time.Duration(i) * time.Second), FirstByte: 200 * time.Microsecond,
			ClientLink: "client/to-router", ServerLink: "server/to-router"})
	}
	o.Conns[0].ClientFail = tfo.ClientFailNoCookie
	o.Services = []observation.Service{{Name: "service", Node: "server", Addr: srv,
		Accepted: []observation.Accepted{{Remote: c0}, {Remote: c1, SynData: true}}}}
	o.Node("client").Counters = lab.Counters{lab.TCPFastOpenActive: 1, lab.TCPFastOpenActiveFail: 0, lab.TCPSynRetrans: 0}
	o.Node("server").Counters = lab.Counters{lab.TCPFastOpenPassive: 1, lab.TCPFastOpenCookieReqd: 1, lab.TCPFastOpenPassiveFail: 0}
	o.Node("client").Metrics = []tcpmetrics.Entry{{Dst: srv.Addr(), FastOpenCookie: cookie}}
	o.SynSchedule = lab.NewSynSchedule(6, 4)
	return o
}

func expectations() []types.GomegaMatcher {
	return []types.GomegaMatcher{
		Conn(0, Dialogue(AtClient, ClientSYN().WithCookieRequest().WithoutPayload(), ServerSYNACK().WithCookie().AckingSYNOnly()),
			SynDataAcked(false), ClientFail(tfo.ClientFailNoCookie), Responded()),
		Conn(1, Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(21), ServerSYNACK().AckingSYNData()),
			Dialogue(AtServer, ClientSYN().WithCookie().WithPayload(21)),
			SynDataAcked(true), ServerAcceptedSynData(true), Responded(), FirstByteAfterSynRetransmissions(0)),
		CountersOf("server", HaveCounterDeltas(Delta(lab.TCPFastOpenPassive, 1), Delta(lab.TCPFastOpenCookieReqd, 1))),
		CountersOf("client", HaveCounterDeltas(Delta(lab.TCPFastOpenActive, 1))),
		CookieCached("client", true),
	}
}

func TestJudgePassesTheGoodObservation(t *testing.T) {
	vs := Judge(cookieThenData(), expectations())
	for _, v := range vs {
		if !v.Pass {
			t.Errorf("%s failed: %s\n%s", v.Name, v.Statement, v.Evidence)
		}
	}
	want := []string{"connection 0", "connection 1", "server counters", "client counters", "client cookie cache"}
	for i, v := range vs {
		if v.Name != want[i] {
			t.Errorf("verdict %d named %q, want %q", i, v.Name, want[i])
		}
	}
}

// Each break is one a kernel, sysctl or firewall could cause; the named
// verdicts must reject it, and only they.
func TestJudgeRejectsBreaks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		breakIt  func(o *observation.Observation)
		rejected []string
		evidence string
	}{
		{"SYN without data (server TFO off)", func(o *observation.Observation) {
			o.Links["client/to-router"].Packets[2].Length = 0
		}, []string{"connection 1"}, "payload 0 bytes"},
		{"SYN-ACK acks only the SYN", func(o *observation.Observation) {
			o.Links["client/to-router"].Packets[3].Ack = 101
		}, []string{"connection 1"}, "ack 101, want ISN+1+21"},
		{"no cookie in the SYN-ACK", func(o *observation.Observation) {
			o.Links["client/to-router"].Packets[1].FastOpen = nil
		}, []string{"connection 0"}, "differs"},
		{"server counted no passive TFO", func(o *observation.Observation) {
			o.Nodes["server"].Counters[lab.TCPFastOpenPassive] = 0
		}, []string{"server counters"}, "got +0, want +1"},
		{"counter absent from the kernel", func(o *observation.Observation) {
			delete(o.Nodes["client"].Counters, lab.TCPFastOpenActive)
		}, []string{"client counters"}, "absent"},
		{"cookie cache empty", func(o *observation.Observation) {
			o.Nodes["client"].Metrics = nil
		}, []string{"client cookie cache"}, ""},
		{"server did not accept the data", func(o *observation.Observation) {
			o.Services[0].Accepted[1].SynData = false
		}, []string{"connection 1"}, "SYN_DATA=false"},
		{"reply corrupted", func(o *observation.Observation) {
			o.Conns[1].Response = []byte("y\n")
		}, []string{"connection 1"}, "response"},
		{"first byte after an RTO", func(o *observation.Observation) {
			o.Conns[1].FirstByte = 1100 * time.Millisecond
		}, []string{"connection 1"}, "first byte at"},
		{"the client-side capture lost frames", func(o *observation.Observation) {
			o.Links["client/to-router"].Dropped = 3
		}, []string{"connection 0", "connection 1"}, "lost 3 frames"},
		{"packets missing from the server side", func(o *observation.Observation) {
			o.Links["server/to-router"].Packets = nil
		}, []string{"connection 1"}, "none captured"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := cookieThenData()
			tc.breakIt(o)
			failed := map[string]Verdict{}
			for _, v := range Failed(Judge(o, expectations())) {
				failed[v.Name] = v
			}
			for _, name := range tc.rejected {
				v, ok := failed[name]
				if !ok {
					t.Errorf("%q passed", name)
					continue
				}
				if !strings.Contains(v.Evidence, tc.evidence) {
					t.Errorf("%q evidence lacks %q:\n%s", name, tc.evidence, v.Evidence)
				}
			}
			if len(failed) != len(tc.rejected) {
				t.Errorf("failed %d verdicts, want %d: %v", len(failed), len(tc.rejected), failed)
			}
		})
	}
}

func TestRefusedAndStalled(t *testing.T) {
	o := cookieThenData()
	o.Conns[1].Error, o.Conns[1].Errno = "connect: connection refused", "ECONNREFUSED"
	if vs := Judge(o, []types.GomegaMatcher{Conn(1, Refused())}); !vs[0].Pass {
		t.Errorf("refused: %s", vs[0].Evidence)
	}
	if vs := Judge(o, []types.GomegaMatcher{Conn(1, Stalled())}); vs[0].Pass {
		t.Error("a refused connection counted as stalled")
	}
	o.Conns[1].Errno, o.Conns[1].Stalled, o.Conns[1].Response = "", true, nil
	if vs := Judge(o, []types.GomegaMatcher{Conn(1, Stalled()), Conn(1, Refused())}); !vs[0].Pass || vs[1].Pass {
		t.Errorf("stalled: %+v", vs)
	}
}

func TestLabelledSelectsByRole(t *testing.T) {
	o := cookieThenData()
	o.Conns[0].Label, o.Conns[0].Round = "during", 1
	o.Conns[1].Label, o.Conns[1].Round = "during", 2
	if vs := Judge(o, []types.GomegaMatcher{Labelled("during", Responded())}); !vs[0].Pass {
		t.Error(vs[0].Evidence)
	}
	if vs := Judge(o, []types.GomegaMatcher{Labelled("during", SynDataAcked(true))}); vs[0].Pass {
		t.Error("round 1 has no SYN data, yet every \"during\" connection passed")
	}
	if vs := Judge(o, []types.GomegaMatcher{Labelled("after", Responded())}); vs[0].Pass || !strings.Contains(vs[0].Evidence, "no \"after\" connection") {
		t.Errorf("no such label: %+v", vs[0])
	}
}

func TestJudgeNamesAreUnique(t *testing.T) {
	vs := Judge(cookieThenData(), []types.GomegaMatcher{Conn(0, Responded()), Conn(0, Responded()), Named("mine", Conn(1, Responded()))})
	if vs[0].Name != "connection 0" || vs[1].Name != "connection 0 #2" || vs[2].Name != "mine" {
		t.Errorf("names %q %q %q", vs[0].Name, vs[1].Name, vs[2].Name)
	}
}

// pauseObservation: a detection at 3 s (3rd SYN retransmission), then
// probes that go out plain until want after it, then with a cookie.
func pauseObservation(end time.Duration) *observation.Observation {
	o := observation.New("pause", lab.IPv4)
	o.SynSchedule = lab.NewSynSchedule(6, 4)
	link := &observation.Link{Node: "client", Interface: "to-router"}
	o.Links["client/to-router"] = link
	det := cli(41000)
	withCookie := &capture.FastOpenOption{Cookie: cookie}
	link.Packets = append(link.Packets, syn(0, det, withCookie, 21))
	for k := 1; k <= 3; k++ {
		link.Packets = append(link.Packets, syn(time.Duration(k)*time.Second, det, nil, 0))
	}
	o.Conns = append(o.Conns, observation.Conn{Label: observation.RoleDetect, Round: 1, Local: det, Remote: srv, Start: t0, ClientLink: "client/to-router"})
	stamp := 3 * time.Second
	for i, at := 0, stamp+50*time.Millisecond; at < stamp+end+300*time.Millisecond; i, at = i+1, at+100*time.Millisecond {
		p := cli(uint16(42000 + i))
		var fo *capture.FastOpenOption
		if at > stamp+end {
			fo = withCookie
		}
		link.Packets = append(link.Packets, syn(at, p, fo, 0))
		o.Conns = append(o.Conns, observation.Conn{Label: observation.RoleProbe, Round: 1, Local: p, Remote: srv, Start: t0.Add(at), ClientLink: "client/to-router"})
	}
	return o
}

func TestPauseLasted(t *testing.T) {
	m := []types.GomegaMatcher{PauseLasted(1, time.Second, 200*time.Millisecond)}
	if vs := Judge(pauseObservation(time.Second), m); !vs[0].Pass {
		t.Errorf("a 1 s pause: %s", vs[0].Evidence)
	}
	if vs := Judge(pauseObservation(2*time.Second), m); vs[0].Pass || !strings.Contains(vs[0].Evidence, "still paused") {
		t.Errorf("a 2 s pause passed as 1 s: %+v", vs[0])
	}
	if vs := Judge(pauseObservation(500*time.Millisecond), m); vs[0].Pass || !strings.Contains(vs[0].Evidence, "TFO back") {
		t.Errorf("a 0.5 s pause passed as 1 s: %+v", vs[0])
	}
	if vs := Judge(pauseObservation(time.Second), []types.GomegaMatcher{PauseLasted(2, time.Second, time.Second)}); vs[0].Pass {
		t.Error("a pause of round 2 found in an observation of round 1 only")
	}
}

func TestRetransmissionsWithinFollowTheKernelsSchedule(t *testing.T) {
	for _, c := range []struct {
		retries, linear int
		want            int
	}{
		{6, 4, 2}, // 6.5+: 1 s, 2 s, 3 s ...
		{6, 0, 1}, // 6.1: 1 s, 3 s, 7 s ...
	} {
		o := observation.Observation{SynSchedule: lab.NewSynSchedule(c.retries, c.linear)}
		if got := RetransmissionsWithin(o, 2500*time.Millisecond); got != c.want {
			t.Errorf("retries %d linear %d: got %d within 2.5 s, want %d (%v)", c.retries, c.linear, got, c.want, o.SynSchedule.At)
		}
	}
}

// savingObservation is a plain connection and a TFO one over a 50 ms RTT
// (25 ms each way on a router between the captures), with the lab's
// applications slow to think: the plain client sends its request 3 ms
// after the handshake, and the TFO server replies 15 ms after the SYN.
// tfoData false makes the second connection's SYN carry no data (server
// TFO off): then nothing is saved.
func savingObservation(tfoData bool) *observation.Observation {
	const ms = time.Millisecond
	o := observation.New("synthetic", lab.IPv4)
	p, t := cli(41000), cli(41001)
	seg := func(d time.Duration, fromClient bool, local netip.AddrPort, flags capture.TCPFlags, n int) capture.Packet {
		pk := capture.Packet{Time: t0.Add(d), Flags: flags, Length: n, Payload: make([]byte, n)}
		if fromClient {
			pk.Src, pk.Dst = local, srv
		} else {
			pk.Src, pk.Dst = srv, local
		}
		return pk
	}
	synFlags, synack, data := capture.FlagSYN, capture.FlagSYN|capture.FlagACK, capture.FlagACK|capture.FlagPSH
	tfoSyn := 0
	if tfoData {
		tfoSyn = 21
	}
	client := []capture.Packet{
		seg(0, true, p, synFlags, 0), seg(50*ms, false, p, synack, 0), seg(53*ms, true, p, data, 21), seg(103200*time.Microsecond, false, p, data, 21),
		seg(200*ms, true, t, synFlags, tfoSyn), seg(250*ms, false, t, synack, 0),
	}
	server := []capture.Packet{
		seg(25*ms, true, p, synFlags, 0), seg(25*ms, false, p, synack, 0), seg(78*ms, true, p, data, 21), seg(78200*time.Microsecond, false, p, data, 21),
		seg(225*ms, true, t, synFlags, tfoSyn), seg(225*ms, false, t, synack, 0),
	}
	if tfoData {
		client = append(client, seg(265*ms, false, t, data, 21))
		server = append(server, seg(240*ms, false, t, data, 21))
	} else {
		client = append(client, seg(251*ms, true, t, data, 21), seg(301200*time.Microsecond, false, t, data, 21))
		server = append(server, seg(276*ms, true, t, data, 21), seg(276200*time.Microsecond, false, t, data, 21))
	}
	o.Links["client/to-router"] = &observation.Link{Node: "client", Interface: "to-router", Packets: client}
	o.Links["server/to-router"] = &observation.Link{Node: "server", Interface: "to-router", Packets: server}
	for i, c := range []netip.AddrPort{p, t} {
		o.Conns = append(o.Conns, observation.Conn{Client: "client", Node: "client", Local: c, Remote: srv,
			Start: t0.Add(time.Duration(i) * 200 * time.Millisecond), FirstByte: 104 * time.Millisecond,
			ClientLink: "client/to-router", ServerLink: "server/to-router"})
	}
	o.Conns[1].FirstByte = 66 * time.Millisecond
	return o
}

func TestSavesOneRTT(t *testing.T) {
	o := savingObservation(true)
	s, err := SavingOf(o, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Plain: 103.2 ms less 3 ms of client and 0.2 ms of server think;
	// TFO: 65 ms less 15 ms of server think.
	if s.RTT != 50*time.Millisecond || s.Plain != 100*time.Millisecond || s.TFO != 50*time.Millisecond {
		t.Fatalf("saving %+v, want RTT 50 ms, plain 100 ms, TFO 50 ms", s)
	}
	m := SavesOneRTT(0, 1)
	if ok, detail := m.check(o); !ok {
		t.Errorf("one RTT saved, yet: %s", detail)
	}
	if ok, detail := m.check(savingObservation(false)); ok || !strings.Contains(detail, "0.00 RTT") {
		t.Errorf("no data in the SYN, yet it passed or says otherwise: %s", detail)
	}
}
