package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/harness"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/scenarios"
)

// ReadyLine is what `tfolab run --keep` prints once the lab is up for a
// person (or a test) to use; everything needed is printed before it.
const ReadyLine = "tfolab: ready"

// findScenario looks a catalogue scenario up by name.
func findScenario(name string) (scenarios.Scenario, error) {
	var near []string
	for _, s := range scenarios.Catalogue() {
		if s.Name == name {
			return s, nil
		}
		if strings.Contains(s.Name, name) {
			near = append(near, s.Name)
		}
	}
	hint := "`tfolab list` shows the catalogue"
	if len(near) > 0 && len(near) <= 8 {
		hint = "did you mean one of:\n  " + strings.Join(near, "\n  ")
	}
	return scenarios.Scenario{}, badInput("tfolab run: no scenario %q; %s", name, hint)
}

// readyToRun checks scenario s (bad input when it is invalid) and this
// machine for `tfolab cmd` to run it, and returns a context that Ctrl-C or
// SIGTERM ends, with its stop.
func readyToRun(cmd string, s scenarios.Scenario) (context.Context, context.CancelFunc, error) {
	if err := s.Validate(); err != nil {
		return nil, nil, badInput("tfolab %s: %v", cmd, err)
	}
	if err := lab.Preflight(); err != nil {
		return nil, nil, fmt.Errorf("tfolab %s: %w", cmd, err)
	}
	ctx, stop := interruptible()
	return ctx, stop, nil
}

func newRunCmd() *cobra.Command {
	var keep bool
	var out, file string
	c := command("run", groupScenarios, argsBetween(0, 1, "one scenario NAME"), completeScenario, func(c *cobra.Command, args []string) error {
		if file != "" || len(args) == 0 {
			return runFileCmd(c, args, file, keep, out) // a scenario file: labfile.go
		}
		return runScenario(args[0], keep, out)
	})
	c.Flags().BoolVar(&keep, "keep", false, "keep the lab alive after the timeline until Ctrl-C or SIGTERM")
	c.Flags().StringVar(&out, "out", "out", "folder for the observation, verdicts and pcaps")
	flagCompletion(c, "out", completeDirs)
	c.Flags().StringVarP(&file, "file", "f", "", "run the lab a scenario file describes instead (docs/labfile.md)")
	flagCompletion(c, "file", completeFiles("yaml", "yml"))
	return c
}

// runScenario is `tfolab run NAME`.
func runScenario(name string, keep bool, out string) error {
	s, err := findScenario(name)
	if err != nil {
		return err
	}
	return runLab(s, s.Name, keep, out)
}

// runLab runs s through the harness, prints its verdicts and, with keep,
// holds the lab up until Ctrl-C or SIGTERM; what names where s came from
// (a catalogue name, or "NAME (FILE)").
func runLab(s scenarios.Scenario, what string, keep bool, out string) error {
	// Ctrl-C or SIGTERM during the timeline ends it, and the lab is torn
	// down all the same; with --keep they end the wait.
	signalled, stop, err := readyToRun("run", s)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("tfolab run: %s\n  %s\n", what, s.Description)
	live := harness.Start(signalled, s, harness.Options{Out: out, Artefacts: harness.Always})
	printResult(live.Result)
	if keep && live.Running != nil {
		printKeep(live)
		fmt.Println(ReadyLine + " (Ctrl-C or SIGTERM tears the lab down)")
		<-signalled.Done()
		fmt.Println("tfolab: tearing the lab down")
	}
	if err := live.Close(); err != nil {
		return fmt.Errorf("tfolab run: teardown: %w", err)
	}
	if keep {
		fmt.Println("tfolab: lab torn down, nothing left")
	}
	if !live.Result.Passed() {
		return failed("tfolab run: %s: FAIL", s.Name)
	}
	return nil
}

func printResult(res harness.Result) {
	fmt.Print(harness.VerdictTable(res.Verdicts))
	if f := harness.Figures(res.Verdicts); f != "" && res.Passed() {
		fmt.Print("figures:\n" + f)
	}
	if res.Obs != nil {
		fmt.Printf("connections (timeline %v):\n%s", res.Obs.Elapsed.Round(100_000), res.Obs.ConnSummary())
		if moved := movedCounters(res); moved != "" {
			fmt.Printf("counters moved: %s\n", moved)
		}
		if hits := res.Obs.MiddleboxSummary(); hits != "" {
			fmt.Print(hits)
		}
	}
	if res.Err != nil {
		fmt.Printf("run failed: %v\n", res.Err)
	}
	if res.Dir != "" {
		fmt.Printf("artefacts: %s (observation.json, verdicts.json, pcaps)\n", res.Dir)
	}
	if len(res.Failed()) > 0 {
		fmt.Print("\n" + res.FailureReport())
	}
	status := "PASS"
	if !res.Passed() {
		status = "FAIL"
	}
	fmt.Printf("%s: %d of %d expectations hold\n", status, len(res.Verdicts)-len(res.Failed()), len(res.Verdicts))
}

// movedCounters lists the TFO counters that moved, per node.
func movedCounters(res harness.Result) string {
	var parts []string
	for _, n := range res.Obs.NodeNames() {
		c := res.Obs.Counters(n)
		for _, name := range lab.FastOpenCounters {
			if v, ok := c.Get(name); ok && v != 0 {
				parts = append(parts, fmt.Sprintf("%s %s %+d", n, name, v))
			}
		}
	}
	return strings.Join(parts, ", ")
}

// printKeep prints, for each node, commands ready to paste, and for each
// service, clients that reach it.
func printKeep(live *harness.Live) {
	topo := live.Running.Topo
	fmt.Println("\nlab kept alive; poke it with:")
	for _, node := range topo.Spec.NodeNames() {
		ns := topo.Namespace(node).Name
		fmt.Printf("  node %s: namespace %s\n", node, ns)
		fmt.Printf("    ip netns exec %s ss -tni\n", ns)
		fmt.Printf("    ip netns exec %s ip tcp_metrics show\n", ns)
		fmt.Printf("    ip netns exec %s nstat -az | grep -i fastopen\n", ns)
		for _, ifname := range topo.Interfaces(node) {
			fmt.Printf("    ip netns exec %s tcpdump -ni %s --immediate-mode -U\n", ns, ifname)
		}
	}
	client := topo.Namespace(live.Result.Scenario.Clients[0].NodeName())
	for _, n := range slices.Sorted(maps.Keys(live.Running.Services)) {
		ap := live.Running.Services[n]
		fmt.Printf("  service %s: %s\n", n, ap)
		if client != nil {
			fmt.Printf("    ip netns exec %s curl --tcp-fastopen --http0.9 -s http://%s/\n", client.Name, ap)
			fmt.Printf("    ip netns exec %s /usr/bin/python3 scripts/tfo_client.py %s %d\n", client.Name, ap.Addr(), ap.Port())
		}
	}
}
