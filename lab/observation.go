package lab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/tcpmetrics"
	"github.com/tfolab/tfolab/lab/tfo"
)

// Observation is everything one scenario run produced: what the
// applications saw, what crossed each captured link, and what the kernel
// counted. Expectations (assertions/) are matchers over it, so the suite and
// a report judge the very same data.
type Observation struct {
	Scenario string
	Server   netip.AddrPort
	// Conns are the client connections, in the order they were made.
	Conns []tfo.Result
	// Accepted are the server's records of the connections it served.
	Accepted []tfo.Accepted
	// Counters are per-role counter deltas over the workload.
	Counters map[string]Counters
	// Metrics are per-role tcp_metrics entries after the workload.
	Metrics map[string][]tcpmetrics.Entry
	// Packets are the TCP packets captured on each link, keyed by the
	// capture's label ("client": the client's interface, "server": the
	// server's interface).
	Packets map[string][]capture.Packet
	// CaptureDrops counts frames the kernel dropped per capture; a non-zero
	// value means packet assertions may lack evidence.
	CaptureDrops map[string]uint64
	// Elapsed is the workload's wall time.
	Elapsed time.Duration
	// Middlebox lists the middlebox's rules with how many packets each
	// matched: evidence that the firewall, not something else, acted.
	Middlebox []RuleHits
	// SynSchedule is the client namespace's SYN retransmission schedule,
	// from its sysctls: what timing expectations derive their windows from.
	SynSchedule SynSchedule
	// Marks are named moments a scripted workload recorded.
	Marks []Mark

	captures map[string]*capture.Capture
}

// Mark is a named moment of a scripted workload; Conns is how many
// connections had been made by then.
type Mark struct {
	Name  string
	At    time.Time
	Conns int
}

// RuleHits is one firewall rule and the packets it matched.
type RuleHits struct {
	Rule    string
	Packets uint64
}

// AddCapture attaches a capture so its frames can be written as pcap.
func (o *Observation) AddCapture(c *capture.Capture) {
	if o.captures == nil {
		o.captures = map[string]*capture.Capture{}
	}
	o.captures[c.Link()] = c
}

// ConnPackets returns the packets of connection i captured on link: those
// between the connection's client address/port and its server address/port.
// The client may reuse a port for a later connection to the same server
// port (the server, closing first, holds the TIME-WAIT); such connections
// share the 4-tuple, so each gets only the packets from its own start to
// the next one's start.
func (o *Observation) ConnPackets(i int, link string) []capture.Packet {
	if i < 0 || i >= len(o.Conns) {
		return nil
	}
	c := o.Conns[i]
	var from, until time.Time // zero: unbounded
	for j, d := range o.Conns {
		if j == i || d.Local != c.Local || d.Remote != c.Remote {
			continue
		}
		switch {
		case d.Start.Before(c.Start):
			from = c.Start
		case d.Start.After(c.Start) && (until.IsZero() || d.Start.Before(until)):
			until = d.Start
		}
	}
	var out []capture.Packet
	for _, p := range o.Packets[link] {
		if (p.Src != c.Local || p.Dst != c.Remote) && (p.Src != c.Remote || p.Dst != c.Local) {
			continue
		}
		if (!from.IsZero() && p.Time.Before(from)) || (!until.IsZero() && !p.Time.Before(until)) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// Links returns the captured link labels, sorted.
func (o *Observation) Links() []string {
	var links []string
	for l := range o.Packets {
		links = append(links, l)
	}
	sort.Strings(links)
	return links
}

// Roles returns the roles that have counters, sorted.
func (o *Observation) Roles() []string {
	var roles []string
	for r := range o.Counters {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	return roles
}

// ConnSummary is one line per connection: mode, SYN data, failure, timings.
func (o *Observation) ConnSummary() string {
	var b strings.Builder
	for i, c := range o.Conns {
		status := "ok"
		if c.Err != nil {
			status = "error: " + c.Err.Error()
		}
		label := ""
		if c.Label != "" {
			label = " [" + c.Label + "]"
		}
		fmt.Fprintf(&b, "  conn %d%s %s %s -> %s: syn_data=%t client_fail=%s connected=%s first_byte=%s retrans=%d %s\n",
			i, label, c.Mode, c.Local, c.Remote, c.SynData, c.ClientFail, ms(c.Connected), ms(c.FirstByte), c.TotalRetrans, status)
	}
	return b.String()
}

// CounterSummary renders the TFO counters of every role.
func (o *Observation) CounterSummary() string {
	var b strings.Builder
	for _, r := range o.Roles() {
		fmt.Fprintf(&b, "%s counters (delta):\n%s", r, o.Counters[r].Table(FastOpenCounters...))
	}
	return b.String()
}

// MarkSummary renders a scripted workload's marks.
func (o *Observation) MarkSummary() string {
	var b strings.Builder
	for _, m := range o.Marks {
		fmt.Fprintf(&b, "  mark %s %q after %d connections\n", m.At.Format("15:04:05.000000"), m.Name, m.Conns)
	}
	return b.String()
}

// MiddleboxSummary renders the middlebox's rules and their packet counts.
func (o *Observation) MiddleboxSummary() string {
	if len(o.Middlebox) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("middlebox rules (packets matched):\n")
	for _, r := range o.Middlebox {
		fmt.Fprintf(&b, "  %6d  %s\n", r.Packets, r.Rule)
	}
	return b.String()
}

// PacketSummary renders every captured packet, link by link, tcpdump style.
func (o *Observation) PacketSummary() string {
	var b strings.Builder
	for _, l := range o.Links() {
		fmt.Fprintf(&b, "packets on %s link:\n", l)
		for _, p := range o.Packets[l] {
			fmt.Fprintf(&b, "  %s\n", p)
		}
		if d := o.CaptureDrops[l]; d > 0 {
			fmt.Fprintf(&b, "  (%d frames dropped by the kernel: evidence may be missing)\n", d)
		}
	}
	return b.String()
}

// MetricsSummary renders the tcp_metrics entries of every role.
func (o *Observation) MetricsSummary() string {
	var b strings.Builder
	var roles []string
	for r := range o.Metrics {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range roles {
		fmt.Fprintf(&b, "%s tcp_metrics:\n", r)
		if len(o.Metrics[r]) == 0 {
			b.WriteString("  (empty)\n")
		}
		for _, e := range o.Metrics[r] {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	return b.String()
}

// String is the whole observation, as a failure message or report shows it.
func (o *Observation) String() string {
	return fmt.Sprintf("scenario %s (server %s, workload %s)\n%s%s%s%s%s",
		o.Scenario, o.Server, ms(o.Elapsed), o.ConnSummary()+o.MarkSummary(), o.MiddleboxSummary(), o.CounterSummary(), o.MetricsSummary(), o.PacketSummary())
}

// WriteArtifacts writes one pcap per captured link and a summary text file
// into dir, and returns the paths written.
func (o *Observation) WriteArtifacts(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("artefacts dir: %w", err)
	}
	var paths []string
	for link, c := range o.captures {
		p := filepath.Join(dir, link+".pcap")
		if err := c.WritePcap(p); err != nil {
			return paths, fmt.Errorf("write %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	p := filepath.Join(dir, "observation.txt")
	if err := os.WriteFile(p, []byte(o.String()), 0o644); err != nil {
		return paths, fmt.Errorf("write %s: %w", p, err)
	}
	sort.Strings(paths)
	return append(paths, p), nil
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
}
