package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/lab/tfo"
)

// `tfolab key` makes TFO keys for a fleet: the sysctl's own format, drawn
// from crypto/rand (lab/tfo.RandomKey), printed and nothing else. It never
// writes /etc or any sysctl: rolling a key out is the operator's step.
func newKeyCmd() *cobra.Command {
	var sysctlD bool
	var backup, rotate string
	c := command("key", groupResults, noArgs, nil, func(c *cobra.Command, _ []string) error {
		return printKey(c.OutOrStdout(), sysctlD, backup, rotate)
	})
	c.Flags().BoolVar(&sysctlD, "sysctl-d", false, "print a sysctl.d line: net.ipv4.tcp_fastopen_key = ...")
	c.Flags().StringVar(&backup, "backup", "", "the key being replaced: print \"new,OLD\"")
	c.Flags().StringVar(&rotate, "rotate", "", "the key being replaced: print the three steps of a rotation")
	c.MarkFlagsMutuallyExclusive("backup", "rotate")
	flagCompletion(c, "backup", completeWords())
	flagCompletion(c, "rotate", completeWords())
	return c
}

// printKey is `tfolab key`: a fresh key, or the values that replace old
// (backup or rotate, at most one of them set) with it.
func printKey(w io.Writer, sysctlD bool, backup, rotate string) error {
	fresh, err := tfo.RandomKey()
	if err != nil {
		return fmt.Errorf("tfolab key: %w", err)
	}
	line := func(v string) string {
		if sysctlD {
			return "net.ipv4.tcp_fastopen_key = " + v
		}
		return v
	}
	old := backup + rotate
	if old == "" {
		fmt.Fprintln(w, line(fresh.String()))
		return nil
	}
	prev, err := tfo.ParseKey(old)
	if err != nil {
		return badInput("tfolab key: %v", err)
	}
	prev.Backup = nil
	if prev.Primary == fresh.Primary {
		return fmt.Errorf("tfolab key: the fresh key equals the old one: the random source is broken")
	}
	withBackup := func(primary, backup tfo.Key) string {
		b := backup.Primary
		primary.Backup = &b
		return primary.String()
	}
	if backup != "" {
		fmt.Fprintln(w, line(withBackup(fresh, prev)))
		return nil
	}
	steps := []struct{ value, when string }{
		{withBackup(prev, fresh), "on every server, then wait until all have it: the new key is accepted everywhere, not yet issued"},
		{withBackup(fresh, prev), "on every server, then wait until clients have reconnected: old cookies are accepted and replaced"},
		{fresh.String(), "on every server: a client that slept through step 2 fails once, then has the new cookie"},
	}
	for i, s := range steps {
		fmt.Fprintf(w, "# step %d: %s\n%s\n", i+1, s.when, line(s.value))
	}
	return nil
}
