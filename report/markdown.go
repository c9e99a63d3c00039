package report

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Markdown renders the report for a person: a terminal or a pull request.
func Markdown(r *Report) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	pass := len(r.Scenarios) - r.Failed()
	w("# TFO behaviour report\n\n")
	ns := ""
	if n := r.Unsupported(); n > 0 {
		pass -= n
		ns = fmt.Sprintf(", %d not supported by this kernel", n)
	}
	w("**%d scenarios, %d hold every expectation%s** · Linux %s · tfolab %s · %s\n\n",
		len(r.Scenarios), pass, ns, r.Kernel, r.LabVersion, r.Started.UTC().Format("2006-01-02 15:04 UTC"))
	if r.VM != "" {
		w("In a VM: %s; %d scenarios at a time.\n\n", r.VM, r.Parallel)
	}
	ratio := ""
	if r.LongestElapsed > 0 {
		ratio = fmt.Sprintf(": %.2f×", float64(r.Wall)/float64(r.LongestElapsed))
	}
	w("Ran %d at a time in %s; the longest protocol wait was %s (%s)%s.\n\n", r.Parallel, readable(r.Wall), readable(r.LongestElapsed), r.Longest, ratio)
	if r.RTT > 0 {
		w("RTT: %s emulated on every router (delay middlebox: NFQUEUE, %s each way); fallback costs are in RTOs (SYN retransmissions, as long as they took) and RTTs.\n\n", readable(r.RTT), readable(r.RTT/2))
	} else {
		w("RTT: none emulated (veth, ~0.1 ms), but the control runs over its own 50 ms; fallback costs are in RTOs and milliseconds.\n\n")
	}
	if s := r.Saving; s != nil {
		w("**TFO saves %.2f RTT (%s) in time to first byte against a plain handshake** (%s, on the wire: plain %s, TFO %s, RTT %s; the application saw %s and %s).\n\n",
			s.SavedRTTs, readable(s.Saved), s.Scenario, readable(s.Plain), readable(s.TFO), readable(s.RTT), readable(s.FirstBytePlain), readable(s.FirstByteTFO))
	}
	writeProfiles(&b, r)
	writeSysctls(&b, r)
	writeBehaviour(&b, r)
	writeNoCookie(&b, r)
	writeFailures(&b, r)
	return b.String()
}

func writeProfiles(b *strings.Builder, r *Report) {
	fmt.Fprintf(b, "## Profile\n\n")
	if len(r.Profiles) == 0 {
		fmt.Fprintf(b, "None: every scenario ran with its own sysctls only.\n\n")
	}
	for _, p := range r.Profiles {
		var files []string
		for _, f := range p.Files {
			files = append(files, fmt.Sprintf("`%s` (sha256 `%s`)", f.Name, f.SHA256))
		}
		scope := map[string]string{"all": "every node", "client": "client nodes", "server": "service nodes"}[p.Scope]
		fmt.Fprintf(b, "- **%s**: %s\n", scope, strings.Join(files, ", "))
		for _, s := range p.Settings {
			fmt.Fprintf(b, "  - `%s`\n", s)
		}
		for _, n := range p.Notes {
			fmt.Fprintf(b, "  - note: %s\n", n)
		}
		for _, n := range p.Warnings {
			fmt.Fprintf(b, "  - warning: %s\n", n)
		}
	}
	type key struct{ node, key, from, to string }
	counts := map[key][]string{}
	for _, s := range r.Scenarios {
		for _, o := range s.Overrides {
			k := key{o.Node, o.Key, o.Scenario, o.Profile}
			counts[k] = append(counts[k], s.Name)
		}
	}
	if len(counts) > 0 {
		fmt.Fprintf(b, "\nScenario sysctls the profile overrode (the scenario's expectations were written for the left value):\n\n")
		fmt.Fprintf(b, "| node | key | scenario → profile | scenarios |\n| --- | --- | --- | --- |\n")
		keys := make([]key, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, c key) int {
			return cmp.Or(cmp.Compare(a.node, c.node), cmp.Compare(a.key, c.key), cmp.Compare(a.from, c.from), cmp.Compare(a.to, c.to))
		})
		for _, k := range keys {
			fmt.Fprintf(b, "| %s | `%s` | %s → %s | %d: %s |\n", k.node, k.key, k.from, k.to, len(counts[k]), abbreviate(counts[k], 2))
		}
	}
	b.WriteString("\n")
}

func abbreviate(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(", … %d more", len(items)-n)
}

// writeSysctls is the effective sysctls per node: each key's values over
// the scenarios (most common first).
func writeSysctls(b *strings.Builder, r *Report) {
	nodes := map[string]bool{}
	keys := map[string]bool{}
	values := map[[2]string]map[string]int{}
	for _, s := range r.Scenarios {
		for n, kv := range s.Sysctls {
			nodes[n] = true
			for k, v := range kv {
				keys[k] = true
				nk := [2]string{n, k}
				if values[nk] == nil {
					values[nk] = map[string]int{}
				}
				values[nk][v]++
			}
		}
	}
	if len(keys) == 0 {
		return
	}
	ns := slices.Sorted(maps.Keys(nodes))
	fmt.Fprintf(b, "## Effective sysctls per node\n\nWhat each node ran with, over the scenarios (value (scenarios), most common first).\n\n")
	fmt.Fprintf(b, "| key | %s |\n|%s\n", strings.Join(ns, " | "), strings.Repeat(" --- |", len(ns)+1))
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		row := []string{"`" + k + "`"}
		for _, n := range ns {
			row = append(row, valueCounts(values[[2]string{n, k}]))
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(row, " | "))
	}
	b.WriteString("\n")
}

func valueCounts(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	vs := make([]string, 0, len(m))
	for v := range m {
		vs = append(vs, v)
	}
	slices.SortFunc(vs, func(a, c string) int { return cmp.Or(cmp.Compare(m[c], m[a]), cmp.Compare(a, c)) })
	if len(vs) == 1 {
		return vs[0]
	}
	var parts []string
	for _, v := range vs {
		parts = append(parts, fmt.Sprintf("%s (%d)", v, m[v]))
	}
	return strings.Join(parts, ", ")
}

// area is a scenario's first name component: baseline, middlebox, ...
func area(name string) string {
	a, _, _ := strings.Cut(name, "/")
	return a
}

func writeBehaviour(b *strings.Builder, r *Report) {
	fmt.Fprintf(b, "## Behaviour\n\n")
	fmt.Fprintf(b, "\"TFO data\": connections whose SYN's data the server acknowledged. \"first byte\": from the first send to the first response byte, over the data connections (not the first, cookie-learning one). \"fallback cost\": the worst data connection's wait beyond TFO's one round trip.\n")
	var areas []string
	by := map[string][]Scenario{}
	for _, s := range r.Scenarios {
		a := area(s.Name)
		if by[a] == nil {
			areas = append(areas, a)
		}
		by[a] = append(by[a], s)
	}
	for _, a := range areas {
		fmt.Fprintf(b, "\n### %s\n\n", a)
		fmt.Fprintf(b, "| scenario | verdicts | TFO data | first byte | fallback cost | counters moved | blackhole |\n| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, s := range by[a] {
			mark := "✓"
			if !s.Pass {
				mark = "✗"
			}
			verdicts := fmt.Sprintf("%s %d/%d", mark, s.Passed(), len(s.Verdicts))
			if s.Error != "" {
				verdicts = "✗ run failed"
			}
			if s.Unsupported != "" {
				verdicts = "n/s: " + s.Unsupported
			}
			bh := s.Behaviour
			data := fmt.Sprintf("%d/%d", bh.TFOData, bh.Connections)
			if bh.Probes > 0 {
				data += fmt.Sprintf(" (+%d probes)", bh.Probes)
			}
			fb := bh.FirstByte.Words()
			if bh.Stalled > 0 {
				fb += fmt.Sprintf("; %d stalled", bh.Stalled)
			}
			if bh.Refused > 0 {
				fb += fmt.Sprintf("; %d refused", bh.Refused)
			}
			name := strings.TrimPrefix(s.Name, a+"/")
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", name, verdicts, data, fb, bh.Cost, bh.CounterWords(), bh.Blackhole.Words())
		}
	}
	b.WriteString("\n")
}

// maxEvidence bounds a failure's evidence in the Markdown (the JSON and
// the artefacts have all of it).
const maxEvidence = 30

func writeFailures(b *strings.Builder, r *Report) {
	if r.Failed() == 0 {
		return
	}
	fmt.Fprintf(b, "## Failed expectations\n\n")
	for _, s := range r.Scenarios {
		if s.Pass || s.Unsupported != "" {
			continue
		}
		fmt.Fprintf(b, "### %s\n\n%s\n\n", s.Name, s.Description)
		if s.Error != "" {
			fmt.Fprintf(b, "run failed: `%s`\n\n", firstLine(s.Error))
		}
		if s.Teardown != "" {
			fmt.Fprintf(b, "teardown failed: `%s`\n\n", firstLine(s.Teardown))
		}
		for _, o := range s.Overrides {
			fmt.Fprintf(b, "- profile set %s `%s` = %s (scenario: %s; %s)\n", o.Node, o.Key, o.Profile, o.Scenario, o.From)
		}
		for _, v := range s.Verdicts {
			if v.Pass {
				continue
			}
			fmt.Fprintf(b, "- ✗ **%s**: %s\n\n", v.Name, v.Statement)
			lines := strings.Split(strings.TrimRight(v.Evidence, "\n"), "\n")
			if len(lines) > maxEvidence {
				lines = append(lines[:maxEvidence], fmt.Sprintf("… %d more lines in %s", len(lines)-maxEvidence, s.Artefacts))
			}
			fmt.Fprintf(b, "  ```\n  %s\n  ```\n\n", strings.Join(lines, "\n  "))
		}
		if s.Artefacts != "" {
			fmt.Fprintf(b, "Artefacts (observation, verdicts, pcaps): `%s`\n\n", s.Artefacts)
		}
	}
}

// Summary is the one-line verdict printed after a run.
func Summary(r *Report) string {
	ns := r.Unsupported()
	s := fmt.Sprintf("report: %d scenarios, %d passed, %d failed in %s (longest protocol wait %s",
		len(r.Scenarios), len(r.Scenarios)-r.Failed()-ns, r.Failed(), readable(r.Wall), readable(r.LongestElapsed))
	if ns > 0 {
		s = strings.Replace(s, " failed in ", fmt.Sprintf(" failed, %d not supported by this kernel in ", ns), 1)
	}
	if r.LongestElapsed > 0 {
		s += fmt.Sprintf(", %.2f×", float64(r.Wall)/float64(r.LongestElapsed))
	}
	return s + ")"
}
