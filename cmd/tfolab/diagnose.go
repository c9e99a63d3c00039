package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/diagnose"
)

func newDiagnoseCmd() *cobra.Command {
	var o diagnoseFlags
	c := command("diagnose", groupResults, argsBetween(1, 2, "one or two capture files"), completeFileArgs(2, "pcap", "pcapng", "cap"),
		func(c *cobra.Command, args []string) error { return runDiagnose(c, args, o) })
	f := c.Flags()
	f.StringVar(&o.server, "server", "", "only this server (ADDR:PORT, [v6]:PORT)")
	f.StringVar(&o.json, "json", "", "write the JSON report to FILE (- for stdout)")
	f.StringVar(&o.md, "md", "", "write the Markdown report to FILE instead of stdout")
	f.StringVar(&o.rules, "rules", "", "write each firewall verdict's iptables-save ruleset into DIR")
	flagCompletion(c, "server", completeWords())
	flagCompletion(c, "json", completeFiles("json"))
	flagCompletion(c, "md", completeFiles("md"))
	flagCompletion(c, "rules", completeDirs)
	return c
}

// diagnoseFlags are the flags of `tfolab diagnose`.
type diagnoseFlags struct{ server, json, md, rules string }

// runDiagnose is `tfolab diagnose`: one capture (client or server side) or
// two (both sides of the same traffic) in, a TFO verdict per server out, as
// Markdown on stdout (or --md FILE) and JSON (--json FILE). Exit 0 when no
// server has a TFO problem (tfo-works, client-no-tfo and inconclusive are
// none), 1 when one has (server-no-tfo counts: it is a finding), 2 for bad
// input: a missing file, one that is not a capture or holds no TCP.
// Warnings (a truncated capture, two captures that share no connection) go
// to stderr, one line each.
func runDiagnose(c *cobra.Command, files []string, o diagnoseFlags) error {
	var opt diagnose.Options
	if o.server != "" {
		ap, err := netip.ParseAddrPort(o.server)
		if err != nil {
			return badUsage(c, "--server %q: want ADDR:PORT, e.g. 10.0.0.2:80 or [2001:db8::1]:443", o.server)
		}
		opt.Server = ap
	}

	ctx, stop := interruptible()
	defer stop()
	rep, err := diagnose.Diagnose(ctx, files, opt)
	if rep != nil {
		for _, w := range rep.Warnings {
			fmt.Fprintln(os.Stderr, "tfolab diagnose: warning:", w)
		}
	}
	if err != nil {
		var ie *diagnose.InputError
		if errors.As(err, &ie) {
			return badInput("tfolab diagnose: %s", strings.ReplaceAll(err.Error(), "\n", "\ntfolab diagnose: "))
		}
		return fmt.Errorf("tfolab diagnose: %w", err)
	}
	for _, s := range rep.Servers {
		if rp := s.Reproduce; rp != nil {
			if _, err := findScenario(rp.Scenario); err != nil {
				fmt.Fprintf(os.Stderr, "tfolab diagnose: warning: reproducer %q of %s is not in this build's catalogue\n", rp.Scenario, s.Server)
			}
		}
	}
	if o.rules != "" {
		if err := writeRules(o.rules, rep); err != nil {
			return err
		}
	}
	if o.json != "" {
		if err := writeReport(o.json, func(w io.Writer) error { return diagnose.WriteJSON(w, rep) }); err != nil {
			return err
		}
	}
	if o.md != "" {
		if err := writeReport(o.md, func(w io.Writer) error { return diagnose.WriteMarkdown(w, rep) }); err != nil {
			return err
		}
	} else if o.json != "-" {
		if err := diagnose.WriteMarkdown(os.Stdout, rep); err != nil {
			return err
		}
	}
	var bad []string
	for _, s := range rep.Servers {
		if s.Problem {
			bad = append(bad, s.Server+" "+string(s.Verdict))
		}
	}
	if len(bad) > 0 {
		return failed("tfolab diagnose: TFO problem: %s", strings.Join(bad, ", "))
	}
	return nil
}

// writeReport writes a report to path, or stdout for "-".
func writeReport(path string, write func(io.Writer) error) error {
	if path == "-" {
		return write(os.Stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("tfolab diagnose: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("tfolab diagnose: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tfolab diagnose: %w", err)
	}
	fmt.Fprintln(os.Stderr, "tfolab diagnose: wrote", path)
	return nil
}

// writeRules writes each firewall verdict's ruleset into dir, one file per
// server, and records the path in the report.
func writeRules(dir string, rep *diagnose.Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tfolab diagnose: --rules: %w", err)
	}
	for i := range rep.Servers {
		s := &rep.Servers[i]
		if s.Reproduce == nil || s.Reproduce.Rules == "" {
			continue
		}
		path := filepath.Join(dir, diagnose.RulesFileName(*s))
		if err := os.WriteFile(path, []byte(s.Reproduce.Rules), 0o644); err != nil {
			return fmt.Errorf("tfolab diagnose: --rules: %w", err)
		}
		s.Reproduce.RulesFile = path
		fmt.Fprintln(os.Stderr, "tfolab diagnose: wrote", path)
	}
	return nil
}
