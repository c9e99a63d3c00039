package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/scenarios"
)

func newListCmd() *cobra.Command {
	return command("list", groupScenarios, argsBetween(0, 1, "at most one LABEL"), completeLabel, func(c *cobra.Command, args []string) error {
		out := c.OutOrStdout()
		for _, s := range scenarios.Catalogue() {
			if len(args) == 1 && !s.HasLabel(args[0]) {
				continue
			}
			fmt.Fprintf(out, "%-62s %s\n", s.Name, strings.Join(s.Labels, ","))
		}
		return nil
	})
}
