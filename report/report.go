// Package report is tfolab's behaviour report: it runs the whole catalogue
// (scenarios.Catalogue) against the running kernel under a sysctl profile,
// in parallel, each scenario in its own lab through package harness, and
// says per scenario what TFO did: whether it carried data, the time to
// first byte, what a fallback cost, the counters that moved, blackhole
// detection's state and pauses, and every default expectation's verdict.
// It writes that as Markdown (a person), JSON (machines, and Diff), JUnit
// and the pcaps; Diff compares two reports (two profiles, two kernels) and
// is the rollout gate: an expectation that held under the baseline and
// fails under the candidate is a regression.
//
// It sits on top: profile, scenarios, harness and observation below it,
// cmd/tfolab (report, diff) above.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab/cost"
	"github.com/tfolab/tfolab/profile"
)

// SchemaVersion is the JSON form's version; Read refuses others.
const SchemaVersion = 1

// Report is one run of the catalogue.
type Report struct {
	Schema int `json:"schema"`
	// Kernel is the release it ran on; LabVersion scenarios.Version.
	Kernel     string    `json:"kernel"`
	LabVersion string    `json:"lab_version"`
	Started    time.Time `json:"started"`
	// Wall is the whole run, from the first lab to the last teardown.
	Wall time.Duration `json:"wall_ns"`
	// Longest is the scenario with the longest timeline (its protocol
	// waits), the figure Wall is measured against.
	Longest        string        `json:"longest"`
	LongestElapsed time.Duration `json:"longest_elapsed_ns"`
	// Parallel is how many scenarios ran at a time.
	Parallel int `json:"parallel"`
	// VM is the kernel spec, engine and vCPUs when the report ran inside
	// a VM (tfolab report --kernel): "debian:6.12 TCG, 2 vCPUs".
	VM string `json:"vm,omitempty"`
	// RTT is the round trip emulated on every router (0: none, the
	// control keeps its own).
	RTT time.Duration `json:"rtt_ns"`
	// Profiles are the profile files per scope ("all", "client",
	// "server"), with what each applies and notes on lines that apply to
	// nothing.
	Profiles []ProfileStamp `json:"profiles"`
	// Saving is what the control measured: TFO's first byte against a
	// plain handshake's.
	Saving *Saving `json:"saving,omitempty"`
	// CPU is what the report's process and its programs spent over the
	// run; MachineCPU what the whole machine did (kernel work charged to
	// no process, such as namespace teardown, included).
	CPU        cost.Spend    `json:"cpu"`
	MachineCPU time.Duration `json:"machine_cpu_ns"`
	// Scenarios in catalogue order.
	Scenarios []Scenario `json:"scenarios"`
}

// ProfileStamp is one scope's profile.
type ProfileStamp struct {
	Scope    string           `json:"scope"` // "all", "client" or "server"
	Files    []profile.Source `json:"files"`
	Settings []string         `json:"settings"`
	Notes    []string         `json:"notes,omitempty"`
	Warnings []string         `json:"warnings,omitempty"`
}

// Saving is the control's measurement (assertions.SavingOf): each
// connection's reply on the wire from its first SYN (the plain one less
// the client's think time), and the first bytes the application saw.
type Saving struct {
	Scenario       string        `json:"scenario"`
	RTT            time.Duration `json:"rtt_ns"` // on the wire
	Plain          time.Duration `json:"plain_reply_ns"`
	TFO            time.Duration `json:"tfo_reply_ns"`
	Saved          time.Duration `json:"saved_ns"`
	SavedRTTs      float64       `json:"saved_rtts"`
	FirstBytePlain time.Duration `json:"plain_first_byte_ns"`
	FirstByteTFO   time.Duration `json:"tfo_first_byte_ns"`
}

// Scenario is one scenario's run.
type Scenario struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Labels      []string `json:"labels"`
	// Pass: it ran and every expectation held.
	Pass bool `json:"pass"`
	// Error is a failure to run (build, timeline), Teardown one to tear down.
	Error string `json:"error,omitempty"`
	// Unsupported says what the kernel lacks when it cannot run the
	// scenario ("not supported by this kernel: lacks ..."): not a failure.
	Unsupported string `json:"unsupported,omitempty"`
	Teardown    string `json:"teardown,omitempty"`
	// Verdicts are the default expectations' verdicts.
	Verdicts []assertions.Verdict `json:"verdicts"`
	// Observation is observation.json's path, Artefacts the folder with
	// it, the verdicts and the pcaps (relative to the report's folder).
	Observation string `json:"observation,omitempty"`
	Artefacts   string `json:"artefacts,omitempty"`
	// Elapsed is the timeline's wall time, Wall the run's with setup and
	// teardown, Budget the harness's bound.
	Elapsed time.Duration `json:"elapsed_ns"`
	Wall    time.Duration `json:"wall_ns"`
	Budget  time.Duration `json:"budget_ns"`
	// RTT is the round trip emulated on this scenario's path (0: none).
	RTT time.Duration `json:"rtt_ns"`
	// Middleboxes are the firewalls (and the delay) installed.
	Middleboxes []string `json:"middleboxes,omitempty"`
	// Sysctls are the effective sysctls per node: the TFO-related ones
	// read back after setup, and every key the profile set.
	Sysctls map[string]map[string]string `json:"sysctls"`
	// Overrides are the scenario's (or topology's) own sysctls the
	// profile replaced.
	Overrides []Override `json:"overrides,omitempty"`
	Behaviour Behaviour  `json:"behaviour"`
	// CPU is what the programs the scenario started spent (scenarios run
	// in one process at once, so the Go share is the report's, in
	// Report.CPU).
	CPU cost.Spend `json:"cpu"`
}

// Override is one of a scenario's sysctls a profile replaced.
type Override struct {
	Node     string `json:"node"`
	Key      string `json:"key"`
	Scenario string `json:"scenario"`
	Profile  string `json:"profile"`
	From     string `json:"from"` // file:line
}

// Write writes the report as JSON.
func (r *Report) Write(path string) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Read reads a report's JSON.
func Read(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	if r.Schema != SchemaVersion {
		return nil, fmt.Errorf("read report %s: schema %d, this tfolab reads %d", path, r.Schema, SchemaVersion)
	}
	return &r, nil
}

// Failed counts scenarios that did not pass.
func (r *Report) Failed() int {
	n := 0
	for _, s := range r.Scenarios {
		if !s.Pass && s.Unsupported == "" {
			n++
		}
	}
	return n
}

// Unsupported counts scenarios the kernel could not run.
func (r *Report) Unsupported() int {
	n := 0
	for _, s := range r.Scenarios {
		if s.Unsupported != "" {
			n++
		}
	}
	return n
}

// Scenario returns the named scenario.
func (r *Report) Scenario(name string) (Scenario, bool) {
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// verdict returns the named verdict.
func (s Scenario) verdict(name string) (assertions.Verdict, bool) {
	return assertions.Find(s.Verdicts, name)
}

// Passed counts the verdicts that held.
func (s Scenario) Passed() int {
	return len(s.Verdicts) - len(assertions.Failed(s.Verdicts))
}
