package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/firewall"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/scenarios"
)

func newFirewallCmd() *cobra.Command {
	var in firewall.Input
	var port, place, out string
	c := command("firewall", groupScenarios, noArgs, nil,
		func(c *cobra.Command, _ []string) error { return runFirewall(c, in, port, place, out) })
	f := c.Flags()
	f.StringVar(&in.Rules, "rules", "", "iptables-save file (IPv4)")
	f.StringVar(&in.Rules6, "rules6", "", "ip6tables-save file (IPv6)")
	f.StringVar(&in.NFT, "nft", "", "nft list ruleset file")
	f.StringVar(&port, "port", strconv.Itoa(scenarios.ServicePort), "service port the lab's server listens on")
	f.StringVar(&place, "place", "router", "where the ruleset sits: router (in the path), server or client (on that host)")
	f.StringVar(&out, "out", filepath.Join("out", "firewall"), "folder for the report, observations and pcaps")
	for _, name := range []string{"rules", "rules6", "nft"} {
		flagCompletion(c, name, completeFiles())
	}
	flagCompletion(c, "port", completeWords())
	flagCompletion(c, "place", completeWords("router", "server", "client"))
	flagCompletion(c, "out", completeDirs)
	return c
}

// runFirewall is `tfolab firewall`: a user's ruleset in, a TFO-safety
// verdict per family × mode × phase out. Exit 0 when every tested path is
// TFO-safe, 1 when any is not (or the lab failed), 2 for bad input, which
// is found before any lab is built.
func runFirewall(c *cobra.Command, in firewall.Input, port, place, out string) error {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return badUsage(c, "--port %q: want 1 to 65535", port)
	}
	in.Port = uint16(p)
	if in.Place, err = firewall.ParsePlace(place); err != nil {
		return badUsage(c, "--%v", err)
	}
	check, err := firewall.Load(in)
	if err != nil {
		return badInput("tfolab firewall: %v", err)
	}
	if err := lab.Preflight(); err != nil {
		return fmt.Errorf("tfolab firewall: %w", err)
	}
	signalled, stop := interruptible()
	defer stop()
	ctx, cancel := context.WithTimeout(signalled, check.Budget())
	defer cancel()
	// A rule iptables or nft refuses is bad input too: found in a scratch
	// namespace that is gone again before anything else is built.
	if err := check.Validate(ctx); err != nil {
		if firewall.IsBadInput(err) {
			return badInput("tfolab firewall: %v", err)
		}
		return fmt.Errorf("tfolab firewall: %w", err)
	}
	fmt.Printf("tfolab firewall: %s\n", check.Describe())
	fmt.Printf("running %d paths at once (families × modes × phases × detection), each in its own lab...\n", len(check.Variants()))
	report, err := check.Run(ctx, firewall.Options{Out: out})
	if report == nil {
		return fmt.Errorf("tfolab firewall: %w", err)
	}
	fmt.Print(report.Table())
	fmt.Print(report.Details())
	fmt.Println(report.Summary())
	files, werr := report.Write(out)
	for _, f := range files {
		fmt.Println("report:", f)
	}
	fmt.Printf("observations and pcaps: %s/firewall_<family>_<mode>_<phase>_<detection>/\n", out)
	if err = errors.Join(err, werr); err != nil {
		return fmt.Errorf("tfolab firewall: %w", err)
	}
	if !report.Safe() {
		return failed("tfolab firewall: not TFO-safe on every path")
	}
	fmt.Println("tfolab firewall: TFO-safe on every tested path")
	return nil
}
