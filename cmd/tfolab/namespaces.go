package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/lab"
)

func newNamespacesCmd() *cobra.Command {
	return command("namespaces", groupHost, noArgs, cobra.NoFileCompletions, func(c *cobra.Command, _ []string) error {
		names, err := lab.ListNamespaces()
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(c.OutOrStdout(), n)
		}
		return nil
	})
}
