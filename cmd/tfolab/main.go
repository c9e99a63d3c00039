// Command tfolab is the lab's small command-line front end:
//
//	tfolab preflight        check root, iptables and kernel TFO support
//	tfolab sweep [-all]     remove namespaces left by killed runs (make clean)
//	tfolab list             list lab namespaces on this host
//	tfolab host-state       print the root namespace's network state (for diffs)
//	tfolab junit-summary F  print "suite: N passed, N failed, N skipped" from a JUnit file
package main

import (
	"context"
	"encoding/xml"
	"flag"
	"fmt"
	"os"

	"github.com/tfolab/tfolab/lab"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: tfolab preflight | sweep [-all] | list | host-state")
	}
	switch args[0] {
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
		for _, n := range res.Skipped {
			fmt.Println("kept (its run is alive; use -all)", n)
		}
		if len(res.Killed) > 0 {
			fmt.Println("killed leftover processes:", res.Killed)
		}
		if err != nil {
			return fmt.Errorf("tfolab sweep: %w", err)
		}
		fmt.Printf("tfolab sweep: removed %d, kept %d\n", len(res.Removed), len(res.Skipped))
		return nil
	case "list":
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
	return fmt.Errorf("tfolab: unknown command %q (want preflight, sweep, list, host-state or junit-summary)", args[0])
}

// junitSummary prints the plain closing line CI systems read.
func junitSummary(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("junit-summary: %w", err)
	}
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Errors   int `xml:"errors,attr"`
		Disabled int `xml:"disabled,attr"`
		Skipped  int `xml:"skipped,attr"`
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		return fmt.Errorf("junit-summary: parse %s: %w", path, err)
	}
	skipped := suites.Skipped + suites.Disabled
	failed := suites.Failures + suites.Errors
	fmt.Printf("suite: %d passed, %d failed, %d skipped\n", suites.Tests-failed-skipped, failed, skipped)
	if failed > 0 {
		return fmt.Errorf("junit-summary: %d failed", failed)
	}
	return nil
}
