package main

import (
	"fmt"
	"os"

	"github.com/tfolab/tfolab/report"
)

const diffUsage = "diff BASELINE.json CANDIDATE.json [--out FILE.md]"

func init() { register("diff", diffUsage, runDiff) }

// runDiff compares two reports (two profiles, two machines, two kernels)
// and exits 1 when an expectation that held under the baseline fails
// under the candidate: the rollout gate.
func runDiff(args []string) error {
	var out string
	var pos []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--out" || a == "-out":
			if i+1 >= len(args) {
				return badInput("usage: tfolab %s", diffUsage)
			}
			out, i = args[i+1], i+1
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return badInput("usage: tfolab %s", diffUsage)
	}
	base, err := report.Read(pos[0])
	if err != nil {
		return badInput("tfolab diff: %v", err)
	}
	cand, err := report.Read(pos[1])
	if err != nil {
		return badInput("tfolab diff: %v", err)
	}
	return writeDiff(base, cand, out)
}

// writeDiff prints the comparison, writes it to path, and gates.
func writeDiff(base, cand *report.Report, path string) error {
	c := report.Diff(base, cand)
	md := c.Markdown()
	fmt.Print(md)
	if path != "" {
		if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
			return fmt.Errorf("tfolab diff: %w", err)
		}
		fmt.Printf("written to %s\n", path)
	}
	if c.Regressed() > 0 {
		return exitError{1, fmt.Errorf("%s", c.Verdict())}
	}
	return nil
}
