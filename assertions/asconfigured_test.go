package assertions

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/observation"
)

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
