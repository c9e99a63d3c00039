package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/lab"
)

func newHostStateCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "host-state",
		Short:   "Print the root namespace's network state (to diff before and after a run)",
		GroupID: groupHost,
		Long: `Print the root namespace's links, addresses, routes, firewall and sysctls in a stable
order, so that two snapshots, before and after a run, diff to nothing.`,
		Example:           `  sudo tfolab host-state >before; sudo make test; sudo tfolab host-state | diff before -`,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := lab.SnapshotHost(c.Context())
			fmt.Fprint(c.OutOrStdout(), s.String())
			return err
		},
	}
}
