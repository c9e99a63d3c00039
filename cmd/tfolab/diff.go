package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/report"
)

func newDiffCmd() *cobra.Command {
	var out string
	c := command("diff", groupResults, argsBetween(2, 2, "BASELINE.json and CANDIDATE.json"), completeFileArgs(2, "json"),
		func(_ *cobra.Command, args []string) error {
			base, err := report.Read(args[0])
			if err != nil {
				return badInput("tfolab diff: %v", err)
			}
			cand, err := report.Read(args[1])
			if err != nil {
				return badInput("tfolab diff: %v", err)
			}
			return writeDiff(base, cand, out)
		})
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
