package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/lab"
)

func newNamespacesCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "namespaces",
		Short:             "List the lab namespaces on this host",
		GroupID:           groupHost,
		Long:              `List the lab namespaces (tfo-*) bound under /run/netns, one a line.`,
		Example:           `  tfolab namespaces`,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(c *cobra.Command, _ []string) error {
			names, err := lab.ListNamespaces()
			if err != nil {
				return err
			}
			for _, n := range names {
				fmt.Fprintln(c.OutOrStdout(), n)
			}
			return nil
		},
	}
}
