package firewall

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/tcpmetrics"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/observation"
)

// Synthetic observations of the packet dialogues each kind of ruleset
// produces, built by hand as the captures show them on this kernel, so
// the classification is tested both ways without root.

var (
	t0, srv = labtest.T0, labtest.Server
	cookie  = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	req     = &capture.FastOpenOption{}
	withC   = &capture.FastOpenOption{Cookie: cookie}
	expC    = &capture.FastOpenOption{Cookie: cookie, Experimental: true}
)

const (
	clientLink = "client/to-router"
	serverLink = "server/to-router"
	isn        = 1000
	payload    = 21
)

// pkt is one packet of a synthetic connection and the sides it shows on.
type pkt struct {
	at             time.Duration
	fromClient     bool
	flags          capture.TCPFlags
	ack            uint32
	fo             *capture.FastOpenOption
	length         int
	client, server bool
}

func both(p pkt) pkt       { p.client, p.server = true, true; return p }
func clientOnly(p pkt) pkt { p.client = true; return p }
func serverOnly(p pkt) pkt { p.server = true; return p }

func cSYN(at time.Duration, fo *capture.FastOpenOption, n int) pkt {
	return pkt{at: at, fromClient: true, flags: capture.FlagSYN, fo: fo, length: n}
}

func sSYNACK(at time.Duration, fo *capture.FastOpenOption, ack uint32) pkt {
	return pkt{at: at, flags: capture.FlagSYN | capture.FlagACK, ack: ack, fo: fo}
}

func data(at time.Duration, fromClient bool) pkt {
	return pkt{at: at, fromClient: fromClient, flags: capture.FlagACK | capture.FlagPSH, length: payload}
}

func rst(at time.Duration) pkt { return pkt{at: at, flags: capture.FlagRST | capture.FlagACK} }

// synth builds an observation connection by connection.
type synth struct {
	o    *observation.Observation
	next time.Duration
	port uint16
}

func newSynth() *synth {
	o := observation.New("synthetic", lab.IPv4)
	o.Links[clientLink] = &observation.Link{Node: "client", Interface: "to-router"}
	o.Links[serverLink] = &observation.Link{Node: "server", Interface: "to-router"}
	o.Services = []observation.Service{{Name: "service", Node: "server", Addr: srv}}
	o.SynSchedule = lab.NewSynSchedule(6, 4)
	o.Node("client").Counters = lab.Counters{}
	return &synth{o: o, port: 40000}
}

// conn adds a connection made now; c sets its result fields.
func (s *synth) conn(label string, round int, c observation.Conn, pkts ...pkt) {
	s.port++
	local := labtest.Client(s.port)
	start := t0.Add(s.next)
	c.Client, c.Node, c.Service, c.Label, c.Round, c.Mode = "client", "client", "service", label, round, "sendto"
	c.Local, c.Remote, c.Start, c.ClientLink, c.ServerLink = local, srv, start, clientLink, serverLink
	c.Request = []byte("GET /tfolab HTTP/1.0\n")
	if c.Error == "" && !c.Stalled {
		c.Response = c.Request
	}
	for _, p := range pkts {
		cp := capture.Packet{Time: start.Add(p.at), Flags: p.flags, Ack: p.ack, FastOpen: p.fo, Length: p.length, Payload: make([]byte, p.length)}
		if p.fromClient {
			cp.Src, cp.Dst, cp.Seq = local, srv, isn
		} else {
			cp.Src, cp.Dst, cp.Seq = srv, local, 9000
		}
		if p.client {
			s.o.Links[clientLink].Packets = append(s.o.Links[clientLink].Packets, cp)
		}
		if p.server {
			s.o.Links[serverLink].Packets = append(s.o.Links[serverLink].Packets, cp)
		}
	}
	s.o.Conns = append(s.o.Conns, c)
	s.next += 5 * time.Second
}

func ok(firstByte time.Duration, synData bool) observation.Conn {
	return observation.Conn{FirstByte: firstByte, SynData: synData}
}

// Dialogues.
func cookieRequest(s *synth, label string, round int) { handshake(s, label, round, req, withC) }
func plainOK(s *synth, label string, round int)       { handshake(s, label, round, nil, nil) }
func tfoOK(s *synth, label string, round int)         { synData(s, label, round, withC) }
func expCookieOK(s *synth, label string, round int)   { synData(s, label, round, expC) }

// synDataDropped: the SYN with data dies in the router; the plain
// retransmission passes after one RTO.
func synDataDropped(s *synth, label string, round int) {
	firstSYNDropped(s, label, round, cSYN(0, withC, payload))
}

func cookieRequestDropped(s *synth, label string, round int) {
	firstSYNDropped(s, label, round, cSYN(0, req, 0))
}

// connsThrough makes connections 1 to n through the ruleset, each as conn
// makes it.
func connsThrough(s *synth, n int, conn func(s *synth, label string, round int)) {
	for round := 1; round <= n; round++ {
		conn(s, LabelThrough, round)
	}
}

// afterCookie builds the common dialogue: a cookie learned on the open
// path, then n connections through the ruleset, each as conn makes it.
func afterCookie(n int, conn func(s *synth, label string, round int)) func(s *synth) {
	return func(s *synth) {
		cookieRequest(s, LabelOpen, 0)
		connsThrough(s, n, conn)
	}
}

// handshake: a SYN without data (its TFO option syn), the SYN-ACK (option
// synack), then request and response after the handshake.
func handshake(s *synth, label string, round int, syn, synack *capture.FastOpenOption) {
	s.conn(label, round, ok(300*time.Microsecond, false),
		both(cSYN(0, syn, 0)), both(sSYNACK(100*time.Microsecond, synack, isn+1)),
		both(data(200*time.Microsecond, true)), both(data(300*time.Microsecond, false)))
}

// synData: the request in a SYN with cookie option fo, acknowledged.
func synData(s *synth, label string, round int, fo *capture.FastOpenOption) {
	s.conn(label, round, ok(200*time.Microsecond, true),
		both(cSYN(0, fo, payload)), both(sSYNACK(100*time.Microsecond, nil, isn+1+payload)),
		both(data(200*time.Microsecond, false)))
}

// firstSYNDropped: first dies in the router; the plain retransmission
// passes after one RTO.
func firstSYNDropped(s *synth, label string, round int, first pkt) {
	s.conn(label, round, ok(time.Second+300*time.Microsecond, false),
		clientOnly(first),
		both(cSYN(time.Second, nil, 0)), both(sSYNACK(time.Second+100*time.Microsecond, nil, isn+1)),
		both(data(time.Second+200*time.Microsecond, true)), both(data(time.Second+300*time.Microsecond, false)))
}

// stripped: option 34 removed on the way; the server acks only the SYN.
func stripped(s *synth, label string, round int) {
	atClient := cSYN(0, withC, payload)
	atServer := cSYN(50*time.Microsecond, nil, payload)
	s.conn(label, round, ok(400*time.Microsecond, false),
		clientOnly(atClient), serverOnly(atServer), both(sSYNACK(100*time.Microsecond, nil, isn+1)),
		both(data(200*time.Microsecond, true)), both(data(400*time.Microsecond, false)))
}

func rejected(s *synth, label string, round int) {
	s.conn(label, round, observation.Conn{Error: "handshake: connection refused", Errno: "ECONNREFUSED"},
		clientOnly(cSYN(0, withC, payload)), clientOnly(rst(50*time.Microsecond)))
}

// synackDropped: the server takes the data and answers; its SYN-ACKs die.
func synackDropped(s *synth, label string, round int, retrans int) {
	pkts := []pkt{both(cSYN(0, withC, payload)), serverOnly(sSYNACK(100*time.Microsecond, nil, isn+1+payload))}
	for k := 1; k <= retrans; k++ {
		at := time.Duration(k) * time.Second
		pkts = append(pkts, both(cSYN(at, nil, 0)), serverOnly(sSYNACK(at+100*time.Microsecond, nil, isn+1+payload)))
	}
	s.conn(label, round, observation.Conn{Stalled: true, Error: "stalled"}, pkts...)
	s.o.Services[0].Accepted = append(s.o.Services[0].Accepted, observation.Accepted{Remote: s.o.Conns[len(s.o.Conns)-1].Local, SynData: true, Time: s.o.Conns[len(s.o.Conns)-1].Start})
}

func (s *synth) rules(hits ...observation.RuleHits) {
	s.o.Middleboxes = append(s.o.Middleboxes, observation.Middlebox{Name: "v4.rules", Node: "router", Family: lab.IPv4, Rules: hits})
}

func (s *synth) cached(c []byte) {
	s.o.Node("client").Metrics = []tcpmetrics.Entry{{Dst: srv.Addr(), FastOpenCookie: c}}
}

var (
	fcOff = Variant{Family: lab.IPv4, Mode: tfo.ModeSendto, Phase: FirstContact}
	chOff = Variant{Family: lab.IPv4, Mode: tfo.ModeSendto, Phase: FirewallChange}
	chOn  = Variant{Family: lab.IPv4, Mode: tfo.ModeSendto, Phase: FirewallChange, Detection: true}
)

func lostWhats(f Finding) []string {
	var out []string
	for _, l := range f.Lost {
		out = append(out, l.What)
	}
	return out
}

func TestClassify(t *testing.T) {
	dropRule := observation.RuleHits{Rule: "iptables -t filter -A FORWARD -p tcp --syn --tcp-option 34 -j DROP", Line: 7, Packets: 2}
	accept := observation.RuleHits{Rule: "iptables -t filter -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", Line: 5, Packets: 9}
	for _, tc := range []struct {
		name    string
		v       Variant
		build   func(s *synth)
		want    Kind
		lost    []string
		notes   string
		noMatch bool
	}{
		{"open path, first contact", fcOff, func(s *synth) {
			cookieRequest(s, LabelThrough, 1)
			tfoOK(s, LabelThrough, 2)
			tfoOK(s, LabelThrough, 3)
			s.rules(accept)
		}, Safe, nil, "", false},
		{"SYN with data dropped after a change", chOff, func(s *synth) {
			cookieRequest(s, LabelOpen, 0)
			connsThrough(s, 2, synDataDropped)
			s.rules(dropRule, accept)
		}, RTO, []string{"the SYN with data"}, "", false},
		{"cookie request dropped", fcOff, func(s *synth) {
			connsThrough(s, 3, cookieRequestDropped)
		}, RTO, []string{"the cookie-request SYN"}, "", false},
		{"option stripped after a change", chOff, afterCookie(2, stripped), Lost, []string{"option 34"}, "", false},
		{"stripped once, then TFO over the experimental option", fcOff, func(s *synth) {
			s.conn(LabelThrough, 1, ok(300*time.Microsecond, false),
				clientOnly(cSYN(0, req, 0)), serverOnly(cSYN(50*time.Microsecond, nil, 0)), both(sSYNACK(100*time.Microsecond, nil, isn+1)))
			s.conn(LabelThrough, 2, ok(300*time.Microsecond, false),
				both(cSYN(0, &capture.FastOpenOption{Experimental: true}, 0)), both(sSYNACK(100*time.Microsecond, expC, isn+1)))
			expCookieOK(s, LabelThrough, 3)
		}, Lost, []string{"option 34"}, "from connection 1 on TFO works, with the experimental TFO option", false},
		{"rejected with a RST", chOff, afterCookie(2, rejected), Refused, []string{"the SYN with data"}, "", false},
		{"SYN-ACK dropped: a stall", chOff, func(s *synth) {
			cookieRequest(s, LabelOpen, 0)
			synackDropped(s, LabelThrough, 1, 2)
			synackDropped(s, LabelThrough, 2, 2)
		}, Stall, []string{"the SYN-ACK", "every SYN retransmission"}, "the server accepted the request in the SYN of connections 1, 2", false},
		{"detection pauses TFO", chOn, func(s *synth) {
			cookieRequest(s, LabelOpen, 0)
			synackDropped(s, LabelDetect, 0, 4)
			plainOK(s, LabelAfter, 0)
			s.o.Node("client").Counters = lab.Counters{lab.TCPFastOpenBlackhole: 1}
			s.cached(cookie)
		}, Paused, []string{"the SYN-ACK", "every SYN retransmission"}, "TCPFastOpenBlackhole +1; connection 2 then went out as a plain SYN", false},
		{"detection on, nothing detected: the RTO stays", chOn, func(s *synth) {
			cookieRequest(s, LabelOpen, 0)
			synDataDropped(s, LabelDetect, 0)
			synDataDropped(s, LabelAfter, 0)
			s.cached(cookie)
		}, RTO, []string{"the SYN with data"}, "", false},
		{"detection on, a stall not detected", chOn, func(s *synth) {
			cookieRequest(s, LabelOpen, 0)
			synackDropped(s, LabelDetect, 0, 4)
			synackDropped(s, LabelAfter, 0, 2)
			s.cached(cookie)
		}, Stall, []string{"the SYN-ACK", "every SYN retransmission"}, "", false},
		{"rules that saw nothing", chOff, func(s *synth) {
			cookieRequest(s, LabelOpen, 0)
			connsThrough(s, 2, tfoOK)
			s.rules(observation.RuleHits{Rule: "iptables -t filter -A FORWARD -p tcp --dport 443 -j DROP", Line: 3})
		}, Safe, nil, "", true},
		{"a local drop: the client falls back to a cookie request", chOff, afterCookie(2, cookieRequest), Lost, []string{"the SYN with data"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSynth()
			tc.build(s)
			f := Classify(s.o, tc.v)
			if f.Kind != tc.want {
				t.Fatalf("verdict %s, want %s\n%s", f.Kind, tc.want, f.details(false))
			}
			if got := strings.Join(lostWhats(f), "|"); got != strings.Join(tc.lost, "|") {
				t.Errorf("lost %q, want %q\n%s", got, strings.Join(tc.lost, "|"), f.details(false))
			}
			if tc.notes != "" && !strings.Contains(strings.Join(f.Notes, "\n"), tc.notes) {
				t.Errorf("notes %q, want one containing %q", f.Notes, tc.notes)
			}
			if f.NoMatch != tc.noMatch {
				t.Errorf("NoMatch %v, want %v", f.NoMatch, tc.noMatch)
			}
		})
	}
}

func TestClassifyCostAndRules(t *testing.T) {
	s := newSynth()
	cookieRequest(s, LabelOpen, 0)
	connsThrough(s, 2, synDataDropped)
	s.rules(observation.RuleHits{Rule: "iptables -t filter -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", Line: 5, Packets: 9},
		observation.RuleHits{Rule: "iptables -t filter -A FORWARD -p tcp --syn -m length --length 81:65535 -j DROP", Line: 7, Packets: 2},
		observation.RuleHits{Rule: "iptables -t filter -P FORWARD DROP", Line: 3, Packets: 0})
	f := Classify(s.o, chOff)
	if f.Kind != RTO || f.SynRetrans != 1 {
		t.Fatalf("%s, %d retransmissions", f.Kind, f.SynRetrans)
	}
	// First byte 1.0003 s against the open path's 0.3 ms.
	if f.Baseline != 300*time.Microsecond || f.Cost != time.Second {
		t.Errorf("baseline %v cost %v, want 300µs and 1s", f.Baseline, f.Cost)
	}
	if !strings.Contains(f.Schedule, "as the client's SYN schedule predicts") {
		t.Errorf("schedule %q", f.Schedule)
	}
	if len(f.Rules) != 2 || f.Rules[0].Line != 7 || !f.Rules[0].Acts || f.Rules[1].Acts {
		t.Errorf("rules %+v: want the acting line 7 first, then line 5; line 3 matched nothing", f.Rules)
	}
	if got := f.rulesShort(); got != "v4.rules:7 ×2" {
		t.Errorf("rulesShort %q", got)
	}
	if got := f.Headline(); got != "TFO costs a retransmission timeout on every connection (+1.00 s)" {
		t.Errorf("headline %q", got)
	}
	if !strings.Contains(f.Evidence, "connection 1 [through 1]") || !strings.Contains(f.Evidence, "server side (server/to-router)") {
		t.Errorf("evidence lacks a connection or a side:\n%s", f.Evidence)
	}
	// A first-contact run measures no open path; the report lends one.
	s2 := newSynth()
	cookieRequestDropped(s2, LabelThrough, 1)
	g := Classify(s2.o, fcOff)
	if g.Baseline != 0 || g.Cost != time.Second+300*time.Microsecond {
		t.Fatalf("no baseline: cost %v", g.Cost)
	}
	g.SetBaseline(300 * time.Microsecond)
	if g.Cost != time.Second {
		t.Errorf("cost after SetBaseline %v", g.Cost)
	}
}

func TestActs(t *testing.T) {
	for rule, want := range map[string]bool{
		"iptables -t filter -A FORWARD -p tcp -j DROP":                             true,
		"iptables -t filter -A FORWARD -p tcp -j REJECT --reject-with tcp-reset":   true,
		"iptables -t mangle -A FORWARD -p tcp -j TCPOPTSTRIP --strip-options 34":   true,
		"iptables -t filter -P FORWARD DROP":                                       true,
		"iptables -t filter -A FORWARD -j ACCEPT":                                  false,
		"iptables -t filter -A FORWARD -j SYN-GUARD":                               false,
		"iptables -t filter -A FORWARD -m comment --comment drop -j ACCEPT":        false,
		"nft add rule inet filter forward tcp option fastopen exists drop":         true,
		"nft add rule inet mangle forward tcp flags syn reset tcp option fastopen": true,
		"nft chain inet filter forward: policy drop":                               true,
		"nft add rule inet filter forward ct state established accept":             false,
	} {
		if got := acts(rule); got != want {
			t.Errorf("acts(%q) = %v, want %v", rule, got, want)
		}
	}
}

func report(findings ...Finding) *Report {
	return &Report{Described: "v4.rules (IPv4) in the path", Kernel: "6.18.0", Started: t0, Elapsed: 3 * time.Second, Findings: findings, NoRules: []string{"IPv6"}}
}

func TestRender(t *testing.T) {
	s := newSynth()
	cookieRequest(s, LabelOpen, 0)
	connsThrough(s, 2, synDataDropped)
	s.rules(observation.RuleHits{Rule: "iptables -t filter -A FORWARD -p tcp --syn -m length --length 81:65535 -j DROP", Line: 7, Packets: 2})
	bad := Classify(s.o, chOff)
	s2 := newSynth()
	cookieRequest(s2, LabelOpen, 0)
	connsThrough(s2, 2, tfoOK)
	good := Classify(s2.o, Variant{Family: lab.IPv4, Mode: tfo.ModeConnect, Phase: FirewallChange})
	good.Hint = "none of your rules matched traffic to port 7000: is PORT right?"

	r := report(good, bad)
	if r.Safe() {
		t.Error("Safe with an RTO finding")
	}
	if !report(good).Safe() || (&Report{}).Safe() {
		t.Error("Safe wrong for all-safe or empty reports")
	}
	table := r.Table()
	for _, want := range []string{"FAMILY", "IPv4    connect  firewall change  off        TFO-safe", "the SYN with data", "v4.rules:7 ×2", "IPv6    -", "no rules given (not tested)"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	details := r.Details()
	if !strings.Contains(details, "✗ IPv4 sendto, firewall change, detection off") || !strings.Contains(details, "hint: none of your rules") {
		t.Errorf("details:\n%s", details)
	}
	if strings.Contains(report(good).Details(), "✗") {
		t.Error("details of a safe report show a failure")
	}
	if got := r.Summary(); got != "2 paths tested in 3.0 s: 1 TFO-safe, 1 TFO costs a retransmission timeout on every connection" {
		t.Errorf("summary %q", got)
	}
	md := r.Markdown()
	for _, want := range []string{"| family | mode |", "| IPv4 | sendto | firewall change | off | TFO costs a retransmission timeout on every connection (+1.00 s) | the SYN with data | v4.rules:7 ×2 |",
		"## IPv4 sendto, firewall change, detection off", "```\nconnection 1 [through 1]", "| IPv6 | - | - | - | no rules given (not tested) |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	dir := t.TempDir()
	files, err := r.Write(dir)
	if err != nil || len(files) != 2 {
		t.Fatalf("write: %v %v", files, err)
	}
	var back struct {
		Findings []struct {
			Path    map[string]any `json:"path"`
			Verdict string         `json:"verdict"`
			Lost    []LostOn       `json:"lost"`
			Cost    int64          `json:"cost_ns"`
			Rules   []RuleHit      `json:"rules"`
		} `json:"findings"`
		NoRules []string `json:"no_rules_given"`
	}
	b, _ := os.ReadFile(files[1])
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	f := back.Findings[1]
	if f.Verdict != "rto" || f.Path["phase"] != "firewall-change" || f.Path["family"] != "IPv4" || f.Cost != int64(time.Second) ||
		len(f.Lost) != 1 || f.Lost[0].Conns[1] != 2 || f.Rules[0].Line != 7 || back.NoRules[0] != "IPv6" {
		t.Errorf("JSON read back: %+v", back)
	}
}

func TestExpectations(t *testing.T) {
	e, err := ParseExpectations(strings.NewReader("# comment\nipv6 * firewall-change on paused # note\nipv6 * * * rto\n* * * * tfo-safe\nhint is PORT right?\n"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Hint != "is PORT right?" || len(e.Lines) != 3 {
		t.Errorf("parsed %+v", e)
	}
	for _, tc := range []struct {
		v    Variant
		want Kind
	}{
		{Variant{Family: lab.IPv6, Mode: tfo.ModeConnect, Phase: FirewallChange, Detection: true}, Paused},
		{Variant{Family: lab.IPv6, Mode: tfo.ModeConnect, Phase: FirewallChange}, RTO},
		{Variant{Family: lab.IPv4, Mode: tfo.ModeSendto, Phase: FirstContact}, Safe},
	} {
		if got, ok := e.For(tc.v); !ok || got != tc.want {
			t.Errorf("%v: %s %v, want %s", tc.v, got, ok, tc.want)
		}
	}
	if _, ok := (Expectations{}).For(fcOff); ok {
		t.Error("empty expectations matched")
	}
	for file, want := range map[string]string{
		"ipv4 * * tfo-safe\n":             "line 1: want `family mode phase detection verdict`",
		"ipv5 * * * tfo-safe\n":           `line 1: "ipv5" is not a family`,
		"* * later * tfo-safe\n":          `line 1: "later" is not a phase`,
		"\n* * * * broken\n":              `line 2: "broken" is not a verdict`,
		"* sendfile * * tfo-safe\n":       `line 1: "sendfile" is not a mode`,
		"* * first-contact maybe stall\n": `line 1: "maybe" is not a detection`,
	} {
		if _, err := ParseExpectations(strings.NewReader(file)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", file, err, want)
		}
	}
}

func TestVerdictIs(t *testing.T) {
	s := newSynth()
	cookieRequest(s, LabelOpen, 0)
	connsThrough(s, 2, synDataDropped)
	m := VerdictIs(chOff, RTO)
	if got, err := m.Match(s.o); !got || err != nil {
		t.Errorf("RTO observation rejected: %v", err)
	}
	wrong := VerdictIs(chOff, Safe)
	if got, _ := wrong.Match(s.o); got {
		t.Error("RTO observation judged TFO-safe")
	}
	if msg := wrong.FailureMessage(s.o); !strings.Contains(msg, "want TFO-safe, got TFO costs a retransmission timeout") || !strings.Contains(msg, "lost: the SYN with data") {
		t.Errorf("failure message:\n%s", msg)
	}
	if _, err := m.Match("not an observation"); err == nil {
		t.Error("matched a string")
	}
}
