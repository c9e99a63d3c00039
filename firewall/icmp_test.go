package firewall

import (
	"strings"
	"testing"
	"time"

	"github.com/tfolab/tfolab/observation"
)

// A hop whose MTU is below the data SYN: the SYN with data goes again at
// once without it (ICMP fragmentation needed), which is TFO lost at no
// RTO, not an RTO.
func TestClassifyFragmentationNeeded(t *testing.T) {
	s := newSynth()
	cookieRequest(s, LabelOpen, 0)
	for round := 1; round <= 2; round++ {
		s.conn(LabelThrough, round, ok(400*time.Microsecond, false),
			clientOnly(cSYN(0, withC, payload)),
			both(cSYN(40*time.Microsecond, nil, 0)), both(sSYNACK(100*time.Microsecond, nil, isn+1)),
			both(data(200*time.Microsecond, true)), both(data(400*time.Microsecond, false)))
	}
	f := Classify(s.o, chOff)
	if f.Kind != Lost {
		t.Fatalf("verdict %s, want %s\n%s", f.Kind, Lost, f.Evidence)
	}
	if note := f.Conns[0].Note; !strings.Contains(note, "fragmentation needed") || !strings.Contains(note, "40µs") {
		t.Errorf("connection note %q, want fragmentation needed after 40µs", note)
	}
	// The same retransmission a second later is the RTO it always was.
	s = newSynth()
	cookieRequest(s, LabelOpen, 0)
	synDataDropped(s, LabelThrough, 1)
	if f := Classify(s.o, chOff); f.Kind != RTO {
		t.Errorf("a retransmission after 1 s: verdict %s, want %s", f.Kind, RTO)
	}
}

// Refused by a RST or by an ICMP error: the same verdict, told apart in
// the notes.
func TestRefusedHow(t *testing.T) {
	s := newSynth()
	cookieRequest(s, LabelOpen, 0)
	rejected(s, LabelThrough, 1)
	s.conn(LabelThrough, 2, observation.Conn{Error: "handshake: no route to host", Errno: "EHOSTUNREACH"},
		clientOnly(cSYN(0, withC, payload)))
	f := Classify(s.o, chOff)
	if f.Kind != Refused {
		t.Fatalf("verdict %s, want %s", f.Kind, Refused)
	}
	notes := strings.Join(f.Notes, "\n")
	for _, want := range []string{"a RST answered the SYN of connection(s) 1", "no TCP answer came to the SYN of connection(s) 2, yet they failed at once with EHOSTUNREACH: an ICMP error"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}
