package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/lab"
)

func newPreflightCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "preflight",
		Short:   "Check root, iptables and the kernel's TFO support (make preflight)",
		GroupID: groupHost,
		Long: `Check that this host can run labs: root (or CAP_NET_ADMIN and CAP_SYS_ADMIN), the
kernel's TFO, veth and namespace support, iptables. One line says what is missing.`,
		Example:           `  sudo tfolab preflight`,
		Args:              noArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := lab.Preflight(); err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), "tfolab preflight: ok")
			return nil
		},
	}
}
