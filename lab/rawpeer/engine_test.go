package rawpeer

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"

	"github.com/tfolab/tfolab/lab/capture"
)

const (
	clientISN = 5000
	serverISN = 900000
)

var request = []byte("GET / (tfolab rawpeer)\n")

func newTestEngine(ck []byte, ackSynData bool) *engine {
	return &engine{addr: server4, mac: serverMAC, mss: 1460, synAckData: testData, cookie: ck,
		ackSynData: ackSynData, isn: func() uint32 { return serverISN }}
}

// fromClient builds a client segment as a frame and decodes it the way the
// peer's loop does, so the engine sees exactly what it would on the wire.
func fromClient(t *testing.T, flags capture.TCPFlags, seq, ack uint32, fo *capture.FastOpenOption, payload []byte) capture.Packet {
	t.Helper()
	f, err := segment{srcMAC: clientMAC, dstMAC: serverMAC, src: client4, dst: server4,
		flags: flags, seq: seq, ack: ack, mss: 1460, fastOpen: fo, payload: payload}.frame()
	if err != nil {
		t.Fatal(err)
	}
	p, ok, err := capture.Decode(f, gopacket.CaptureInfo{})
	if !ok || err != nil {
		t.Fatalf("decode: %v", err)
	}
	return p
}

// one checks that out is a single segment with the given header fields.
func one(t *testing.T, what string, out []segment, flags capture.TCPFlags, seq, ack uint32, payload []byte) segment {
	t.Helper()
	if len(out) != 1 {
		t.Fatalf("%s: %d segments out, want 1: %+v", what, len(out), out)
	}
	s := out[0]
	if s.flags != flags || s.seq != seq || s.ack != ack || !bytes.Equal(s.payload, payload) {
		t.Fatalf("%s: got [%s] seq %d ack %d payload %q, want [%s] seq %d ack %d payload %q",
			what, s.flags, s.seq, s.ack, s.payload, flags, seq, ack, payload)
	}
	if s.src != server4 || s.dst != client4 || !bytes.Equal(s.dstMAC, clientMAC) || !bytes.Equal(s.srcMAC, serverMAC) {
		t.Fatalf("%s: addressed %s/%s > %s/%s", what, s.src, s.srcMAC, s.dst, s.dstMAC)
	}
	return s
}

const (
	sa  = capture.FlagSYN | capture.FlagACK
	ack = capture.FlagACK
	pa  = capture.FlagPSH | capture.FlagACK
	fa  = capture.FlagFIN | capture.FlagACK
	fpa = capture.FlagFIN | capture.FlagPSH | capture.FlagACK
)

func TestEngineCookieRequest(t *testing.T) {
	e := newTestEngine(cookie8, false)
	now := time.Unix(1000, 0)
	req := &capture.FastOpenOption{}
	s := one(t, "SYN", e.handle(fromClient(t, capture.FlagSYN, clientISN, 0, req, nil), clientMAC, now), sa, serverISN, clientISN+1, testData)
	if s.mss != 1460 || s.fastOpen == nil || !bytes.Equal(s.fastOpen.Cookie, cookie8) || s.fastOpen.Experimental {
		t.Fatalf("SYN-ACK options: mss %d tfo %v", s.mss, s.fastOpen)
	}
	end := uint32(serverISN + 1 + len(testData))
	if out := e.handle(fromClient(t, ack, clientISN+1, end, nil, nil), clientMAC, now); len(out) != 0 {
		t.Fatalf("handshake ACK covering the data: %d segments out, want none", len(out))
	}
	if !e.nextTimer().IsZero() {
		t.Fatal("timer armed with nothing outstanding")
	}
	one(t, "request", e.handle(fromClient(t, pa, clientISN+1, end, nil, request), clientMAC, now), fa, end, clientISN+1+uint32(len(request)), nil)
	if e.nextTimer().IsZero() {
		t.Fatal("FIN sent without a retransmission timer")
	}
	fin := clientISN + 1 + uint32(len(request))
	one(t, "client FIN", e.handle(fromClient(t, fa, fin, end+1, nil, nil), clientMAC, now), ack, end+1, fin+1, nil)

	recs := e.records()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if !r.CookieRequest || !r.CookieSent || r.Cookie != nil || len(r.SynPayload) != 0 || r.SYNs != 1 ||
		r.HandshakeAckedData() != len(testData) || !r.SynAckDataAcked || r.PayloadResent || r.TimerRexmits != 0 ||
		!bytes.Equal(r.Received, request) || !r.FINSent || !r.ClientFIN || r.Reset || !r.Closed || len(r.Segments) != 4 {
		t.Errorf("record: %s", r)
	}
	if !e.nextTimer().IsZero() {
		t.Error("timer still armed after the close")
	}
	if !strings.Contains(r.String(), "tfo cookie request") {
		t.Errorf("String: %s", r)
	}
}

func TestEngineSynDataNotAcked(t *testing.T) {
	e := newTestEngine(cookie8, false)
	now := time.Unix(1000, 0)
	fo := &capture.FastOpenOption{Cookie: cookie8}
	s := one(t, "SYN+data", e.handle(fromClient(t, capture.FlagSYN, clientISN, 0, fo, request), clientMAC, now), sa, serverISN, clientISN+1, testData)
	if s.fastOpen != nil {
		t.Errorf("SYN-ACK answers a cookie with TFO option %v", s.fastOpen)
	}
	// A Linux client whose SYN data was not acked drops the SYN-ACK's
	// payload and sends its data again, acking only our ISN+1: the peer
	// resends the payload at once, with the FIN the request line calls for.
	rcv := clientISN + 1 + uint32(len(request))
	end := uint32(serverISN + 1 + len(testData))
	one(t, "data resent", e.handle(fromClient(t, pa, clientISN+1, serverISN+1, nil, request), clientMAC, now), fpa, serverISN+1, rcv, testData)
	// A duplicate of that segment only gets a duplicate ACK.
	one(t, "duplicate", e.handle(fromClient(t, pa, clientISN+1, serverISN+1, nil, request), clientMAC, now), ack, end+1, rcv, nil)
	if out := e.handle(fromClient(t, ack, rcv, end+1, nil, nil), clientMAC, now); len(out) != 0 {
		t.Fatalf("ACK of everything: %d segments out", len(out))
	}
	r := e.records()[0]
	if r.CookieRequest || !bytes.Equal(r.Cookie, cookie8) || !bytes.Equal(r.SynPayload, request) || r.CookieSent ||
		r.HandshakeAckedData() != 0 || !r.SynAckDataAcked || !r.PayloadResent || r.TimerRexmits != 0 || !bytes.Equal(r.Received, request) || r.Closed {
		t.Errorf("record: %s", r)
	}
}

func TestEngineAckSynData(t *testing.T) {
	e := newTestEngine(nil, true)
	now := time.Unix(1000, 0)
	req := &capture.FastOpenOption{Experimental: true}
	rcv := clientISN + 1 + uint32(len(request))
	s := one(t, "SYN+data", e.handle(fromClient(t, capture.FlagSYN, clientISN, 0, req, request), clientMAC, now), sa, serverISN, rcv, testData)
	if s.fastOpen != nil {
		t.Errorf("no cookie configured, yet TFO option %v", s.fastOpen)
	}
	end := uint32(serverISN + 1 + len(testData))
	// The request line came in the SYN: the handshake ACK triggers the FIN.
	one(t, "handshake ACK", e.handle(fromClient(t, ack, rcv, end, nil, nil), clientMAC, now), fa, end, rcv, nil)
	r := e.records()[0]
	if !r.CookieRequest || !r.ExperimentalOption || r.CookieSent || !bytes.Equal(r.Received, request) || !r.FINSent {
		t.Errorf("record: %s", r)
	}
}

func TestEngineExperimentalCookie(t *testing.T) {
	e := newTestEngine(cookie8, false)
	s := one(t, "SYN", e.handle(fromClient(t, capture.FlagSYN, clientISN, 0, &capture.FastOpenOption{Experimental: true}, nil), clientMAC, time.Unix(1, 0)),
		sa, serverISN, clientISN+1, testData)
	if s.fastOpen == nil || !s.fastOpen.Experimental || !bytes.Equal(s.fastOpen.Cookie, cookie8) {
		t.Errorf("SYN-ACK TFO option %v, want the experimental form with the cookie", s.fastOpen)
	}
}

func TestEngineRetransmissions(t *testing.T) {
	e := newTestEngine(nil, false)
	t0 := time.Unix(1000, 0)
	syn := fromClient(t, capture.FlagSYN, clientISN, 0, nil, nil)
	one(t, "SYN", e.handle(syn, clientMAC, t0), sa, serverISN, clientISN+1, testData)
	// A retransmitted SYN gets the same SYN-ACK; a new ISN is a new connection.
	one(t, "SYN again", e.handle(syn, clientMAC, t0), sa, serverISN, clientISN+1, testData)
	if got := e.nextTimer(); !got.Equal(t0.Add(initialRTO)) {
		t.Fatalf("timer at %v, want %v", got, t0.Add(initialRTO))
	}
	if out := e.tick(t0.Add(initialRTO - time.Millisecond)); len(out) != 0 {
		t.Fatal("timer fired early")
	}
	at := t0
	for i := range maxRetries {
		at = e.nextTimer()
		one(t, "timer", e.tick(at), sa, serverISN, clientISN+1, testData)
		if want := initialRTO << (i + 1); e.nextTimer().Sub(at) != want {
			t.Fatalf("retry %d: next timer in %v, want %v", i+1, e.nextTimer().Sub(at), want)
		}
	}
	if out := e.tick(e.nextTimer()); len(out) != 0 {
		t.Fatalf("gave up, but sent %d segments", len(out))
	}
	r := e.records()[0]
	if r.SYNs != 2 || r.TimerRexmits != maxRetries || r.PayloadResent || !r.Closed || r.HandshakeAcked || !e.nextTimer().IsZero() {
		t.Errorf("record: %s", r)
	}

	// A new ISN from the same port starts a new connection.
	e.isn = func() uint32 { return 7 }
	one(t, "new SYN", e.handle(fromClient(t, capture.FlagSYN, 1, 0, nil, nil), clientMAC, at), sa, 7, 2, testData)
	if n := len(e.records()); n != 2 {
		t.Errorf("%d records, want 2", n)
	}
}

func TestEngineOutOfOrderAndReset(t *testing.T) {
	e := newTestEngine(nil, false)
	now := time.Unix(1000, 0)
	e.handle(fromClient(t, capture.FlagSYN, clientISN, 0, nil, nil), clientMAC, now)
	end := uint32(serverISN + 1 + len(testData))
	e.handle(fromClient(t, ack, clientISN+1, end, nil, nil), clientMAC, now)
	// A segment beyond rcv_nxt is not taken, only acknowledged again.
	one(t, "out of order", e.handle(fromClient(t, pa, clientISN+5, end, nil, []byte("late\n")), clientMAC, now), ack, end, clientISN+1, nil)
	// Overlapping data: only the new part is taken.
	one(t, "first", e.handle(fromClient(t, pa, clientISN+1, end, nil, []byte("abc")), clientMAC, now), ack, end, clientISN+4, nil)
	one(t, "overlap", e.handle(fromClient(t, pa, clientISN+2, end, nil, []byte("bcd")), clientMAC, now), ack, end, clientISN+5, nil)
	// Segments for other addresses or unknown clients are ignored.
	other := fromClient(t, pa, 1, 1, nil, []byte("x"))
	other.Src = client6
	if out := e.handle(other, clientMAC, now); len(out) != 0 {
		t.Error("answered an unknown client")
	}
	if out := e.handle(fromClient(t, capture.FlagRST, clientISN+5, 0, nil, nil), clientMAC, now); len(out) != 0 {
		t.Error("answered a RST")
	}
	r := e.records()[0]
	if string(r.Received) != "abcd" || !r.Reset || !r.Closed || r.FINSent {
		t.Errorf("record: %s", r)
	}
}

func TestStartValidation(t *testing.T) {
	ctx := context.Background()
	for _, o := range []Options{
		{Interface: "x"},
		{Addr: server4, Interface: "x", Cookie: []byte{1, 2, 3}},
		{Addr: server4, Interface: "x", Cookie: make([]byte, 18)},
		{Addr: server4},
	} {
		if _, err := Start(ctx, o); err == nil {
			t.Errorf("Start(%+v): no error", o)
		}
	}
}

// With SynAckDataOnlyForTFO a plain SYN gets a plain SYN-ACK and the
// payload follows the handshake; a TFO SYN gets it in the SYN-ACK, and so
// does every retransmission of that SYN, even one without the option (a
// Linux client retransmits its SYN without TFO option or data).
func TestEngineSynAckDataOnlyForTFO(t *testing.T) {
	e := newTestEngine(cookie8, true)
	e.dataOnlyForTFO = true
	now := time.Unix(1000, 0)

	one(t, "plain SYN", e.handle(fromClient(t, capture.FlagSYN, clientISN, 0, nil, nil), clientMAC, now), sa, serverISN, clientISN+1, nil)
	one(t, "handshake ACK", e.handle(fromClient(t, ack, clientISN+1, serverISN+1, nil, nil), clientMAC, now), pa, serverISN+1, clientISN+1, testData)
	r := e.records()[0]
	if r.SynAckData != nil || !r.DataAfterHandshake || r.PayloadResent || r.SynAckDataAcked {
		t.Errorf("plain SYN record: %s", r)
	}
	end := uint32(serverISN + 1 + len(testData))
	e.handle(fromClient(t, ack, clientISN+1, end, nil, nil), clientMAC, now)
	if r := e.records()[0]; !r.SynAckDataAcked {
		t.Errorf("payload acked, record says not: %s", r)
	}

	const isn2 = clientISN + 100000
	fo := &capture.FastOpenOption{Cookie: cookie8}
	rcv := isn2 + 1 + uint32(len(request))
	one(t, "TFO SYN", e.handle(fromClient(t, capture.FlagSYN, isn2, 0, fo, request), clientMAC, now), sa, serverISN, rcv, testData)
	one(t, "plain retransmission", e.handle(fromClient(t, capture.FlagSYN, isn2, 0, nil, nil), clientMAC, now), sa, serverISN, rcv, testData)
	r = e.records()[1]
	if !bytes.Equal(r.SynAckData, testData) || r.DataAfterHandshake || r.SYNs != 2 {
		t.Errorf("TFO SYN record: %s", r)
	}
}
