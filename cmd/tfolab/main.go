// Command tfolab is the lab's small command-line front end:
//
//	tfolab preflight        check root, iptables and kernel TFO support
//	tfolab sweep [-all]     remove namespaces left by killed runs (make clean)
//	tfolab list             list lab namespaces on this host
//	tfolab host-state       print the root namespace's network state (for diffs)
package main

import (
	"context"
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
	}
	return fmt.Errorf("tfolab: unknown command %q (want preflight, sweep, list or host-state)", args[0])
}
