package report

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tfolab/tfolab/middlebox"
)

// Comparison is what changed between a baseline report and a candidate:
// two profiles, two kernels, or both.
type Comparison struct {
	Base, Cand *Report
	// Settings are the effective sysctls that differ, aggregated per node
	// and key; Headlines say what they mean for TFO ("server TFO off").
	Settings  []string
	Headlines []string
	// Regressions are scenarios where an expectation that held under the
	// baseline fails (or did not run) under the candidate.
	Regressions []ScenarioChange
	// Fixed are scenarios where one that failed now holds.
	Fixed []ScenarioChange
	// Changed are scenarios whose behaviour changed with no regression.
	Changed []ScenarioChange
	// OnlyBase and OnlyCand are scenarios one report lacks.
	OnlyBase, OnlyCand []string
}

// ScenarioChange is one scenario's differences.
type ScenarioChange struct {
	Scenario string
	// Verdicts are the expectations that regressed (or were fixed).
	Verdicts []string
	// Total is how many expectations the baseline judged.
	Total int
	// Behaviour are the behaviour changes in words, candidate first:
	// "TFO carried data on 0 of 2 connections; baseline: 1 of 2".
	Behaviour []string
}

// Regressed counts the expectations that regressed.
func (c *Comparison) Regressed() int {
	n := 0
	for _, r := range c.Regressions {
		n += len(r.Verdicts)
	}
	return n
}

// Diff compares two reports.
func Diff(base, cand *Report) *Comparison {
	c := &Comparison{Base: base, Cand: cand}
	c.settings()
	for _, b := range base.Scenarios {
		k, ok := cand.Scenario(b.Name)
		if !ok {
			c.OnlyBase = append(c.OnlyBase, b.Name)
			continue
		}
		if b.Unsupported != "" || k.Unsupported != "" {
			// A kernel that cannot run it is no regression: say so.
			if b.Unsupported != k.Unsupported {
				c.Changed = append(c.Changed, ScenarioChange{Scenario: b.Name, Total: len(b.Verdicts), Behaviour: []string{unsupportedChange(b, k)}})
			}
			continue
		}
		ch := ScenarioChange{Scenario: b.Name, Total: len(b.Verdicts), Behaviour: behaviourChanges(b, k)}
		fixed := ScenarioChange{Scenario: b.Name, Total: len(b.Verdicts), Behaviour: ch.Behaviour}
		for _, v := range b.Verdicts {
			kv, ok := k.verdict(v.Name)
			switch {
			case v.Pass && (!ok || !kv.Pass):
				ch.Verdicts = append(ch.Verdicts, v.Name)
			case !v.Pass && ok && kv.Pass:
				fixed.Verdicts = append(fixed.Verdicts, v.Name)
			}
		}
		if k.Error != "" && b.Error == "" {
			ch.Behaviour = append([]string{"the run failed: " + firstLine(k.Error)}, ch.Behaviour...)
		}
		switch {
		case len(ch.Verdicts) > 0:
			c.Regressions = append(c.Regressions, ch)
		case len(fixed.Verdicts) > 0:
			c.Fixed = append(c.Fixed, fixed)
		case len(ch.Behaviour) > 0:
			c.Changed = append(c.Changed, ch)
		}
	}
	for _, k := range cand.Scenarios {
		if _, ok := base.Scenario(k.Name); !ok {
			c.OnlyCand = append(c.OnlyCand, k.Name)
		}
	}
	return c
}

// unsupportedChange says which side's kernel could not run the scenario.
func unsupportedChange(b, k Scenario) string {
	switch {
	case k.Unsupported != "" && b.Unsupported != "":
		return "candidate: " + k.Unsupported + "; baseline: " + b.Unsupported
	case k.Unsupported != "":
		return "candidate: " + k.Unsupported + "; baseline: ran"
	}
	return "candidate: ran; baseline: " + b.Unsupported
}

// settings aggregates the effective sysctls that differ, scenario by
// scenario, and names what they mean.
func (c *Comparison) settings() {
	type change struct{ node, key, from, to string }
	counts := map[change]int{}
	for _, b := range c.Base.Scenarios {
		k, ok := c.Cand.Scenario(b.Name)
		if !ok || b.Unsupported != "" || k.Unsupported != "" {
			continue
		}
		nodes := map[string]bool{}
		for n := range b.Sysctls {
			nodes[n] = true
		}
		for n := range k.Sysctls {
			nodes[n] = true
		}
		for n := range nodes {
			keys := map[string]bool{}
			for key := range b.Sysctls[n] {
				keys[key] = true
			}
			for key := range k.Sysctls[n] {
				keys[key] = true
			}
			for key := range keys {
				from, okB := b.Sysctls[n][key]
				to, okC := k.Sysctls[n][key]
				if from == to && okB == okC {
					continue
				}
				if !okB {
					from = "(not set: the namespace's default)"
				}
				if !okC {
					to = "(not set: the namespace's default)"
				}
				counts[change{n, key, from, to}]++
			}
		}
	}
	// One line per (key, from, to), naming the nodes with their counts.
	type group struct{ key, from, to string }
	var groups []group
	nodesOf := map[group][]string{}
	changes := make([]change, 0, len(counts))
	for ch := range counts {
		changes = append(changes, ch)
	}
	slices.SortFunc(changes, func(a, b change) int {
		return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.from, b.from), cmp.Compare(a.to, b.to), cmp.Compare(a.node, b.node))
	})
	// A headline names every node it applies to: "blackhole detection on
	// at client, router, server (timeout 1 s)".
	var heads []string
	onNodes := map[string][]string{}
	for _, ch := range changes {
		g := group{ch.key, ch.from, ch.to}
		if nodesOf[g] == nil {
			groups = append(groups, g)
		}
		nodesOf[g] = append(nodesOf[g], fmt.Sprintf("%s (%d)", ch.node, counts[ch]))
		for _, h := range meaning(ch.key, ch.from, ch.to) {
			if onNodes[h] == nil {
				heads = append(heads, h)
			}
			if !slices.Contains(onNodes[h], ch.node) {
				onNodes[h] = append(onNodes[h], ch.node)
			}
		}
	}
	for _, g := range groups {
		c.Settings = append(c.Settings, fmt.Sprintf("`%s`: %s → %s at %s", g.key, g.from, g.to, strings.Join(nodesOf[g], ", ")))
	}
	// What is turned off comes first: that is what breaks a rollout.
	slices.SortStableFunc(heads, func(a, b string) int {
		off := func(h string) int {
			if strings.Contains(h, " off {at}") {
				return 0
			}
			return 1
		}
		return cmp.Compare(off(a), off(b))
	})
	for _, h := range heads {
		c.Headlines = append(c.Headlines, strings.Replace(h, "{at}", "at "+strings.Join(onNodes[h], ", "), 1))
	}
}

// meaning says what a sysctl change does to TFO, for the keys it knows;
// "{at}" stands for the nodes it happened on.
func meaning(key, from, to string) []string {
	switch key {
	case "net.ipv4.tcp_fastopen":
		a, errA := strconv.ParseUint(from, 0, 32)
		b, errB := strconv.ParseUint(to, 0, 32)
		if errA != nil || errB != nil {
			return nil
		}
		var out []string
		for _, bit := range []struct {
			mask uint64
			what string
		}{{0x1, "client TFO"}, {0x2, "server TFO"}, {0x4, "client data without a cookie (0x4)"},
			{0x200, "server data without a cookie (0x200)"}, {0x400, "TFO on every listener (0x400)"}} {
			switch {
			case a&bit.mask != 0 && b&bit.mask == 0:
				out = append(out, fmt.Sprintf("%s off {at} (net.ipv4.tcp_fastopen %s → %s)", bit.what, from, to))
			case a&bit.mask == 0 && b&bit.mask != 0:
				out = append(out, fmt.Sprintf("%s on {at} (net.ipv4.tcp_fastopen %s → %s)", bit.what, from, to))
			}
		}
		return out
	case "net.ipv4.tcp_fastopen_blackhole_timeout_sec":
		switch {
		case from == "0" && to != "0":
			return []string{fmt.Sprintf("blackhole detection on {at} (timeout %s s)", to)}
		case from != "0" && to == "0":
			return []string{fmt.Sprintf("blackhole detection off {at} (timeout was %s s)", from)}
		}
		return []string{fmt.Sprintf("blackhole timeout %s → %s s {at}", from, to)}
	case "net.ipv4.tcp_syn_retries", "net.ipv4.tcp_syn_linear_timeouts":
		return []string{fmt.Sprintf("SYN schedule: %s %s → %s {at}", strings.TrimPrefix(key, "net.ipv4."), from, to)}
	}
	return nil
}

// behaviourChanges puts what changed between two runs of a scenario in
// words, the candidate's first.
func behaviourChanges(b, k Scenario) []string {
	var out []string
	bb, kb := b.Behaviour, k.Behaviour
	if bb.TFOData != kb.TFOData || bb.Connections != kb.Connections {
		line := fmt.Sprintf("TFO carried data on %d of %d connections; baseline: %d of %d", kb.TFOData, kb.Connections, bb.TFOData, bb.Connections)
		if len(ecmpOf(bb, kb)) > 0 {
			// Not noise to hide: where a pool's servers hold different keys
			// or queues, the share follows the placement.
			line += " (behind ECMP: which server each connection reaches varies from run to run)"
		}
		out = append(out, line)
	}
	if bb.Stalled != kb.Stalled || bb.Refused != kb.Refused || bb.Failed != kb.Failed {
		out = append(out, fmt.Sprintf("%s; baseline: %s", outcomes(kb), outcomes(bb)))
	}
	if firstByteMoved(bb.FirstByte, kb.FirstByte, max(b.RTT, k.RTT)) {
		out = append(out, fmt.Sprintf("first byte %s; baseline: %s", kb.FirstByte.Words(), bb.FirstByte.Words()))
	}
	if costMoved(bb.Cost, kb.Cost, max(b.RTT, k.RTT)) {
		out = append(out, fmt.Sprintf("fallback cost %s; baseline: %s", kb.Cost, bb.Cost))
	}
	if bs, ks := blackholeSentence(b), blackholeSentence(k); blackholeMoved(bb.Blackhole, kb.Blackhole) && ks != "" {
		out = append(out, fmt.Sprintf("%s; baseline: %s", ks, strings.TrimPrefix(bs, "blackhole detection ")))
	}
	out = append(out, noCookieChanges(bb, kb)...)
	if cw := counterChanges(bb, kb); cw != "" {
		out = append(out, "counters: "+cw)
	}
	return out
}

func outcomes(b Behaviour) string {
	parts := []string{fmt.Sprintf("%d stalled", b.Stalled)}
	if b.Refused > 0 {
		parts = append(parts, fmt.Sprintf("%d refused", b.Refused))
	}
	if b.Failed > 0 {
		parts = append(parts, fmt.Sprintf("%d failed", b.Failed))
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" of %d connections", b.Connections)
}

// firstByteMoved: the medians differ by more than noise: more than a
// quarter of the baseline's, and than noCost (a quarter RTT, or 20 ms).
func firstByteMoved(a, b *Spread, rtt time.Duration) bool {
	if a == nil || b == nil {
		return (a == nil) != (b == nil)
	}
	return moved(a.Median, b.Median, rtt)
}

func moved(a, b, rtt time.Duration) bool {
	d := b - a
	if d < 0 {
		d = -d
	}
	return d > noCost(rtt) && d > a/4
}

// costMoved: a different kind of cost (RTOs, RTTs, a stall), or the same
// kind by more than noise.
func costMoved(a, b Cost, rtt time.Duration) bool {
	kind := func(c Cost) string {
		if strings.HasPrefix(c.Words, "+") {
			return "+"
		}
		return c.Words
	}
	if kind(a) != kind(b) {
		return true
	}
	return kind(a) == "+" && moved(a.Extra, b.Extra, rtt)
}

// blackholeSentence says what detection did, with the firewall it faced.
func blackholeSentence(s Scenario) string {
	bh := s.Behaviour.Blackhole
	if bh.Timeout == "" {
		return ""
	}
	var box string
	for _, m := range s.Middleboxes {
		if m != middlebox.DelayName {
			box = m
			break
		}
	}
	behind := ""
	if box != "" {
		behind = "after the " + box + " firewall "
	}
	if !bh.On() {
		out := "blackhole detection off: never paused"
		switch st, n := s.Behaviour.Stalled, s.Behaviour.Connections; {
		case bh.Detections > 0:
			out = fmt.Sprintf("blackhole detection off, yet %s", plural(int(bh.Detections), "detection"))
		case st > 0 && st >= n-1:
			out += ", every connection stalls"
		case st > 0:
			out += fmt.Sprintf(", %d of %d connections stall", st, n)
		}
		return out
	}
	switch {
	case bh.Detections == 0:
		return fmt.Sprintf("blackhole detection on (%s s): %snothing detected", bh.Timeout, behind)
	case len(bh.Pauses) == 0:
		return fmt.Sprintf("blackhole detection on (%s s): %s%s, pauses not probed", bh.Timeout, behind, plural(int(bh.Detections), "detection"))
	}
	out := fmt.Sprintf("blackhole detection on (%s s): %sTFO pauses %s", bh.Timeout, behind, bh.PauseWords())
	if len(bh.NotProbed) > 0 {
		out += " (" + strings.Join(bh.NotProbed, "; ") + ")"
	}
	return out
}

// blackholeMoved: detection turned on or off, detected a different number
// of times, or paused differently by more than the probes' resolution
// (a quarter second, or a fifth of the pause).
func blackholeMoved(a, b Blackhole) bool {
	if a.Timeout != b.Timeout || a.Detections != b.Detections || len(a.Pauses) != len(b.Pauses) {
		return true
	}
	for i := range a.Pauses {
		d := b.Pauses[i].Hi - a.Pauses[i].Hi
		if d < 0 {
			d = -d
		}
		if d > max(250*time.Millisecond, a.Pauses[i].Hi/5) {
			return true
		}
	}
	return false
}

// ecmpOf is the scenario's ECMP groups, the candidate's, or the
// baseline's when the candidate's report predates them.
func ecmpOf(b, k Behaviour) [][]string {
	if len(k.ECMP) > 0 {
		return k.ECMP
	}
	return b.ECMP
}

// counterChanges lists the moved counters that differ: "client
// Blackhole +0 → +3, ActiveFail +2 → +3". The members of an ECMP group (a
// pool's servers) are compared summed, "server1+server2+server3 Passive
// +27 → +30": which of them a connection lands on follows the hash of its
// ports, which differ from run to run, so their own counters move between
// two runs of the same lab.
func counterChanges(b, k Behaviour) string {
	groups := ecmpOf(b, k)
	grouped := map[string]bool{}
	for _, g := range groups {
		for _, n := range g {
			grouped[n] = true
		}
	}
	nodes := map[string]bool{} // the nodes compared on their own
	for _, c := range []map[string]map[string]int64{b.Counters, k.Counters} {
		for n := range c {
			if !grouped[n] {
				nodes[n] = true
			}
		}
	}
	var parts []string
	moves := func(label string, members []string) {
		sum := func(c map[string]map[string]int64, name string) (t int64) {
			for _, n := range members {
				t += c[n][name]
			}
			return t
		}
		var cs []string
		for _, name := range counterNames {
			if !strings.HasPrefix(name, "TCPFastOpen") {
				continue // SYN retransmissions vary with timing; the TFO counters do not
			}
			if x, y := sum(b.Counters, name), sum(k.Counters, name); x != y {
				cs = append(cs, fmt.Sprintf("%s %+d → %+d", strings.TrimPrefix(name, "TCPFastOpen"), x, y))
			}
		}
		if len(cs) > 0 {
			parts = append(parts, label+" "+strings.Join(cs, ", "))
		}
	}
	for _, n := range slices.Sorted(maps.Keys(nodes)) {
		moves(n, []string{n})
	}
	for _, g := range groups {
		moves(strings.Join(g, "+"), g)
	}
	return strings.Join(parts, "; ")
}

// stamp is one report's identity in a line.
func stamp(r *Report) string {
	var profs []string
	for _, p := range r.Profiles {
		var files []string
		for _, f := range p.Files {
			files = append(files, fmt.Sprintf("%s (%s)", f.Name, f.SHA256[:min(12, len(f.SHA256))]))
		}
		profs = append(profs, p.Scope+": "+strings.Join(files, ", "))
	}
	if len(profs) == 0 {
		profs = []string{"no profile"}
	}
	rtt := "no RTT emulated"
	if r.RTT > 0 {
		rtt = "RTT " + readable(r.RTT)
	}
	return fmt.Sprintf("Linux %s, tfolab %s, %s; %s; %d scenarios, %d failed", r.Kernel, r.LabVersion, rtt, strings.Join(profs, "; "), len(r.Scenarios), r.Failed())
}

// Markdown renders the comparison.
func (c *Comparison) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# tfolab diff\n\n- baseline: %s\n- candidate: %s\n\n", stamp(c.Base), stamp(c.Cand))
	if c.Base.Kernel != c.Cand.Kernel {
		w("**Kernel %s → %s.**\n\n", c.Base.Kernel, c.Cand.Kernel)
	}
	if len(c.Headlines) > 0 {
		w("## What the candidate changes\n\n")
		for _, h := range c.Headlines {
			w("- **%s**\n", h)
		}
		w("\n")
	}
	if len(c.Settings) > 0 {
		w("Effective sysctls that differ (baseline → candidate, at node (scenarios)):\n\n")
		for _, s := range c.Settings {
			w("- %s\n", s)
		}
		w("\n")
	}
	section := func(title string, chs []ScenarioChange, verdicts bool) {
		if len(chs) == 0 {
			return
		}
		w("## %s\n\n", title)
		for _, ch := range chs {
			if verdicts {
				w("- **%s**: %s (%d of %d expectations)\n", ch.Scenario, strings.Join(ch.Verdicts, ", "), len(ch.Verdicts), ch.Total)
			} else {
				w("- **%s**\n", ch.Scenario)
			}
			for _, line := range ch.Behaviour {
				w("  - %s\n", line)
			}
		}
		w("\n")
	}
	section(fmt.Sprintf("Regressions: %d expectations held under the baseline and fail under the candidate", c.Regressed()), c.Regressions, true)
	section("Behaviour that changed (every expectation still holds as before)", c.Changed, false)
	section("Fixed: expectations that failed under the baseline and hold under the candidate", c.Fixed, true)
	if len(c.OnlyBase) > 0 {
		w("Only in the baseline: %s\n\n", strings.Join(c.OnlyBase, ", "))
	}
	if len(c.OnlyCand) > 0 {
		w("Only in the candidate: %s\n\n", strings.Join(c.OnlyCand, ", "))
	}
	w("%s\n", c.Verdict())
	return b.String()
}

// Verdict is the gate's one line.
func (c *Comparison) Verdict() string {
	if n := c.Regressed(); n > 0 {
		return fmt.Sprintf("diff: FAIL: %s in %s held under the baseline and fail under the candidate", plural(n, "expectation"), plural(len(c.Regressions), "scenario"))
	}
	return fmt.Sprintf("diff: OK: no expectation regressed; %s behave differently, %d fixed", plural(len(c.Changed), "scenario"), len(c.Fixed))
}
