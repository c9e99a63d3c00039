package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/lab"
)

func newPreflightCmd() *cobra.Command {
	return command("preflight", groupHost, noArgs, cobra.NoFileCompletions, func(c *cobra.Command, _ []string) error {
		if err := lab.Preflight(); err != nil {
			return err
		}
		fmt.Fprintln(c.OutOrStdout(), "tfolab preflight: ok")
		return nil
	})
}
