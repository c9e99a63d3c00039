package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tfolab/tfolab/diagnose"
)

const diagnoseUsage = "diagnose FILE.pcap [FILE2.pcap] [--server ADDR:PORT] [--json FILE] [--md FILE] [--rules DIR]"

func init() { register("diagnose", diagnoseUsage, runDiagnose) }

// runDiagnose is `tfolab diagnose`: one capture (client or server side) or
// two (both sides of the same traffic) in, a TFO verdict per server out, as
// Markdown on stdout (or --md FILE) and JSON (--json FILE). Exit 0 when no
// server has a TFO problem (tfo-works, client-no-tfo and inconclusive are
// none), 1 when one has (server-no-tfo counts: it is a finding), 2 for bad
// input: a missing file, one that is not a capture or holds no TCP.
// Warnings (a truncated capture, two captures that share no connection) go
// to stderr, one line each.
func runDiagnose(args []string) error {
	fs := newFlags("diagnose")
	server := fs.String("server", "", "only this server (ADDR:PORT, [v6]:PORT)")
	jsonOut := fs.String("json", "", "write the JSON report to FILE (- for stdout)")
	mdOut := fs.String("md", "", "write the Markdown report to FILE instead of stdout")
	rulesDir := fs.String("rules", "", "write each firewall verdict's iptables-save ruleset into DIR")
	usageErr := func(format string, a ...any) error {
		return badInput("tfolab diagnose: %s\nusage: tfolab %s", fmt.Sprintf(format, a...), diagnoseUsage)
	}
	// Flags may come before, between or after the files.
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			return usageErr("%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) == 0 || len(files) > 2 {
		return usageErr("want one or two capture files, got %d", len(files))
	}
	var opt diagnose.Options
	if *server != "" {
		ap, err := netip.ParseAddrPort(*server)
		if err != nil {
			return usageErr("--server %q: want ADDR:PORT, e.g. 10.0.0.2:80 or [2001:db8::1]:443", *server)
		}
		opt.Server = ap
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
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
	if *rulesDir != "" {
		if err := writeRules(*rulesDir, rep); err != nil {
			return err
		}
	}
	if *jsonOut != "" {
		if err := writeReport(*jsonOut, func(w io.Writer) error { return diagnose.WriteJSON(w, rep) }); err != nil {
			return err
		}
	}
	if *mdOut != "" {
		if err := writeReport(*mdOut, func(w io.Writer) error { return diagnose.WriteMarkdown(w, rep) }); err != nil {
			return err
		}
	} else if *jsonOut != "-" {
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
		return exitError{1, fmt.Errorf("tfolab diagnose: TFO problem: %s", strings.Join(bad, ", "))}
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
