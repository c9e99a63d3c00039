package main

import (
	"context"
	"errors"
	"fmt"
	"time"

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
func init() {
	register("probe", "probe [NAME] [--experimental] [--out DIR]", probeCommand)
}

// defaultProbeScenario is a pool of three servers with one key.
const defaultProbeScenario = "pool/sync-keys/sysctl/n3/ipv4"

const probeUsage = `usage: tfolab probe [NAME] [--experimental] [--out DIR]
  builds the lab of scenario NAME (default ` + defaultProbeScenario + `), starts its services and
  middleboxes, and probes its main service from the client: a SYN with a cookie request (option 34,
  or 254/0xF989 with --experimental), the SYN-ACK read, an RST. Exit status 0: the server offers a
  TFO cookie; 1: it does not (or the lab failed); 2: bad input.
  --out DIR     also write the observation (probe result, captures) under DIR/<NAME>/`

func probeCommand(args []string) error {
	fs := newFlags("probe")
	experimental := fs.Bool("experimental", false, "ask in the experimental form (kind 254, magic 0xF989)")
	out := fs.String("out", "", "folder for the observation and pcaps")
	if err := fs.Parse(splitFlags(args)); err != nil {
		return badInput("tfolab probe: %v\n%s", err, probeUsage)
	}
	name := defaultProbeScenario
	switch fs.NArg() {
	case 0:
	case 1:
		name = fs.Arg(0)
	default:
		return badInput("%s", probeUsage)
	}
	s, err := findScenario(name)
	if err != nil {
		return err
	}
	s = probeOnly(s, probe.Options{Experimental: *experimental})
	// harness.Start applies the run's budget.
	ctx, stop, err := readyToRun("probe", s)
	if err != nil {
		return err
	}
	defer stop()
	opts := harness.Options{Out: *out, Artefacts: harness.Never}
	if *out != "" {
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
	return exitError{1, fmt.Errorf("tfolab probe: %s does not offer TFO", r.Target)}
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
