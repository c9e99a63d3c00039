package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func newJUnitSummaryCmd() *cobra.Command {
	return command("junit-summary", groupHost, argsBetween(1, 1, "one JUnit FILE"), completeFileArgs(1, "xml"),
		func(c *cobra.Command, args []string) error { return junitSummary(c.OutOrStdout(), args[0]) })
}

// junitSummary prints the plain closing line CI systems read. It counts
// specs ([It] test cases) by their status; Ginkgo's JUnit also lists the
// suite-level setup nodes of every parallel process, which are not specs,
// but a failed one still counts as a failure.
func junitSummary(w io.Writer, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("junit-summary: %w", err)
	}
	cases, err := junitCases(b)
	if err != nil {
		return fmt.Errorf("junit-summary: parse %s: %w", path, err)
	}
	var passed, failed, skipped int
	for _, c := range cases {
		spec := strings.HasPrefix(c.Name, "[It]")
		switch {
		case c.Status == "passed" && spec:
			passed++
		case c.Status == "skipped" || c.Status == "pending":
			if spec {
				skipped++
			}
		case c.Status != "passed":
			failed++ // failed, panicked, interrupted, timedout, aborted
		}
	}
	if passed+failed+skipped == 0 {
		return fmt.Errorf("junit-summary: %s lists no spec", path)
	}
	if passed+failed == 0 {
		fmt.Fprintf(w, "suite: 0 passed, 0 failed, %d skipped\n", skipped)
		return fmt.Errorf("junit-summary: no spec ran: the label filter matched none of the %d specs", skipped)
	}
	fmt.Fprintf(w, "suite: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		return fmt.Errorf("junit-summary: %d failed", failed)
	}
	return nil
}
