package report

import (
	"strings"
	"testing"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/observation"
)

// cookieThenDataObserved is the routed IPv4 cookie-then-data baseline as a
// run observes it: under the default profile a cookie request then a SYN
// with cookie and data; under a cookie-less profile (0x207 on both ends,
// profile/examples/cookieless.conf) both SYNs carry the data without any
// option and the server acks it.
func cookieThenDataObserved(cookieless bool) *observation.Observation {
	o := observation.New("baseline/routed/ipv4/sendto/cookie-then-data", lab.IPv4)
	var pkts []capture.Packet
	var accepted []observation.Accepted
	for i := range 2 {
		c := cli(uint16(41000 + i))
		conn := observation.Conn{Client: "client", Node: "client", Mode: "sendto", Local: c, Remote: srv,
			Request: []byte("x\n"), Response: []byte("x\n"), Start: t0, FirstByte: 1e5, ClientLink: "client/to-router"}
		p := syn(0, c, &capture.FastOpenOption{})
		switch {
		case cookieless:
			p.FastOpen, p.Length = nil, 2
			conn.SynData = true
		case i == 1:
			p.FastOpen, p.Length = &capture.FastOpenOption{Cookie: []byte{1, 2, 3, 4}}, 2
			conn.SynData = true
		}
		pkts = append(pkts, p)
		o.Conns = append(o.Conns, conn)
		a := observation.Accepted{Remote: c, Request: []byte("x\n"), SynData: conn.SynData}
		if conn.SynData {
			a.Options = assertions.TCPIOptTFOChild
		}
		accepted = append(accepted, a)
	}
	o.Links["client/to-router"] = &observation.Link{Node: "client", Interface: "to-router", Packets: pkts}
	o.Services = []observation.Service{{Name: "service", Node: "server", Kind: "listener", Addr: srv, Accepted: accepted}}
	return o
}

func cookieThenDataUnder(tfo string, cookieless bool) Scenario {
	return Scenario{Name: "baseline/routed/ipv4/sendto/cookie-then-data", Pass: true,
		Sysctls:   map[string]map[string]string{"client": {"net.ipv4.tcp_fastopen": tfo}, "server": {"net.ipv4.tcp_fastopen": tfo}},
		Verdicts:  []assertions.Verdict{{Name: "connection 0", Pass: true}, {Name: "connection 1", Pass: true}},
		Behaviour: behaviourOf(cookieThenDataObserved(cookieless), 0, "client")}
}

// A candidate profile that turns cookie-less TFO on (0x207) shows in the
// diff twice: the sysctl bits as headlines, and the wire's cookie-less SYN
// data as a behaviour change; the report has a section for it.
func TestDiffCookielessOn(t *testing.T) {
	base := reportOf("default.conf", cookieThenDataUnder("3", false))
	cand := reportOf("cookieless.conf", cookieThenDataUnder("519", true))
	if got := cand.Scenarios[0].Behaviour.CookielessData; got != 2 {
		t.Fatalf("cookie-less data connections %d, want 2", got)
	}
	if got := base.Scenarios[0].Behaviour.CookielessData; got != 0 {
		t.Fatalf("baseline: cookie-less data connections %d, want 0 (its data SYN carried a cookie)", got)
	}
	md := Diff(base, cand).Markdown()
	wantAll(t, "diff", md,
		"client data without a cookie (0x4) on at client, server (net.ipv4.tcp_fastopen 3 → 519)",
		"server data without a cookie (0x200) on at client, server",
		"cookie-less SYN data on 2 of 2 connections; baseline: 0 of 2",
		"TFO carried data on 2 of 2 connections; baseline: 1 of 2",
	)
	if rep := Markdown(cand); !strings.Contains(rep, "## Cookie-less TFO") || !strings.Contains(rep, "| baseline/routed/ipv4/sendto/cookie-then-data | 2 of 2 connections carried data in a SYN without a cookie |") {
		t.Errorf("report lacks the cookie-less section:\n%s", rep)
	}
	if rep := Markdown(base); strings.Contains(rep, "## Cookie-less TFO") {
		t.Errorf("a report without cookie-less TFO has the section:\n%s", rep)
	}
}

// A 0x200 server's data-less TFO children (5.15+) are counted and diffed.
func TestDatalessChildrenCounted(t *testing.T) {
	o := cookieThenDataObserved(false)
	o.Services[0].Accepted[0].Options = assertions.TCPIOptTFOChild // the cookie request, made a child
	b := behaviourOf(o, 0, "client")
	if b.DatalessChildren != 1 {
		t.Fatalf("data-less children %d, want 1", b.DatalessChildren)
	}
	if w := b.NoCookieWords(); w != "1 SYN became a TFO child without data and without a cookie handed out" {
		t.Errorf("words %q", w)
	}
	got := noCookieChanges(Behaviour{}, b)
	if len(got) != 1 || got[0] != "1 data-less TFO children (cookie requests served without a cookie); baseline: 0" {
		t.Errorf("diff sentences %q", got)
	}
}
