// Command tfolab is the lab's command-line front end:
//
//	tfolab list [LABEL]         list the catalogue's scenarios (with LABEL only)
//	tfolab run NAME [--keep]    run one scenario: verdicts, observation, JSON and pcaps
//	tfolab key [--sysctl-d]     print a fresh TFO key (--backup OLD, --rotate OLD)
//	tfolab probe [NAME]         build a scenario's lab and probe its service for TFO
//	tfolab preflight            check root, iptables and kernel TFO support
//	tfolab sweep [-all]         remove namespaces left by killed runs (make clean)
//	tfolab namespaces           list lab namespaces on this host
//	tfolab host-state           print the root namespace's network state (for diffs)
//	tfolab check-labels EXPR    check a Ginkgo label filter's syntax (make test LABELS=...)
//	tfolab junit-summary F      print "suite: N passed, N failed, N skipped" from a JUnit file
package main

import (
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/onsi/ginkgo/v2/types"
	"github.com/tfolab/tfolab/lab"
)

// fullUsage lists every subcommand.
func fullUsage() string {
	var b strings.Builder
	b.WriteString(usage)
	for _, n := range slices.Sorted(maps.Keys(commands)) {
		b.WriteString(" | " + commands[n].usage)
	}
	return b.String()
}

const usage = "usage: tfolab list [LABEL] | run NAME [--keep] [--out DIR] | preflight | sweep [-all] | namespaces | host-state | check-labels EXPR | junit-summary FILE"

// exitError carries an exit code: 1 for a failed verdict, 2 for bad input.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }

func badInput(format string, args ...any) error {
	return exitError{2, fmt.Errorf(format, args...)}
}

// newFlags is the flag set of command name: a parse error comes back to
// the command, which reports it as bad input with its usage; the flag
// package prints nothing.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// commands are subcommands other files of this package add in an init
// func, each with its one-line usage.
var commands = map[string]command{}

type command struct {
	usage string
	run   func(args []string) error
}

func register(name, usage string, run func(args []string) error) {
	commands[name] = command{usage, run}
}

func run(args []string) error {
	if len(args) == 0 {
		return badInput("%s", fullUsage())
	}
	if c, ok := commands[args[0]]; ok {
		return c.run(args[1:])
	}
	switch args[0] {
	case "run":
		return runScenario(args[1:])
	case "list":
		return listScenarios(args[1:])
	case "check-labels":
		return checkLabels(args[1:])
	case "preflight":
		if err := lab.Preflight(); err != nil {
			return err
		}
		fmt.Println("tfolab preflight: ok")
		return nil
	case "sweep":
		fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
		all := fs.Bool("all", false, "also remove namespaces of runs that are still alive")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		res, err := lab.Sweep(*all)
		for _, n := range res.Removed {
			fmt.Println("removed", n)
		}
		for _, k := range res.Kept {
			if k.Alive {
				fmt.Printf("kept %s: %s (its run is alive; -all removes it)\n", k.Name, k.Reason)
			} else {
				fmt.Printf("NOT removed %s: %s\n", k.Name, k.Reason)
			}
		}
		if len(res.Killed) > 0 {
			fmt.Println("killed leftover processes:", res.Killed)
		}
		if err != nil {
			return fmt.Errorf("tfolab sweep: %w", err)
		}
		fmt.Printf("tfolab sweep: removed %d, kept %d\n", len(res.Removed), len(res.Kept))
		return nil
	case "namespaces":
		names, err := lab.ListNamespaces()
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Println(n)
		}
		return nil
	case "host-state":
		s, err := lab.SnapshotHost(context.Background())
		fmt.Print(s.String())
		return err
	case "junit-summary":
		if len(args) != 2 {
			return fmt.Errorf("usage: tfolab junit-summary FILE")
		}
		return junitSummary(args[1])
	}
	return badInput("tfolab: unknown command %q\n%s", args[0], fullUsage())
}

// junitSummary prints the plain closing line CI systems read. It counts
// specs ([It] test cases) by their status; Ginkgo's JUnit also lists the
// suite-level setup nodes of every parallel process, which are not specs,
// but a failed one still counts as a failure.
func junitSummary(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("junit-summary: %w", err)
	}
	var doc struct {
		Suites []struct {
			Cases []struct {
				Name   string `xml:"name,attr"`
				Status string `xml:"status,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("junit-summary: parse %s: %w", path, err)
	}
	var passed, failed, skipped int
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			spec := strings.HasPrefix(c.Name, "[It]")
			switch {
			case c.Status == "passed" && spec:
				passed++
			case c.Status == "skipped" || c.Status == "pending":
				if spec {
					skipped++
				}
			case c.Status != "passed":
				failed++ // failed, panicked, interrupted, timedout, aborted
			}
		}
	}
	if passed+failed+skipped == 0 {
		return fmt.Errorf("junit-summary: %s lists no spec", path)
	}
	if passed+failed == 0 {
		fmt.Printf("suite: 0 passed, 0 failed, %d skipped\n", skipped)
		return fmt.Errorf("junit-summary: no spec ran: the label filter matched none of the %d specs", skipped)
	}
	fmt.Printf("suite: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		return fmt.Errorf("junit-summary: %d failed", failed)
	}
	return nil
}

// checkLabels parses a Ginkgo label filter the way the suite will, so a
// syntax error is one line before anything is built or run.
var ginkgoMarkup = regexp.MustCompile(`\{\{/?[a-z-]*\}\}`)

func checkLabels(args []string) error {
	if len(args) != 1 {
		return badInput("usage: tfolab check-labels EXPR")
	}
	if strings.TrimSpace(args[0]) == "" {
		return nil
	}
	if _, err := types.ParseLabelFilter(args[0]); err != nil {
		msg := err.Error()
		var ge types.GinkgoError
		if errors.As(err, &ge) {
			msg = strings.Join(strings.Fields(ge.Message), " ")
		}
		// Ginkgo marks the offending spot up for its own terminal
		// formatter ("{{red}}{{bold}}({{/}}"); a plain line has no use for it.
		msg = ginkgoMarkup.ReplaceAllString(msg, "")
		return badInput("LABELS=%q is not a label filter: %s", args[0], msg)
	}
	return nil
}
