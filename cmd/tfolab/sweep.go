package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/lab"
)

func newSweepCmd() *cobra.Command {
	var all bool
	c := command("sweep", groupHost, noArgs, cobra.NoFileCompletions, func(c *cobra.Command, _ []string) error {
		out := c.OutOrStdout()
		res, err := lab.Sweep(all)
		for _, n := range res.Removed {
			fmt.Fprintln(out, "removed", n)
		}
		for _, k := range res.Kept {
			if k.Alive {
				fmt.Fprintf(out, "kept %s: %s (its run is alive; --all removes it)\n", k.Name, k.Reason)
			} else {
				fmt.Fprintf(out, "NOT removed %s: %s\n", k.Name, k.Reason)
			}
		}
		if len(res.Killed) > 0 {
			fmt.Fprintln(out, "killed leftover processes:", res.Killed)
		}
		if err != nil {
			return fmt.Errorf("tfolab sweep: %w", err)
		}
		fmt.Fprintf(out, "tfolab sweep: removed %d, kept %d\n", len(res.Removed), len(res.Kept))
		return nil
	})
	c.Flags().BoolVar(&all, "all", false, "also remove namespaces of runs that are still alive")
	return c
}
