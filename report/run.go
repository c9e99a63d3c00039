package report

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/harness"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/cost"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/profile"
	"github.com/tfolab/tfolab/scenarios"
	"github.com/tfolab/tfolab/topology"
)

// Options configure a run.
type Options struct {
	// All applies to every node, Client to the client nodes
	// (Scenario.Clients[].Node), Server to the service nodes, in that
	// order, after the scenario's own sysctls. nil applies nothing.
	All, Client, Server *profile.Plan
	// RTT, if set, is emulated on the router of every scenario that has
	// one: a delay middlebox holding each packet RTT/2, each way (it
	// replaces a scenario's own delay, the control's).
	RTT time.Duration
	// Out is the folder the report, the JUnit file and every scenario's
	// artefacts go to.
	Out string
	// Parallel bounds the scenarios running at once (DefaultParallel if 0).
	Parallel int
	// Select picks scenarios (nil: the whole catalogue).
	Select func(scenarios.Scenario) bool
	// Progress receives the live progress line (nil: none).
	Progress *Progress
}

// DefaultParallel is how many scenarios run at once: they mostly wait on
// kernel timers, and 16 at a time on 2 cores still keeps every timing
// expectation of the catalogue inside its window.
const DefaultParallel = 16

// MinRTT is the smallest RTT the report emulates: the control's saving
// needs one it can measure (assertions.MinEmulatedRTT).
const MinRTT = assertions.MinEmulatedRTT

// Files a run writes under Options.Out.
const (
	JSONFile     = "report.json"
	MarkdownFile = "report.md"
	JUnitFile    = "junit.xml"
	ScenarioDir  = "scenarios"
)

// job is one scenario to run.
type job struct {
	index    int
	scenario scenarios.Scenario
	prep     prepared
	// budget is the bound harness.Run applies to the run: the longest
	// start first, and the report records it.
	budget time.Duration

	mu      sync.Mutex
	started time.Time
	lab     *lab.Lab // the run's lab, for the progress line to peek into
	ended   bool
}

// Run runs the catalogue under opts and writes the report. Every
// scenario's own failure is in the report; an error is returned only
// when the run could not be made or written.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Parallel <= 0 {
		opts.Parallel = DefaultParallel
	}
	if opts.RTT != 0 && opts.RTT < MinRTT {
		return nil, fmt.Errorf("report: RTT %v: want 0 (none emulated) or at least %v", opts.RTT, MinRTT)
	}
	jobs, err := plan(opts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	rep := &Report{
		Schema: SchemaVersion, Kernel: kernelRelease(), LabVersion: scenarios.Version,
		Started: time.Now().Round(0), Parallel: opts.Parallel, RTT: opts.RTT,
		Profiles: stamps(opts), VM: os.Getenv("TFOLAB_VM"),
	}
	results := make([]Scenario, len(jobs))
	// Longest budget first: the long timelines start at once and the
	// short ones fill in around them.
	order := slices.Clone(jobs)
	slices.SortStableFunc(order, func(a, b *job) int { return cmp.Compare(b.budget, a.budget) })
	prog := opts.Progress
	prog.begin(len(jobs))
	// tshark checks run once, over every scenario's captures, at the end.
	batch := &assertions.DissectBatch{Dir: filepath.Join(opts.Out, ".dissect")}
	if err := os.RemoveAll(batch.Dir); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	assertions.DeferDissection(batch)
	defer assertions.DeferDissection(nil)
	stop := prog.run(ctx)
	start, before := time.Now(), cost.Take()
	machineBefore, _ := cost.MachineCPU()
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for _, j := range order {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			prog.started(j)
			results[j.index] = runOne(ctx, j, opts)
			prog.finished(j, results[j.index])
		}()
	}
	wg.Wait()
	stop()
	if ctx.Err() == nil {
		if err := judgeDissections(ctx, batch, results, opts.Out); err != nil {
			return nil, err
		}
	}
	rep.Wall = time.Since(start)
	rep.CPU = cost.Since(before, cost.Take(), rep.Wall)
	if machineAfter, err := cost.MachineCPU(); err == nil && machineBefore > 0 {
		rep.MachineCPU = machineAfter - machineBefore
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("report: interrupted: %w", err)
	}
	rep.Scenarios = results
	for _, s := range rep.Scenarios {
		if s.Elapsed > rep.LongestElapsed {
			rep.Longest, rep.LongestElapsed = s.Name, s.Elapsed
		}
	}
	rep.Saving = savingOf(opts.Out, rep)
	return rep, WriteAll(rep, opts.Out)
}

// judgeDissections runs the deferred tshark checks in one tshark run and
// puts their verdicts into the scenarios (and their verdicts.json).
func judgeDissections(ctx context.Context, batch *assertions.DissectBatch, results []Scenario, out string) error {
	defer os.RemoveAll(batch.Dir)
	verdicts, err := batch.Run(ctx, scenarios.TsharkFrames)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	for _, dv := range verdicts {
		for i := range results {
			s := &results[i]
			if s.Name != dv.Scenario || !dv.Apply(s.Verdicts) {
				continue
			}
			s.Pass = s.Pass && dv.Pass
			if s.Artefacts != "" {
				b, err := json.MarshalIndent(s.Verdicts, "", " ")
				if err == nil {
					err = os.WriteFile(filepath.Join(out, s.Artefacts, harness.VerdictsFile), append(b, '\n'), 0o644)
				}
				if err != nil {
					return fmt.Errorf("report: %s: %w", s.Name, err)
				}
			}
		}
	}
	return nil
}

// WriteAll writes the JSON, Markdown and JUnit forms under out.
func WriteAll(rep *Report, out string) error {
	if err := rep.Write(filepath.Join(out, JSONFile)); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, MarkdownFile), []byte(Markdown(rep)), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := WriteJUnit(rep, filepath.Join(out, JUnitFile)); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// plan builds, adjusts and validates every selected scenario before any
// namespace exists.
func plan(opts Options) ([]*job, error) {
	var jobs []*job
	var errs []error
	for _, s := range scenarios.Catalogue() {
		if opts.Select != nil && !opts.Select(s) {
			continue
		}
		ps, prep := prepare(s, opts)
		if err := ps.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		jobs = append(jobs, &job{index: len(jobs), scenario: ps, prep: prep, budget: harness.Budget(ps)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if len(jobs) == 0 {
		return nil, errors.New("report: no scenario selected")
	}
	return jobs, nil
}

// prepared is what prepare did to a scenario.
type prepared struct {
	overrides []Override
	// applied are the keys the profile set per node (dotted form).
	applied map[string][]string
	rtt     time.Duration
	// clientNode is the first client's node.
	clientNode string
}

// prepare applies the profiles and the RTT to a fresh copy of s.
func prepare(s scenarios.Scenario, opts Options) (scenarios.Scenario, prepared) {
	p := prepared{applied: map[string][]string{}, clientNode: s.Clients[0].NodeName()}
	clients, services := map[string]bool{}, map[string]bool{}
	for _, c := range s.Clients {
		clients[c.NodeName()] = true
	}
	for _, svc := range s.Services {
		services[svc.NodeName()] = true
	}
	sys := map[string]map[string]string{}
	for n, kv := range s.Sysctls {
		sys[n] = map[string]string{}
		for k, v := range kv {
			sys[n][k] = v
		}
	}
	for _, n := range s.Topology.Nodes {
		ifaces := s.Topology.Interfaces(n.Name)
		as := opts.All.For(ifaces)
		if clients[n.Name] {
			as = append(as, opts.Client.For(ifaces)...)
		}
		if services[n.Name] {
			as = append(as, opts.Server.For(ifaces)...)
		}
		if len(as) == 0 {
			continue
		}
		if sys[n.Name] == nil {
			sys[n.Name] = map[string]string{}
		}
		// The topology's own, which a profile may override too.
		own := n.BuildSysctls()
		final := map[string]profile.Applied{}
		for _, a := range as {
			final[a.Key] = a
		}
		for _, a := range as {
			if final[a.Key] != a {
				continue // a later scope set it again
			}
			if old, ok := sys[n.Name][a.Key]; ok {
				if old != a.Value {
					p.overrides = append(p.overrides, Override{Node: n.Name, Key: a.Key, Scenario: old, Profile: a.Value, From: a.From.Where()})
				}
			} else if old, ok := own[a.Key]; ok && old != a.Value {
				p.overrides = append(p.overrides, Override{Node: n.Name, Key: a.Key, Scenario: old + " (topology)", Profile: a.Value, From: a.From.Where()})
			}
			sys[n.Name][a.Key] = a.Value
			p.applied[n.Name] = append(p.applied[n.Name], a.Key)
		}
	}
	s.Sysctls = sys
	if router, ok := routerOf(s.Topology); ok && opts.RTT > 0 {
		boxes := slices.Clone(s.Middleboxes)
		replaced := false
		for i, m := range boxes {
			if m.Box.Name == middlebox.DelayName {
				boxes[i].Box, replaced = middlebox.Delay(opts.RTT/2), true
			}
		}
		if !replaced {
			boxes = append(boxes, scenarios.MiddleboxSpec{Box: middlebox.Delay(opts.RTT / 2), Node: router})
		}
		s.Middleboxes = boxes
		p.rtt = opts.RTT
	} else {
		for _, m := range s.Middleboxes {
			if m.Box.Name == middlebox.DelayName && m.When == scenarios.AtStart {
				p.rtt = scenarios.ControlRTT
			}
		}
	}
	return s, p
}

func routerOf(spec topology.Spec) (string, bool) {
	for _, n := range spec.Nodes {
		if n.Router {
			return n.Name, true
		}
	}
	return "", false
}

// runOne runs one scenario in its own lab and reads its report off the
// result.
func runOne(ctx context.Context, j *job, opts Options) Scenario {
	j.mu.Lock()
	j.started = time.Now()
	j.mu.Unlock()
	res := harness.Run(ctx, j.scenario, harness.Options{
		Out: filepath.Join(opts.Out, ScenarioDir), Artefacts: harness.Always, OnStage: j.onStage,
	})
	return scenarioOf(j, res, opts.Out)
}

// onStage shows the progress line the run's lab, and takes it away before
// the teardown: the line reads the lab's namespaces under j.mu, so the
// teardown waits for a read under way.
func (j *job) onStage(st harness.Stage, l *lab.Lab) {
	j.mu.Lock()
	defer j.mu.Unlock()
	switch st {
	case harness.LabMade:
		j.lab = l
	case harness.TearingDown:
		j.lab, j.ended = nil, true
	}
}

// scenarioOf turns a harness result into the report's record.
func scenarioOf(j *job, res harness.Result, out string) Scenario {
	s := j.scenario
	r := Scenario{
		Name: s.Name, Description: s.Description, Labels: s.Labels,
		Pass: res.Passed(), Verdicts: res.Verdicts, Wall: res.Wall, Budget: j.budget, CPU: res.Cost,
		RTT: j.prep.rtt, Overrides: j.prep.overrides, Sysctls: map[string]map[string]string{},
	}
	if res.Err != nil {
		r.Error = res.Err.Error()
	}
	if errors.Is(res.Err, harness.ErrUnsupported) {
		r.Unsupported, r.Error = res.Err.Error(), ""
	}
	if res.Teardown != nil {
		r.Teardown = res.Teardown.Error()
	}
	if res.Dir != "" {
		if rel, err := filepath.Rel(out, res.Dir); err == nil {
			r.Artefacts = rel
			r.Observation = filepath.Join(rel, observation.FileName)
		}
	}
	for _, m := range s.Middleboxes {
		r.Middleboxes = append(r.Middleboxes, m.Box.Name)
	}
	if o := res.Obs; o != nil {
		r.Elapsed = o.Elapsed
		for _, n := range o.NodeNames() {
			r.Sysctls[n] = map[string]string{}
			for k, v := range o.Nodes[n].Sysctls {
				r.Sysctls[n][k] = v
			}
		}
		r.Behaviour = behaviourOf(o, j.prep.rtt, j.prep.clientNode)
		r.Behaviour.ECMP = ecmpGroups(s.Topology)
	}
	for n, keys := range j.prep.applied {
		if r.Sysctls[n] == nil {
			r.Sysctls[n] = map[string]string{}
		}
		for _, k := range keys {
			r.Sysctls[n][k] = s.Sysctls[n][k]
		}
	}
	return r
}

// savingOf reads the control's observation back: TFO's reply against the
// plain handshake's, on the wire (assertions.SavingOf).
func savingOf(out string, rep *Report) *Saving {
	name := scenarios.PlainVsTFO().Name
	s, ok := rep.Scenario(name)
	if !ok || s.Observation == "" {
		return nil
	}
	o, err := observation.Read(filepath.Join(out, s.Observation))
	if err != nil {
		return nil
	}
	sv, err := assertions.SavingOf(o, 0, 2)
	if err != nil || sv.RTT <= 0 {
		return nil
	}
	return &Saving{Scenario: name, RTT: sv.RTT, Plain: sv.Plain, TFO: sv.TFO, Saved: sv.Saved(), SavedRTTs: sv.RTTs(),
		FirstBytePlain: sv.FirstBytePlain, FirstByteTFO: sv.FirstByteTFO}
}

func stamps(opts Options) []ProfileStamp {
	var out []ProfileStamp
	for _, sc := range []struct {
		scope string
		plan  *profile.Plan
	}{{"all", opts.All}, {"client", opts.Client}, {"server", opts.Server}} {
		if sc.plan == nil {
			continue
		}
		st := ProfileStamp{Scope: sc.scope, Files: sc.plan.Profile.Files}
		for _, s := range sc.plan.Profile.Settings {
			st.Settings = append(st.Settings, fmt.Sprintf("%s (%s)", s, s.Where()))
		}
		for _, n := range sc.plan.Notes {
			st.Notes = append(st.Notes, n.String())
		}
		for _, w := range sc.plan.Profile.Warnings {
			st.Warnings = append(st.Warnings, w.String())
		}
		out = append(out, st)
	}
	return out
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// ecmpGroups are the node groups of spec's multipath routes, each once
// (a pool's IPv4 and IPv6 routes name the same servers).
func ecmpGroups(spec topology.Spec) [][]string {
	var groups [][]string
	for _, n := range spec.Nodes {
		for _, r := range n.Routes {
			if len(r.Via) > 1 && !slices.ContainsFunc(groups, func(g []string) bool { return slices.Equal(g, r.Via) }) {
				groups = append(groups, slices.Clone(r.Via))
			}
		}
	}
	return groups
}
