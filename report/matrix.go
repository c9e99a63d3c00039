package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The matrix: the same catalogue run under several kernels (tfolab
// report --kernel K, one report each), scenarios × kernels, each cell a
// verdict with its key figure, and first the behaviours that differ
// between kernels with the expectations that changed.

// Matrix files, written beside the kernels' report folders.
const (
	MatrixMarkdownFile = "matrix.md"
	MatrixJSONFile     = "matrix.json"
)

// Unsupported is the verdict prefix of a scenario the kernel cannot run
// (it lacks a sysctl, a tcp_info bit, a flag): not a TFO failure.
const Unsupported = "not supported by this kernel"

// MatrixColumn is one kernel's report.
type MatrixColumn struct {
	Name   string  `json:"name"`
	Report *Report `json:"-"`
}

// Matrix is scenarios × kernels.
type Matrix struct {
	Kernels []MatrixKernel `json:"kernels"`
	Rows    []MatrixRow    `json:"rows"`
	// Differ are the rows whose verdicts differ between kernels.
	Differ []string `json:"differ"`
}

// MatrixKernel is one column's header.
type MatrixKernel struct {
	Name     string `json:"name"`
	Release  string `json:"release"`
	VM       string `json:"vm,omitempty"`
	Parallel int    `json:"parallel"`
	Passed   int    `json:"passed"`
	// Unsupported scenarios need something this kernel lacks.
	Unsupported int `json:"unsupported"`
	Total       int `json:"total"`
}

// MatrixRow is one scenario across the kernels.
type MatrixRow struct {
	Scenario string       `json:"scenario"`
	Cells    []MatrixCell `json:"cells"`
	// Changed are the expectations whose verdict is not the same under
	// every kernel (that ran it), each with the kernels it failed under.
	Changed []ChangedExpectation `json:"changed,omitempty"`
}

// MatrixCell is one scenario under one kernel.
type MatrixCell struct {
	// Status: "pass", "fail", "error", "unsupported", "absent".
	Status string `json:"status"`
	Passed int    `json:"passed"`
	Total  int    `json:"total"`
	// Figure is the key figure: first byte and fallback cost.
	Figure string `json:"figure,omitempty"`
	// Note is the error, or what the kernel lacks.
	Note string `json:"note,omitempty"`
}

// ChangedExpectation is an expectation that holds under some kernels only.
type ChangedExpectation struct {
	Name      string   `json:"name"`
	Statement string   `json:"statement,omitempty"`
	FailsOn   []string `json:"fails_on"`
	// Evidence is the first failing kernel's evidence.
	Evidence string `json:"evidence,omitempty"`
}

// BuildMatrix puts the columns' reports side by side, in the columns'
// order; rows follow the first report's catalogue order, then scenarios
// only later reports have.
func BuildMatrix(cols []MatrixColumn) Matrix {
	var m Matrix
	var names []string
	seen := map[string]bool{}
	for _, c := range cols {
		k := MatrixKernel{Name: c.Name, Release: c.Report.Kernel, VM: c.Report.VM, Parallel: c.Report.Parallel, Total: len(c.Report.Scenarios)}
		for _, s := range c.Report.Scenarios {
			switch {
			case s.Unsupported != "":
				k.Unsupported++
			case s.Pass:
				k.Passed++
			}
		}
		m.Kernels = append(m.Kernels, k)
		for _, s := range c.Report.Scenarios {
			if !seen[s.Name] {
				seen[s.Name] = true
				names = append(names, s.Name)
			}
		}
	}
	for _, n := range names {
		row := MatrixRow{Scenario: n}
		failsOn := map[string][]string{}
		statement := map[string]string{}
		evidence := map[string]string{}
		ran := map[string]int{}
		var order []string
		for _, c := range cols {
			s, ok := c.Report.Scenario(n)
			row.Cells = append(row.Cells, cellOf(s, ok))
			if !ok || s.Error != "" {
				continue
			}
			for _, v := range s.Verdicts {
				if _, known := ran[v.Name]; !known {
					order = append(order, v.Name)
				}
				ran[v.Name]++
				statement[v.Name] = v.Statement
				if !v.Pass {
					failsOn[v.Name] = append(failsOn[v.Name], c.Name)
					if evidence[v.Name] == "" {
						evidence[v.Name] = v.Evidence
					}
				}
			}
		}
		for _, v := range order {
			if f := failsOn[v]; len(f) > 0 && len(f) < ran[v] {
				row.Changed = append(row.Changed, ChangedExpectation{Name: v, Statement: statement[v], FailsOn: f, Evidence: evidence[v]})
			}
		}
		if differs(row) {
			m.Differ = append(m.Differ, n)
		}
		m.Rows = append(m.Rows, row)
	}
	return m
}

// differs: the scenario's status is not the same under every kernel, or
// an expectation holds under some and fails under others.
func differs(row MatrixRow) bool {
	if len(row.Changed) > 0 {
		return true
	}
	for _, c := range row.Cells[1:] {
		if c.Status != row.Cells[0].Status {
			return true
		}
	}
	return false
}

func cellOf(s Scenario, ok bool) MatrixCell {
	if !ok {
		return MatrixCell{Status: "absent"}
	}
	c := MatrixCell{Total: len(s.Verdicts), Passed: s.Passed()}
	switch {
	case s.Unsupported != "":
		c.Status, c.Note = "unsupported", s.Unsupported
		return c
	case s.Error != "":
		c.Status, c.Note = "error", s.Error
		return c
	case s.Pass:
		c.Status = "pass"
	default:
		c.Status = "fail"
	}
	b := s.Behaviour
	var fig []string
	if b.FirstByte != nil {
		fig = append(fig, "first byte "+readable(b.FirstByte.Median))
	}
	if b.Cost.Words != "" && b.Cost.Words != "none" {
		fig = append(fig, b.Cost.Words)
	}
	if b.Connections > 0 {
		fig = append(fig, fmt.Sprintf("TFO %d/%d", b.TFOData, b.Connections))
	}
	c.Figure = strings.Join(fig, ", ")
	return c
}

// String is the cell in the Markdown table.
func (c MatrixCell) String() string {
	switch c.Status {
	case "absent":
		return "—"
	case "unsupported":
		return "n/s: " + strings.TrimPrefix(strings.TrimPrefix(c.Note, Unsupported), ": ")
	case "error":
		return "error"
	}
	mark := "✓"
	if c.Status == "fail" {
		mark = "✗"
	}
	s := fmt.Sprintf("%s %d/%d", mark, c.Passed, c.Total)
	if c.Figure != "" {
		s += " · " + c.Figure
	}
	return s
}

// MatrixMarkdown renders the matrix: the kernels, the behaviours that
// differ (each with the expectation that changed), then every scenario.
func MatrixMarkdown(m Matrix) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# TFO behaviour across kernels\n\n")
	w("| kernel | release | where | scenarios holding every expectation |\n| --- | --- | --- | --- |\n")
	for _, k := range m.Kernels {
		where := "host"
		if k.VM != "" {
			where = "VM: " + k.VM
		}
		ns := ""
		if k.Unsupported > 0 {
			ns = fmt.Sprintf(" (%d not supported by this kernel)", k.Unsupported)
		}
		w("| %s | %s | %s, %d at a time | %d/%d%s |\n", k.Name, k.Release, where, k.Parallel, k.Passed, k.Total, ns)
	}
	header := func() {
		w("\n| scenario |")
		for _, k := range m.Kernels {
			w(" %s |", k.Name)
		}
		w("\n| --- |%s\n", strings.Repeat(" --- |", len(m.Kernels)))
	}
	w("\n## What differs between kernels (%d scenarios)\n", len(m.Differ))
	if len(m.Differ) == 0 {
		w("\nNothing: every scenario has the same verdicts under every kernel.\n")
	}
	for _, n := range m.Differ {
		i := slices.IndexFunc(m.Rows, func(r MatrixRow) bool { return r.Scenario == n })
		row := m.Rows[i]
		w("\n- **%s**: ", n)
		var cells []string
		for j, c := range row.Cells {
			cells = append(cells, m.Kernels[j].Name+" "+c.String())
		}
		w("%s\n", strings.Join(cells, "; "))
		for _, ch := range row.Changed {
			w("  - %s fails under %s", ch.Name, strings.Join(ch.FailsOn, ", "))
			if ch.Evidence != "" {
				w(": %s", oneLine(strings.TrimPrefix(ch.Evidence, ch.Name+": "), 240))
			}
			w("\n")
		}
	}
	w("\n## Every scenario\n")
	header()
	for _, r := range m.Rows {
		w("| %s |", r.Scenario)
		for _, c := range r.Cells {
			w(" %s |", strings.ReplaceAll(c.String(), "|", "\\|"))
		}
		w("\n")
	}
	return b.String()
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// WriteMatrix writes matrix.md and matrix.json into dir.
func WriteMatrix(m Matrix, dir string) (md, js string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("matrix: %w", err)
	}
	md, js = filepath.Join(dir, MatrixMarkdownFile), filepath.Join(dir, MatrixJSONFile)
	if err := os.WriteFile(md, []byte(MatrixMarkdown(m)), 0o644); err != nil {
		return "", "", fmt.Errorf("matrix: %w", err)
	}
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return "", "", fmt.Errorf("matrix: %w", err)
	}
	if err := os.WriteFile(js, append(b, '\n'), 0o644); err != nil {
		return "", "", fmt.Errorf("matrix: %w", err)
	}
	return md, js, nil
}
