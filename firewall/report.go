package firewall

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tfolab/tfolab/harness"
	"github.com/tfolab/tfolab/observation"
)

// Report is a whole check: a finding per variant, the families no file
// covered, and where the artefacts went.
type Report struct {
	Input     Input     `json:"input"`
	Place     string    `json:"place"`
	Described string    `json:"described"`
	Kernel    string    `json:"kernel"`
	Started   time.Time `json:"started"`
	// Elapsed is the wall time of all variants, run at once.
	Elapsed  time.Duration `json:"elapsed_ns"`
	Findings []Finding     `json:"findings"`
	// NoRules are the families no file covers ("IPv6"): not tested.
	NoRules []string `json:"no_rules_given,omitempty"`
	// Results are the harness runs behind the findings, in order.
	Results []harness.Result `json:"-"`
}

// Safe reports whether every tested path is TFO-safe.
func (r *Report) Safe() bool {
	for _, f := range r.Findings {
		if f.Kind != Safe {
			return false
		}
	}
	return len(r.Findings) > 0
}

// Count returns how many findings got kind k.
func (r *Report) Count(k Kind) int {
	n := 0
	for _, f := range r.Findings {
		if f.Kind == k {
			n++
		}
	}
	return n
}

// Headline is the verdict with its measured cost.
func (f Finding) Headline() string {
	s := f.Kind.Title()
	if f.Kind == RTO && f.Cost > 0 {
		s += fmt.Sprintf(" (+%.2f s)", f.Cost.Seconds())
	}
	if f.Paused && f.Kind != Paused {
		s += ", detection pauses TFO host-wide"
	}
	return s
}

// lostShort is what was lost, without the connection numbers.
func (f Finding) lostShort() string {
	var out []string
	for _, l := range f.Lost {
		if !slices.Contains(out, l.What) {
			out = append(out, l.What)
		}
	}
	return strings.Join(out, "; ")
}

// rulesShort names the acting rules that matched ("v4.rules:7 ×3"), or
// the matching ones if none acts.
func (f Finding) rulesShort() string {
	if f.NoMatch {
		return "none matched"
	}
	var out []string
	for _, h := range f.Rules {
		if h.Acts {
			out = append(out, fmt.Sprintf("%s ×%d", h.At(), h.Packets))
		}
	}
	if len(out) == 0 && f.Kind != Safe {
		for _, h := range f.Rules {
			out = append(out, fmt.Sprintf("%s ×%d", h.At(), h.Packets))
		}
	}
	return strings.Join(out, ", ")
}

// Table is the verdicts, one row per variant, for a terminal.
func (r *Report) Table() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "FAMILY\tMODE\tPHASE\tDETECTION\tVERDICT\tLOST OR CHANGED\tACTING RULES (file:line ×packets)")
	for _, f := range r.Findings {
		v := f.Variant
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Family, v.Mode, v.Phase, onOff(v.Detection), f.Headline(), dash(f.lostShort()), dash(f.rulesShort()))
	}
	for _, fam := range r.NoRules {
		fmt.Fprintf(w, "%s\t-\t-\t-\t%s (not tested)\t-\t-\n", fam, NoRules.Title())
	}
	w.Flush()
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Summary is the closing line: how many paths, how many safe, how long.
func (r *Report) Summary() string {
	var parts []string
	for _, k := range append(append([]Kind(nil), Kinds...), RunFailed) {
		if n := r.Count(k); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k.Title()))
		}
	}
	return fmt.Sprintf("%d paths tested in %.1f s: %s", len(r.Findings), r.Elapsed.Seconds(), strings.Join(parts, ", "))
}

// Details is, for a person reading a terminal, one block per kind of
// failure: the first variant that got it, with its evidence; the rest are
// in the Markdown report. Empty when every path is TFO-safe.
func (r *Report) Details() string {
	var b strings.Builder
	shown := map[string]bool{}
	for _, f := range r.Findings {
		key := string(f.Kind) + "|" + f.Variant.Family.String()
		if f.Kind == Safe || shown[key] {
			if f.Kind == Safe && f.Hint != "" && !shown["hint"] {
				shown["hint"] = true
				fmt.Fprintf(&b, "\nhint: %s\n", f.Hint)
			}
			continue
		}
		shown[key] = true
		b.WriteString("\n" + f.details(true))
	}
	return b.String()
}

// details is one finding in full.
func (f Finding) details(brief bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "✗ %s: %s\n", f.Variant, f.Headline())
	for _, l := range f.Lost {
		fmt.Fprintf(&b, "  lost: %s\n", l)
	}
	if f.Schedule != "" {
		cost := ""
		if f.Baseline > 0 {
			cost = fmt.Sprintf("; open path first byte %s", observation.Ms(f.Baseline))
		}
		fmt.Fprintf(&b, "  cost: %s%s\n", f.Schedule, cost)
	}
	for _, n := range f.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	for _, h := range f.Rules {
		verb := "matched"
		if h.Acts {
			verb = "acted on"
		}
		rule := h.Rule
		if brief {
			rule = truncate(rule, 140)
		}
		fmt.Fprintf(&b, "  rule %s %s %d packet%s: %s\n", h.At(), verb, h.Packets, plural(int(h.Packets)), rule)
	}
	if f.Hint != "" {
		fmt.Fprintf(&b, "  hint: %s\n", f.Hint)
	}
	if f.Err != "" {
		fmt.Fprintf(&b, "  error: %s\n", f.Err)
	}
	ev := f.Evidence
	if brief && f.Brief != "" {
		ev = f.Brief
	}
	if ev != "" {
		b.WriteString("  evidence:\n")
		for _, line := range strings.Split(strings.TrimRight(ev, "\n"), "\n") {
			fmt.Fprintf(&b, "    %s\n", line)
		}
	}
	if f.Dir != "" {
		fmt.Fprintf(&b, "  pcaps and observation: %s\n", f.Dir)
	}
	return b.String()
}

// Markdown is the report as a document: the input, the verdict table, and
// every path that is not TFO-safe with its evidence.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("# tfolab firewall check\n\n")
	fmt.Fprintf(&b, "- ruleset: %s\n- kernel: %s\n- run: %s, %s\n\n", r.Described, r.Kernel, r.Started.Format(time.RFC3339), r.Summary())
	b.WriteString("| family | mode | phase | detection | verdict | lost or changed | acting rules (file:line ×packets) |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, f := range r.Findings {
		v := f.Variant
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", v.Family, v.Mode, v.Phase, onOff(v.Detection), mdCell(f.Headline()), mdCell(dash(f.lostShort())), mdCell(dash(f.rulesShort())))
	}
	for _, fam := range r.NoRules {
		fmt.Fprintf(&b, "| %s | - | - | - | %s (not tested) | - | - |\n", fam, NoRules.Title())
	}
	for _, f := range r.Findings {
		if f.Kind == Safe && f.Hint == "" {
			continue
		}
		fmt.Fprintf(&b, "\n## %s: %s\n\n", f.Variant, f.Headline())
		for _, l := range f.Lost {
			fmt.Fprintf(&b, "- lost: %s\n", mdCell(l.String()))
		}
		if f.Schedule != "" {
			fmt.Fprintf(&b, "- cost: %s (open path first byte %s)\n", f.Schedule, observation.Ms(f.Baseline))
		}
		for _, n := range f.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		if f.Hint != "" {
			fmt.Fprintf(&b, "- hint: %s\n", f.Hint)
		}
		for _, h := range f.Rules {
			fmt.Fprintf(&b, "- rule `%s` (%d packets): `%s`\n", h.At(), h.Packets, h.Rule)
		}
		if f.Err != "" {
			fmt.Fprintf(&b, "- error: %s\n", f.Err)
		}
		if f.Dir != "" {
			fmt.Fprintf(&b, "- observation and pcaps: `%s`\n", f.Dir)
		}
		fmt.Fprintf(&b, "\n```\n%s```\n", f.Evidence)
	}
	return b.String()
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// Report file names in Options.Out.
const (
	MarkdownFile = "firewall.md"
	JSONFile     = "firewall.json"
)

// Write writes the Markdown and JSON reports into dir and returns their
// paths.
func (r *Report) Write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("firewall: report: %w", err)
	}
	md := filepath.Join(dir, MarkdownFile)
	if err := os.WriteFile(md, []byte(r.Markdown()), 0o644); err != nil {
		return nil, fmt.Errorf("firewall: report: %w", err)
	}
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return []string{md}, fmt.Errorf("firewall: report: %w", err)
	}
	js := filepath.Join(dir, JSONFile)
	if err := os.WriteFile(js, append(b, '\n'), 0o644); err != nil {
		return []string{md}, fmt.Errorf("firewall: report: %w", err)
	}
	return []string{md, js}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + " …"
}
