package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/tfolab/tfolab/lab/capture"
)

// TcpdumpLine prints a packet as `tcpdump -n -S` does, in UTC, e.g.
//
//	07:03:45.442747 IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 3248579141:3248579160, win 29200, options [mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 7,tfo cookie 2cc5086de402d86a,nop,nop], length 19
//
// ("IP6" for IPv6). It is capture.Packet.String with the protocol word
// tcpdump puts after the time; like it, it prints "tfo cookie" with one
// space where tcpdump prints two.
func TcpdumpLine(p capture.Packet) string {
	p.Time = p.Time.UTC()
	ts, rest, _ := strings.Cut(p.String(), " ")
	proto := "IP"
	if a := p.Src.Addr(); a.Is6() && !a.Is4In6() {
		proto = "IP6"
	}
	return ts + " " + proto + " " + rest
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write JSON report: %w", err)
	}
	return nil
}

// WriteMarkdown writes r for people: a summary table, then per server its
// verdict, why, cost, connections, evidence and how to reproduce it.
func WriteMarkdown(w io.Writer, r *Report) error {
	var b strings.Builder
	b.WriteString("# TFO diagnosis\n\n")
	for _, f := range r.Files {
		fmt.Fprintf(&b, "- `%s`: %s", f.Path, f.Format)
		if f.Gzip {
			b.WriteString(" (gzip)")
		}
		fmt.Fprintf(&b, ", %s; %d packets, %d TCP, %d SYNs, %d connections; %s side",
			strings.Join(f.LinkTypes, "+"), f.Packets, f.TCP, f.SYNs, f.Conns, f.Side)
		if f.Truncated {
			b.WriteString("; **truncated**")
		}
		b.WriteString("\n")
	}
	if len(r.Files) == 2 {
		fmt.Fprintf(&b, "- %d connections found in both captures", r.Matched)
		if r.Matched > 0 {
			fmt.Fprintf(&b, " (server side's clock %+.3f ms from the client side's, path delay included)", r.ClockOffsetMS)
		}
		b.WriteString("\n")
	}
	b.WriteString("- Times are UTC. Precedence when several verdicts apply: " + joinVerdicts(r.Precedence) + ".\n")
	for _, wr := range r.Warnings {
		fmt.Fprintf(&b, "- **Warning**: %s\n", wr)
	}
	if len(r.Servers) == 0 {
		b.WriteString("\nNo server: no TCP handshake in the capture(s).\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	b.WriteString("\n| server | verdict | connections | cost per connection |\n|---|---|---|---|\n")
	for _, s := range r.Servers {
		v := string(s.Verdict)
		if s.Problem {
			v = "**" + v + "**"
		}
		fmt.Fprintf(&b, "| %s | %s | %d of %d | %s |\n", s.Server, v, s.Connections, s.TotalConnections, costText(s.CostMS))
	}
	for _, s := range r.Servers {
		writeServer(&b, s)
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write Markdown report: %w", err)
	}
	return nil
}

func joinVerdicts(vs []Verdict) string {
	var s []string
	for _, v := range vs {
		s = append(s, string(v))
	}
	return strings.Join(s, " > ")
}

func costText(c float64) string {
	if c == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", c)
}

func writeServer(b *strings.Builder, s ServerReport) {
	fmt.Fprintf(b, "\n## %s: %s\n\n%s\n\n", s.Server, s.Verdict, capitalize(s.Reason))
	fmt.Fprintf(b, "- Connections: %d (of %d to this server", s.Connections, s.TotalConnections)
	if s.Matched > 0 {
		fmt.Fprintf(b, ", %d seen in both captures", s.Matched)
	}
	b.WriteString(")\n")
	if s.CostMS > 0 {
		fmt.Fprintf(b, "- Cost: %.1f ms per affected connection\n", s.CostMS)
	}
	if s.RTTMS > 0 {
		fmt.Fprintf(b, "- Handshake round trip: %.2f ms (median)\n", s.RTTMS)
	}
	if len(s.SeenAs) > 0 {
		fmt.Fprintf(b, "- Seen by the server as: %s (NAT)\n", strings.Join(s.SeenAs, ", "))
	}
	if len(s.Pauses) > 0 {
		var ps []string
		for _, p := range s.Pauses {
			t := fmt.Sprintf("%.2f s (%d plain SYNs)", p.Seconds, p.Plain)
			if p.Open {
				t = "≥ " + t + ", still on at capture end"
			}
			ps = append(ps, t)
		}
		fmt.Fprintf(b, "- Pauses: %s\n", strings.Join(ps, "; "))
	}
	for _, a := range s.Also {
		fmt.Fprintf(b, "- Also %s (%s): %s\n", a.Verdict, plural(a.Connections, "connection"), a.Reason)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(b, "- Note: %s\n", n)
	}
	if rp := s.Reproduce; rp != nil {
		fmt.Fprintf(b, "- Reproduce: `%s`\n", rp.Command)
	}
	if len(s.Evidence) > 0 {
		b.WriteString("\nEvidence:\n\n```\n")
		last := ""
		for i, l := range s.Evidence {
			if i < len(s.EvidenceFiles) && s.EvidenceFiles[i] != last {
				last = s.EvidenceFiles[i]
				fmt.Fprintf(b, "# %s\n", filepath.Base(last))
			}
			b.WriteString(l + "\n")
		}
		b.WriteString("```\n")
	}
	if rp := s.Reproduce; rp != nil && rp.Rules != "" {
		flag := "--rules"
		if rp.Family == "ipv6" {
			flag = "--rules6"
		}
		fmt.Fprintf(b, "\nA firewall that does the same (the lab's %s middlebox, iptables-save format; check it with `tfolab firewall %s FILE --port %d`):\n\n```\n%s```\n",
			rp.Middlebox, flag, rp.Port, rp.Rules)
	}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
