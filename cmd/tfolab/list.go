package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/scenarios"
)

func newListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list [LABEL]",
		Short:   "List the catalogue's scenarios and their labels (only LABEL's)",
		GroupID: groupScenarios,
		Long: `List the catalogue's scenarios, one a line: its name (what run and probe take)
and its labels (what make test LABELS=... and report --labels filter on).
With LABEL, only the scenarios that carry it. No root needed.`,
		Example: `  tfolab list
  tfolab list blackhole`,
		Args:              argsBetween(0, 1, "at most one LABEL"),
		ValidArgsFunction: completeLabel,
		RunE: func(c *cobra.Command, args []string) error {
			out := c.OutOrStdout()
			for _, s := range scenarios.Catalogue() {
				if len(args) == 1 && !s.HasLabel(args[0]) {
					continue
				}
				fmt.Fprintf(out, "%-62s %s\n", s.Name, strings.Join(s.Labels, ","))
			}
			return nil
		},
	}
}
