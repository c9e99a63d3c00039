package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tfolab/tfolab/harness"
	"github.com/tfolab/tfolab/lab/cost"
)

func newCostCmd() *cobra.Command {
	return command("cost", groupResults, argsBetween(0, 1, "at most one FILE (out/junit.xml or out/report/report.json)"), completeFileArgs(1, "xml", "json"),
		func(c *cobra.Command, args []string) error {
			path := "out/junit.xml"
			if len(args) == 1 {
				path = args[0]
			}
			return runCost(c.OutOrStdout(), path)
		})
}

// runCost prints a run's CPU by program and by label: from the suite's
// JUnit report (each spec's "cpu" property) or from a behaviour report's
// JSON (each scenario's programs).
func runCost(w io.Writer, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return badInput("cost: %v", err)
	}
	var run harness.RunCost
	var items []cost.Item
	if strings.HasSuffix(path, ".json") {
		items, run.Machine, err = reportCosts(b)
	} else {
		items, err = junitCosts(b)
		if mb, err := os.ReadFile(filepath.Join(filepath.Dir(path), harness.RunCostFile)); err == nil {
			_ = json.Unmarshal(mb, &run)
		}
		if run.AfterSpecs.Wall > 0 {
			items = append(items, cost.Item{Name: "after the specs (the run's tshark batch)", Spend: run.AfterSpecs})
		}
	}
	if err != nil {
		return badInput("cost: %s: %v", path, err)
	}
	if len(items) == 0 {
		return badInput("cost: %s holds no CPU figures (written by a run older than the cost accounting?)", path)
	}
	fmt.Fprint(w, cost.Summarize(items).Markdown(run.Machine))
	return nil
}

// labelsRE is the label list Ginkgo appends to a test case's name.
var labelsRE = regexp.MustCompile(`\[([^\[\]]*)\]$`)

func junitCosts(b []byte) ([]cost.Item, error) {
	cases, err := junitCases(b)
	if err != nil {
		return nil, err
	}
	var items []cost.Item
	for _, c := range cases {
		for _, p := range c.Props {
			if p.Name != harness.CPUEntry {
				continue
			}
			var sp cost.Spend
			if err := json.Unmarshal([]byte(p.Value), &sp); err != nil {
				return nil, fmt.Errorf("%s: cpu property: %w", c.Name, err)
			}
			it := cost.Item{Name: c.Name, Spend: sp}
			if m := labelsRE.FindStringSubmatch(c.Name); m != nil {
				it.Labels = strings.Split(m[1], ", ")
			}
			items = append(items, it)
		}
	}
	return items, nil
}

// reportCosts reads a report's scenarios (their programs) and the
// report's own process (its Go CPU, the scenarios share it) as one more
// item, and what the machine spent.
func reportCosts(b []byte) ([]cost.Item, time.Duration, error) {
	var doc struct {
		CPU        cost.Spend    `json:"cpu"`
		MachineCPU time.Duration `json:"machine_cpu_ns"`
		Scenarios  []struct {
			Name   string     `json:"name"`
			Labels []string   `json:"labels"`
			CPU    cost.Spend `json:"cpu"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, 0, fmt.Errorf("not a report.json: %w", err)
	}
	var items []cost.Item
	for _, s := range doc.Scenarios {
		items = append(items, cost.Item{Name: s.Name, Labels: s.Labels, Spend: s.CPU})
	}
	if doc.CPU.Wall > 0 {
		items = append(items, cost.Item{Name: "report process", Spend: cost.Spend{Go: doc.CPU.Go}})
	}
	return items, doc.MachineCPU, nil
}
