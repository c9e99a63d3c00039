package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/lab"
)

func newHostStateCmd() *cobra.Command {
	return command("host-state", groupHost, noArgs, cobra.NoFileCompletions, func(c *cobra.Command, _ []string) error {
		s, err := lab.SnapshotHost(c.Context())
		fmt.Fprint(c.OutOrStdout(), s.String())
		return err
	})
}
