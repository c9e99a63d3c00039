package diagnose

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/tfolab/tfolab/lab/capture"
)

// Options tune a diagnosis.
type Options struct {
	// Server, if valid, restricts the report to that server (the SYN's
	// destination as the client saw it, or as the server did behind a NAT).
	Server netip.AddrPort
}

// Report is a diagnosis: one entry per server, the files read, and what
// went wrong reading them.
type Report struct {
	Servers  []ServerReport `json:"servers"`
	Files    []FileSummary  `json:"files"`
	Warnings []string       `json:"warnings"`
	// Matched counts connections found in both captures (two files only).
	Matched int `json:"matched_connections,omitempty"`
	// ClockOffsetMS is how far the server-side capture's clock (plus the
	// path's one-way delay) is ahead of the client side's.
	ClockOffsetMS float64   `json:"clock_offset_ms,omitempty"`
	Precedence    []Verdict `json:"precedence"`
}

// Worst is the capture's verdict: the worst of its servers' by
// Precedence (a problem outranks a working server); inconclusive when it
// has no server.
func (r *Report) Worst() Verdict {
	worst := Inconclusive
	for _, s := range r.Servers {
		if slices.Index(Precedence, s.Verdict) < slices.Index(Precedence, worst) {
			worst = s.Verdict
		}
	}
	return worst
}

// Problem reports whether any server's verdict is a problem.
func (r *Report) Problem() bool {
	for _, s := range r.Servers {
		if s.Verdict.Problem() {
			return true
		}
	}
	return false
}

// FileSummary describes one capture as read.
type FileSummary struct {
	Path      string    `json:"path"`
	Format    string    `json:"format"`
	Gzip      bool      `json:"gzip,omitempty"`
	LinkTypes []string  `json:"link_types"`
	Bytes     int64     `json:"bytes"`
	Packets   int       `json:"packets"`
	TCP       int       `json:"tcp_packets"`
	SYNs      int       `json:"syns"`
	Cut       int       `json:"cut_tcp_headers,omitempty"`
	Conns     int       `json:"connections"`
	Side      string    `json:"side"`
	Truncated bool      `json:"truncated,omitempty"`
	First     time.Time `json:"first,omitzero"`
	Last      time.Time `json:"last,omitzero"`
	links     []layers.LinkType
}

func (s *FileSummary) addLink(l layers.LinkType) {
	if !slices.Contains(s.links, l) {
		s.links = append(s.links, l)
		s.LinkTypes = append(s.LinkTypes, linkName(l))
	}
}

func linkName(l layers.LinkType) string {
	switch l {
	case layers.LinkTypeEthernet:
		return "Ethernet"
	case layers.LinkTypeLinuxSLL:
		return "Linux SLL"
	case layers.LinkTypeLinuxSLL2:
		return "Linux SLL2"
	case layers.LinkTypeRaw, linkRawBSD, linkRawOpenBS:
		return fmt.Sprintf("raw IP (%d)", int(l))
	case layers.LinkTypeIPv4:
		return "raw IPv4"
	case layers.LinkTypeIPv6:
		return "raw IPv6"
	case layers.LinkTypeNull:
		return "BSD loopback"
	case layers.LinkTypeLoop:
		return "OpenBSD loopback"
	}
	return fmt.Sprintf("link type %d", int(l))
}

// ServerReport is one server's verdict.
type ServerReport struct {
	Server  string  `json:"server"`
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason"`
	Problem bool    `json:"problem"`
	// Connections is how many connections the verdict rests on,
	// TotalConnections how many the server had.
	Connections      int     `json:"connections"`
	TotalConnections int     `json:"total_connections"`
	CostMS           float64 `json:"cost_ms"`
	RTTMS            float64 `json:"rtt_ms,omitempty"`
	// Evidence are tcpdump-style lines; EvidenceFiles says which capture
	// each came from.
	Evidence      []string       `json:"evidence"`
	EvidenceFiles []string       `json:"evidence_files,omitempty"`
	Also          []Finding      `json:"also,omitempty"`
	Notes         []string       `json:"notes,omitempty"`
	Counts        map[string]int `json:"counts"`
	Pauses        []PauseReport  `json:"pauses,omitempty"`
	SeenAs        []string       `json:"seen_as,omitempty"`
	Matched       int            `json:"matched_connections,omitempty"`
	Reproduce     *Reproducer    `json:"reproduce,omitempty"`
}

// PauseReport is a Pause as reported.
type PauseReport struct {
	Pause
	Seconds float64 `json:"seconds"`
	Open    bool    `json:"open,omitempty"`
}

// Finding is a verdict that also applies, below the winning one.
type Finding struct {
	Verdict     Verdict `json:"verdict"`
	Reason      string  `json:"reason"`
	Connections int     `json:"connections"`
	CostMS      float64 `json:"cost_ms"`
}

// Diagnose reads one capture, or two of the same traffic (typically one at
// the client, one at the server), and returns a verdict per server. An
// error that is an *InputError means nothing could be diagnosed (missing
// file, not a capture, no TCP); a truncated file only adds a warning. On
// cancellation it returns ctx's error.
func Diagnose(ctx context.Context, paths []string, opt Options) (*Report, error) {
	if len(paths) == 0 || len(paths) > 2 {
		return nil, fmt.Errorf("diagnose: want one or two captures, got %d", len(paths))
	}
	rep := &Report{Precedence: Precedence, Warnings: []string{}}
	warn := func(s string) { rep.Warnings = append(rep.Warnings, s) }
	var srcs []*source
	defer func() {
		for _, s := range srcs {
			s.close()
		}
	}()
	for i, p := range paths {
		s, err := openSource(p, i, warn)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, s)
	}
	agg := newAggregator(paths)
	var err error
	if len(srcs) == 1 {
		err = runSingle(ctx, srcs[0], agg, warn)
	} else {
		err = runPair(ctx, srcs, paths, agg, rep, warn)
	}
	for _, s := range srcs {
		rep.Files = append(rep.Files, *s.sum)
	}
	if err != nil {
		return rep, err
	}
	var noTCP []error
	for _, s := range srcs {
		switch {
		case s.sum.TCP == 0:
			noTCP = append(noTCP, &InputError{s.path, fmt.Errorf("%w (%d packets read)", ErrNoTCP, s.sum.Packets)})
		case s.sum.SYNs == 0 && s.sum.Cut > 0:
			noTCP = append(noTCP, &InputError{s.path, fmt.Errorf("%w: %d of %d TCP segments, no SYN readable", ErrHeadersCut, s.sum.Cut, s.sum.TCP)})
		case s.sum.SYNs == 0:
			warn(fmt.Sprintf("%s: no SYN among %d TCP segments: the capture started after the connections opened; nothing to judge", s.path, s.sum.TCP))
		case s.sum.Cut > 0:
			agg.cut = true
			warn(fmt.Sprintf("%s: %d of %d TCP headers are cut by the snap length and were skipped", s.path, s.sum.Cut, s.sum.TCP))
		}
	}
	if len(noTCP) == len(srcs) {
		return rep, errors.Join(noTCP...)
	}
	for _, e := range noTCP {
		warn(e.Error() + "; diagnosing the other capture on its own")
	}
	rep.Servers = agg.report(opt.Server)
	return rep, nil
}

// runSingle diagnoses one capture.
func runSingle(ctx context.Context, src *source, agg *aggregator, warn func(string)) error {
	pat := newPatterns(agg, warn)
	tr := newTracker(src, pat, func(c *conn) {
		src.sum.Conns++
		o := c.classify()
		pat.onOutcome(c.file, c, o.kind)
		agg.fold(c.server, c, o, false, c.server)
	}, func(_ int, p *capture.Packet) { agg.server(p.Src).orphans++ })
	tr.postDone = func(r *postRec, delivered bool) { agg.foldAfter(r.server, r, delivered) }
	for i := 0; ; i++ {
		if i&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("diagnose %s: %w", src.path, err)
			}
		}
		p, ok := src.next()
		if !ok {
			break
		}
		tr.handle(p)
	}
	tr.flush()
	pat.flush()
	src.sum.Side = sideOfFile(tr.votes)
	return nil
}

func sideOfFile(v [3]int) string {
	switch c, s := v[sideClient], v[sideServer]; {
	case c == 0 && s == 0:
		return "unknown"
	case s == 0 || c >= 4*s:
		return "client"
	case c == 0 || s >= 4*c:
		return "server"
	}
	return "mixed"
}

// report turns the aggregates into ServerReports, problems first, then by
// address.
func (a *aggregator) report(only netip.AddrPort) []ServerReport {
	var out []ServerReport
	for _, g := range a.servers {
		if only.IsValid() && g.server != only && !g.seenAs[only] {
			continue
		}
		out = append(out, g.report())
	}
	if only.IsValid() && len(out) == 0 {
		out = append(out, a.server(only).report())
	}
	slices.SortFunc(out, func(x, y ServerReport) int {
		if x.Problem != y.Problem {
			if x.Problem {
				return -1
			}
			return 1
		}
		return cmp.Compare(x.Server, y.Server)
	})
	return out
}

func (g *serverAgg) report() ServerReport {
	fs, notes := g.findings()
	w := fs[0]
	r := ServerReport{
		Server:           g.server.String(),
		Verdict:          w.verdict,
		Reason:           w.reason,
		Problem:          w.verdict.Problem(),
		Connections:      w.n,
		TotalConnections: g.total,
		Notes:            notes,
		Counts:           map[string]int{},
		Matched:          g.pairs,
	}
	if w.hasCost && w.verdict.Problem() {
		r.CostMS = w.cost
	}
	if rtt, ok := g.medianRTT(); ok {
		r.RTTMS = ms(rtt)
	}
	for k := range numKinds {
		if g.counts[k] > 0 {
			r.Counts[k.String()] = g.counts[k]
		}
	}
	for _, f := range fs[1:] {
		fc := 0.0
		if f.hasCost && f.verdict.Problem() {
			fc = f.cost
		}
		r.Also = append(r.Also, Finding{Verdict: f.verdict, Reason: f.reason, Connections: f.n, CostMS: fc})
	}
	for _, ev := range g.evidence(w.kinds) {
		r.Evidence = append(r.Evidence, ev.line)
		if len(g.agg.files) > 1 {
			r.EvidenceFiles = append(r.EvidenceFiles, g.agg.files[ev.file])
		}
	}
	if r.Evidence == nil {
		r.Evidence = []string{}
	}
	for _, p := range g.pauseList() {
		r.Pauses = append(r.Pauses, PauseReport{Pause: p, Seconds: p.Length().Seconds(), Open: p.Open()})
	}
	for _, s := range slices.SortedFunc(maps.Keys(g.seenAs), func(a, b netip.AddrPort) int { return a.Compare(b) }) {
		r.SeenAs = append(r.SeenAs, s.String())
	}
	r.Reproduce = reproducer(w, g.server)
	return r
}
