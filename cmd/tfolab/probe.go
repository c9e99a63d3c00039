package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/harness"
	"github.com/tfolab/tfolab/lab/probe"
	"github.com/tfolab/tfolab/scenarios"
)

// `tfolab probe [NAME]` builds a catalogue scenario's lab (topology,
// sysctls, services, middleboxes), probes its main service once from the
// client's node with lab/probe, and says yes or no: the cookie, or why not,
// told from the captures on both ends (a server with TFO off, or an option
// stripped on the way).

// defaultProbeScenario is a pool of three servers with one key.
const defaultProbeScenario = "pool/sync-keys/sysctl/n3/ipv4"

func newProbeCmd() *cobra.Command {
	var experimental bool
	var out string
	c := command("probe", groupScenarios, argsBetween(0, 1, "at most one scenario NAME"), completeScenario, func(_ *cobra.Command, args []string) error {
		name := defaultProbeScenario
		if len(args) == 1 {
			name = args[0]
		}
		return probeScenario(name, experimental, out)
	})
	c.Flags().BoolVar(&experimental, "experimental", false, "ask in the experimental form (kind 254, magic 0xF989)")
	c.Flags().StringVar(&out, "out", "", "also write the observation (probe result, captures) under DIR/<NAME>/")
	flagCompletion(c, "out", completeDirs)
	return c
}

// probeScenario is `tfolab probe NAME`.
func probeScenario(name string, experimental bool, out string) error {
	s, err := findScenario(name)
	if err != nil {
		return err
	}
	s = probeOnly(s, probe.Options{Experimental: experimental})
	// harness.Start applies the run's budget.
	ctx, stop, err := readyToRun("probe", s)
	if err != nil {
		return err
	}
	defer stop()
	opts := harness.Options{Out: out, Artefacts: harness.Never}
	if out != "" {
		opts.Artefacts = harness.Always
	}
	live := harness.Start(ctx, s, opts)
	res := live.Result
	terr := live.Close()
	if res.Err != nil || res.Obs == nil || len(res.Obs.Probes) == 0 {
		return errors.Join(fmt.Errorf("tfolab probe: %s: %w", name, errOr(res.Err, "no probe was made")), terr)
	}
	if terr != nil {
		return fmt.Errorf("tfolab probe: teardown: %w", terr)
	}
	r := res.Obs.Probes[0]
	cause, server := assertions.Diagnose(res.Obs, 0)
	fmt.Printf("tfolab probe: %s from node %s (scenario %s)\n", r.Target, s.Clients[0].NodeName(), name)
	if res.Dir != "" {
		fmt.Printf("  artefacts: %s\n", res.Dir)
	}
	if server == "" {
		server = "no server"
	}
	if r.SupportsTFO {
		fmt.Printf("yes: cookie %x, answered by %s in %v (%s)\n", []byte(r.Cookie), server, r.RTT.Round(time.Microsecond), r.Reason)
		return nil
	}
	fmt.Printf("no: %s\n  probe: %s\n  answered by %s\n", cause, r.Reason, server)
	return failed("tfolab probe: %s does not offer TFO", r.Target)
}

// probeOnly is s with a timeline that only probes its main service: every
// middlebox in place from the start (as it stands once deployed), no
// connection, no expectation.
func probeOnly(s scenarios.Scenario, opts probe.Options) scenarios.Scenario {
	s.Middleboxes = append([]scenarios.MiddleboxSpec(nil), s.Middleboxes...)
	for i := range s.Middleboxes {
		s.Middleboxes[i].When = scenarios.AtStart
	}
	s.Timeline = func(ctx context.Context, env *scenarios.Env) error {
		_, err := env.ProbeWith(ctx, "", opts)
		return err
	}
	s.Timeout = 2 * probe.DefaultTimeout
	s.Expect = nil
	return s
}

func errOr(err error, msg string) error {
	if err != nil {
		return err
	}
	return errors.New(msg)
}
