package report

import (
	"fmt"
	"strings"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/observation"
)

// Cookie-less TFO in a report: what the no-cookie knobs did, read off the
// wire and the accepted sockets rather than off the knobs themselves, so
// that any of them shows up the same way: net.ipv4.tcp_fastopen 0x4 and
// 0x200 (in a profile), TCP_FASTOPEN_NO_COOKIE on a socket, or a route's
// fastopen_no_cookie metric (which no sysctl records).

// noCookieOf fills b's cookie-less figures from o: connections whose
// first SYN carried data without a TFO option that the server
// acknowledged, and accepted sockets that are passive TFO children
// without data in their SYN (what a 0x200 server makes of a cookie
// request since 5.15, handing out no cookie).
func noCookieOf(b *Behaviour, o *observation.Observation) {
	if o == nil {
		return
	}
	for i, c := range o.Conns {
		if !c.SynData || c.Label == observation.RoleProbe {
			continue
		}
		if syns := o.ClientSYNs(i); len(syns) > 0 && syns[0].FastOpen == nil && syns[0].Length > 0 {
			b.CookielessData++
		}
	}
	for _, svc := range o.Services {
		for _, a := range svc.Accepted {
			if !a.SynData && a.Options&assertions.TCPIOptTFOChild != 0 {
				b.DatalessChildren++
			}
		}
	}
}

// NoCookieWords is the cookie-less figures in a phrase, "" when both are
// zero: "2 of 4 connections carried data in a SYN without a cookie; 2
// cookie requests became TFO children without a cookie".
func (b Behaviour) NoCookieWords() string {
	var parts []string
	if b.CookielessData > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d connections carried data in a SYN without a cookie", b.CookielessData, b.Connections))
	}
	if b.DatalessChildren > 0 {
		parts = append(parts, fmt.Sprintf("%s became %s without data and without a cookie handed out",
			plural(b.DatalessChildren, "SYN"), map[bool]string{true: "a TFO child", false: "TFO children"}[b.DatalessChildren == 1]))
	}
	return strings.Join(parts, "; ")
}

// writeNoCookie lists the scenarios where cookie-less TFO happened.
func writeNoCookie(sb *strings.Builder, r *Report) {
	var rows []string
	for _, s := range r.Scenarios {
		if w := s.Behaviour.NoCookieWords(); w != "" {
			rows = append(rows, fmt.Sprintf("| %s | %s |", s.Name, w))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(sb, "## Cookie-less TFO\n\n")
	fmt.Fprintf(sb, "Data in a SYN without a cookie (net.ipv4.tcp_fastopen 0x4 on the client and 0x200 on the server, "+
		"TCP_FASTOPEN_NO_COOKIE on a socket, or a route's fastopen_no_cookie), and SYNs a server made TFO children "+
		"of without data (0x200 since 5.15: such a server hands out no cookie, so a client that needs one never sends data).\n\n")
	fmt.Fprintf(sb, "| scenario | what happened |\n|---|---|\n%s\n\n", strings.Join(rows, "\n"))
}

// noCookieChanges is the diff's sentences for the cookie-less figures,
// the candidate's first.
func noCookieChanges(bb, kb Behaviour) []string {
	var out []string
	if bb.CookielessData != kb.CookielessData {
		out = append(out, fmt.Sprintf("cookie-less SYN data on %d of %d connections; baseline: %d of %d", kb.CookielessData, kb.Connections, bb.CookielessData, bb.Connections))
	}
	if bb.DatalessChildren != kb.DatalessChildren {
		out = append(out, fmt.Sprintf("%d data-less TFO children (cookie requests served without a cookie); baseline: %d", kb.DatalessChildren, bb.DatalessChildren))
	}
	return out
}
