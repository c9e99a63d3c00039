package main

// `tfolab run -f FILE [--keep] [--out DIR]`: a lab written as a scenario
// file (package labfile, docs/labfile.md), run through the one harness
// like a catalogue scenario.

import (
	"fmt"
	"os"
	"strings"

	"github.com/tfolab/tfolab/harness"
	"github.com/tfolab/tfolab/labfile"
)

const runFileUsage = "usage: tfolab run -f FILE [--keep] [--out DIR]"

// fileArg reports whether run's arguments name a scenario file (-f).
func fileArg(args []string) bool {
	for _, a := range args {
		if a == "-f" || a == "--f" || a == "--file" || a == "-file" || strings.HasPrefix(a, "-f=") || strings.HasPrefix(a, "--file=") {
			return true
		}
	}
	return false
}

// runFile loads a scenario file and runs it. A mistake in the file is
// bad input (exit 2): one line naming file:line, before any namespace
// exists.
func runFile(args []string) error {
	fs := newFlags("run")
	file := fs.String("f", "", "the scenario file")
	fs.StringVar(file, "file", "", "the scenario file")
	keep := fs.Bool("keep", false, "keep the lab alive after the timeline until Ctrl-C or SIGTERM")
	out := fs.String("out", "out", "folder for the observation, verdicts and pcaps")
	if err := fs.Parse(args); err != nil {
		return badInput("tfolab run: %v\n%s", err, runFileUsage)
	}
	if *file == "" || fs.NArg() != 0 {
		return badInput("%s", runFileUsage)
	}
	s, err := labfile.Load(*file)
	if err != nil {
		return badInput("%v", err)
	}
	signalled, stop, err := readyToRun("run", s)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("tfolab run: %s (%s)\n  %s\n", s.Name, *file, s.Description)
	live := harness.Start(signalled, s, harness.Options{Out: *out, Artefacts: harness.Always})
	printResult(live.Result)
	if *keep && live.Running != nil {
		printKeep(live)
		fmt.Println(ReadyLine + " (Ctrl-C or SIGTERM tears the lab down)")
		<-signalled.Done()
		fmt.Println("tfolab: tearing the lab down")
	}
	if err := live.Close(); err != nil {
		return fmt.Errorf("tfolab run: teardown: %w", err)
	}
	if *keep {
		fmt.Println("tfolab: lab torn down, nothing left")
	}
	if !live.Result.Passed() {
		return exitError{1, fmt.Errorf("tfolab run: %s: FAIL", s.Name)}
	}
	return nil
}

func init() {
	register("export", "export NAME", exportScenario)
}

// exportScenario prints a catalogue scenario (or "self-check: BREAKAGE")
// as a scenario file: `tfolab export NAME > lab.yaml`, edit, `tfolab run
// -f lab.yaml`.
func exportScenario(args []string) error {
	if len(args) != 1 {
		return badInput("usage: tfolab export NAME (`tfolab list` shows the catalogue) > lab.yaml")
	}
	s, ok := labfile.Lookup(args[0])
	if !ok {
		return badInput("tfolab export: no scenario %q (`tfolab list` shows the catalogue; a self-check is %q and its breakage)", args[0], labfile.SelfCheckPrefix)
	}
	out, err := labfile.ExportAs(s, args[0])
	if err != nil {
		return fmt.Errorf("tfolab export: %w", err)
	}
	_, err = os.Stdout.Write(out)
	return err
}
