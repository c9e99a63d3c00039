package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/report"
)

func newDiffCmd() *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:     "diff BASELINE.json CANDIDATE.json",
		Short:   "Compare two behaviour reports; exit 1 on a regression",
		GroupID: groupResults,
		Long: `Compare two report.json files written by tfolab report (two profiles, two hosts, two
kernels): what the candidate changes, then per scenario the expectations that held under
the baseline and fail under the candidate (regressions) and the behaviour that moved.
Exit 1 when there is a regression: the rollout gate. No root needed.`,
		Example: `  tfolab diff baseline/report.json candidate/report.json --out diff.md`,
		Args:    argsBetween(2, 2, "BASELINE.json and CANDIDATE.json"),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) >= 2 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return []cobra.Completion{"json"}, cobra.ShellCompDirectiveFilterFileExt
		},
		RunE: func(_ *cobra.Command, args []string) error {
			base, err := report.Read(args[0])
			if err != nil {
				return badInput("tfolab diff: %v", err)
			}
			cand, err := report.Read(args[1])
			if err != nil {
				return badInput("tfolab diff: %v", err)
			}
			return writeDiff(base, cand, out)
		},
	}
	c.Flags().StringVar(&out, "out", "", "also write the comparison to FILE.md")
	flagCompletion(c, "out", completeFiles("md"))
	return c
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
		return failed("%s", c.Verdict())
	}
	return nil
}
