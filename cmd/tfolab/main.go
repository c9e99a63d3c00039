// Command tfolab is the lab's command line. `tfolab --help` lists its
// commands, one line each; `tfolab CMD --help` shows a command's flags and
// an example; `tfolab completion bash|zsh|fish` prints a shell completion
// script that knows the catalogue's scenario names and labels.
//
// Each command lives in a file of its own as a func newXCmd() *cobra.Command
// that newRootCmd adds, built by command (help.go) from what is code: its
// group, arguments, completion, flags and run. What it says in its help
// (usage line, summary, description, examples) is help/NAME.txt. Every
// command shares one set of exit codes (exitPass, exitFailed,
// exitBadInput), told apart in one place: execute.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// The exit codes of every command.
const (
	exitPass     = 0 // every expectation held, every path is TFO-safe, nothing wrong found
	exitFailed   = 1 // a verdict failed, or no verdict could be reached
	exitBadInput = 2 // bad input, found before any lab exists
)

// exitCodesHelp closes `tfolab --help`: the one place the codes are
// explained on the command line (README.md's "Exit codes" says the same).
const exitCodesHelp = `
Exit codes (the same for every command):
  0  passed: every expectation held (run), every scenario ran (report), every tested
     path is TFO-safe (firewall), the server offers TFO (probe), no regression (diff),
     no server in the capture has a TFO problem (diagnose)
  1  a verdict failed (a scenario, a path, a probe, a diff, a capture), or no verdict
     could be reached (not root, a lab that could not be built or torn down)
  2  bad input: an unknown command or flag, a wrong number of arguments, a bad value,
     a missing or unreadable file; one line names it, before any lab exists
`

// exitError carries an exit code: exitFailed for a failed verdict,
// exitBadInput for bad input. An error without one is exitFailed when a
// command's RunE returned it, exitBadInput when cobra did (a flag or an
// argument it refused before the command ran).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// badInput is bad input that its own message explains in one line.
func badInput(format string, args ...any) error {
	return exitError{exitBadInput, fmt.Errorf(format, args...)}
}

// failed is a failed verdict.
func failed(format string, args ...any) error {
	return exitError{exitFailed, fmt.Errorf(format, args...)}
}

// badUsage is bad input in how command c was called: one line naming the
// problem, then where to read how to call it.
func badUsage(c *cobra.Command, format string, args ...any) error {
	return exitError{exitBadInput, fmt.Errorf("%s: %s\nsee `%s --help`", c.CommandPath(), fmt.Sprintf(format, args...), c.CommandPath())}
}

// exitCode is the process's exit status for what run returned.
func exitCode(err error) int {
	if err == nil {
		return exitPass
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailed
}

func main() {
	err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(exitCode(err))
}

// interruptible is a context that Ctrl-C or SIGTERM ends, with its stop:
// what a command that builds labs, boots a VM or reads captures runs under,
// so that it tears down what it built before it exits.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// run runs the command line args (without the program name).
func run(args []string) error {
	return execute(newRootCmd(), args)
}

// Command groups of `tfolab --help`.
const (
	groupScenarios = "scenarios"
	groupResults   = "results"
	groupHost      = "host"
)

// newRootCmd is the whole command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{SilenceUsage: true, SilenceErrors: true}
	describe(root, "tfolab")
	root.SetHelpTemplate(root.HelpTemplate() + `{{if not .HasParent}}` + exitCodesHelp + `{{end}}`)
	root.AddGroup(
		&cobra.Group{ID: groupScenarios, Title: "Scenarios and labs:"},
		&cobra.Group{ID: groupResults, Title: "Reports, captures and keys (no lab):"},
		&cobra.Group{ID: groupHost, Title: "The host, and helpers make runs:"},
	)
	root.SetHelpCommandGroupID(groupHost)
	root.SetCompletionCommandGroupID(groupHost)
	root.AddCommand(
		newListCmd(),
		newRunCmd(),
		newExportCmd(),
		newReportCmd(),
		newFirewallCmd(),
		newProbeCmd(),
		newKeyCmd(),
		newDiffCmd(),
		newMatrixCmd(),
		newVMGuestCmd(),
		newDiagnoseCmd(),
		newCostCmd(),
		newPreflightCmd(),
		newSweepCmd(),
		newNamespacesCmd(),
		newHostStateCmd(),
		newCheckLabelsCmd(),
		newJUnitSummaryCmd(),
	)
	return root
}

// execute runs args against root and returns an error carrying the exit
// code (exitCode reads it). The one place that tells bad input from a
// failed command: an error a command's RunE returns is the command's
// (exitFailed unless it says otherwise); one cobra returns before any RunE
// ran (an unknown command or flag, a wrong number of arguments, a flag
// group broken) is bad input, as one line naming it and a hint.
func execute(root *cobra.Command, args []string) error {
	// cobra adds these two when it executes; added now, their RunE are
	// marked as every other command's, and the list below has them.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd(args...)
	if len(args) == 0 {
		// No command: the list of them, as bad input.
		fmt.Fprint(root.ErrOrStderr(), root.UsageString())
		return exitError{exitBadInput, errors.New("tfolab: no command given; see `tfolab --help`")}
	}
	ran := false
	markRuns(root, &ran)
	root.SetArgs(normalizeFlags(root, args))
	c, err := root.ExecuteC()
	if err == nil || ran {
		return err
	}
	var ee exitError
	if errors.As(err, &ee) {
		return err
	}
	if c == nil {
		c = root
	}
	return badUsage(c, "%s", oneLine(err.Error(), c))
}

// markRuns wraps the RunE of every command under c to set *ran first.
func markRuns(c *cobra.Command, ran *bool) {
	if runE := c.RunE; runE != nil {
		c.RunE = func(c *cobra.Command, args []string) error {
			*ran = true
			return runE(c, args)
		}
	}
	for _, sub := range c.Commands() {
		markRuns(sub, ran)
	}
}

// oneLine folds cobra's multi-line messages ("unknown command "rn" for
// "tfolab"\n\nDid you mean this?\n\trun") into one line.
func oneLine(msg string, c *cobra.Command) string {
	first, rest, _ := strings.Cut(msg, "\n")
	first = strings.Replace(first, fmt.Sprintf(" for %q", c.CommandPath()), "", 1)
	var suggestions []string
	for _, l := range strings.Split(rest, "\n") {
		if strings.HasPrefix(l, "\t") {
			suggestions = append(suggestions, strings.TrimSpace(l))
		}
	}
	if len(suggestions) > 0 {
		first += "; did you mean " + strings.Join(suggestions, " or ") + "?"
	}
	return first
}

// singleDashLong is "-name" or "-name=value" with a name of two letters or
// more: the form Go's flag package read, which pflag reads as shorthands.
var singleDashLong = regexp.MustCompile(`^-([a-z][a-z0-9-]+)(=.*)?$`)

// normalizeFlags rewrites the single-dash long flags the command line
// accepted before it moved to pflag (`tfolab sweep -all`, `run NAME
// -keep`) to their double-dash form, for the flags the command args name
// really has; anything else is left for pflag to judge.
func normalizeFlags(root *cobra.Command, args []string) []string {
	c, _, err := root.Find(args)
	if err != nil || c == nil {
		return args
	}
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if m := singleDashLong.FindStringSubmatch(a); m != nil && (m[1] == "help" || c.Flags().Lookup(m[1]) != nil || c.InheritedFlags().Lookup(m[1]) != nil) {
			a = "-" + a
		}
		out = append(out, a)
	}
	return out
}

// argsBetween accepts min to max positional arguments; what names them
// in the error ("NAME", "FILE [FILE2]").
func argsBetween(min, max int, what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		switch {
		case len(args) > max && max == 0:
			return fmt.Errorf("unexpected argument %q: this command takes none", args[0])
		case len(args) > max:
			return fmt.Errorf("want %s, got %d arguments (unexpected %q)", what, len(args), args[max])
		case len(args) < min:
			return fmt.Errorf("want %s, got %d arguments", what, len(args))
		}
		return nil
	}
}

// noArgs accepts no positional argument.
var noArgs = argsBetween(0, 0, "")
