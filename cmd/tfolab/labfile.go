package main

// Scenario files (package labfile, docs/labfile.md): `tfolab run -f FILE
// [--keep]` runs the lab a file describes through the one harness, and
// `tfolab export NAME` writes a catalogue scenario as such a file.

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/labfile"
)

// runFileCmd is `tfolab run -f FILE`: a mistake in the file is bad input
// (exit 2), one line naming file:line, before any namespace exists.
func runFileCmd(c *cobra.Command, args []string, file string, keep bool, out string) error {
	switch {
	case file == "":
		return badUsage(c, "want one scenario NAME, got 0 arguments (or -f FILE)")
	case len(args) > 0:
		return badUsage(c, "a scenario NAME or -f FILE, not both")
	}
	s, err := labfile.Load(file)
	if err != nil {
		return badInput("%v", err)
	}
	return runLab(s, fmt.Sprintf("%s (%s)", s.Name, file), keep, out)
}

func newExportCmd() *cobra.Command {
	return command("export", groupScenarios, argsBetween(1, 1, "one scenario NAME"), completeScenario, func(c *cobra.Command, args []string) error {
		s, ok := labfile.Lookup(args[0])
		if !ok {
			return badInput("tfolab export: no scenario %q (`tfolab list` shows the catalogue; a self-check is %q and its breakage)", args[0], labfile.SelfCheckPrefix)
		}
		out, err := labfile.ExportAs(s, args[0])
		if err != nil {
			return fmt.Errorf("tfolab export: %w", err)
		}
		_, err = c.OutOrStdout().Write(out)
		return err
	})
}
