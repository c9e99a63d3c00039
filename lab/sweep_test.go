package lab

import (
	"strings"
	"testing"

	"github.com/tfolab/tfolab/lab/netnsx"
)

func TestJudgeOwner(t *testing.T) {
	const boot = "0c3a4a52-5c1b-4d55-9b7e-1d2f8a3e9f10"
	rec := &netnsx.Owner{PID: 4242, StartTime: 9000, BootID: boot}
	proc := func(state byte, start uint64, flags uint64) *netnsx.ProcStat {
		return &netnsx.ProcStat{PID: 4242, Comm: "tfolab (a) test", State: state, PPID: 17, Flags: flags, StartTime: start}
	}
	for _, tt := range []struct {
		name                 string
		facts                ownerFacts
		gone, alive, exiting bool
		reason               string
	}{
		{name: "no process", facts: ownerFacts{record: rec},
			gone: true, reason: "has exited"},
		{name: "same process, running", facts: ownerFacts{record: rec, stat: proc('S', 9000, 0)},
			alive: true, reason: "its run is alive"},
		{name: "PID reused", facts: ownerFacts{record: rec, stat: proc('S', 12345, 0)},
			gone: true, reason: "now another process (\"tfolab (a) test\", started at tick 12345; the owner started at tick 9000)"},
		{name: "reused by a zombie", facts: ownerFacts{record: rec, stat: proc('Z', 12345, 0)},
			gone: true, reason: "now another process"},
		{name: "earlier boot", facts: ownerFacts{record: &netnsx.Owner{PID: 4242, StartTime: 9000, BootID: "old"}, stat: proc('S', 9000, 0)},
			gone: true, reason: "earlier boot"},
		{name: "zombie", facts: ownerFacts{record: rec, stat: proc('Z', 9000, 0)},
			exiting: true, reason: "is exiting (state Z)"},
		{name: "dead", facts: ownerFacts{record: rec, stat: proc('X', 9000, 0)},
			exiting: true, reason: "state X"},
		{name: "killed, still tearing down", facts: ownerFacts{record: rec, stat: proc('D', 9000, 0x4)},
			exiting: true, reason: "is exiting (state D)"},
		{name: "no record, running", facts: ownerFacts{stat: proc('R', 1, 0), note: "no owner record, so a reused PID cannot be ruled out"},
			alive: true, reason: "cannot be ruled out"},
		{name: "no record, zombie", facts: ownerFacts{stat: proc('Z', 1, 0)},
			exiting: true},
		{name: "SIGKILL queued, not yet acted on", facts: ownerFacts{record: rec, stat: proc('S', 9000, 0), killed: true},
			exiting: true, reason: "SIGKILL pending"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.facts
			f.pid, f.boot = 4242, boot
			v := judge(f)
			if v.gone != tt.gone || v.alive != tt.alive || v.exiting != tt.exiting {
				t.Errorf("judge = %+v, want gone=%v alive=%v exiting=%v", v, tt.gone, tt.alive, tt.exiting)
			}
			if !strings.Contains(v.reason, tt.reason) {
				t.Errorf("reason %q, want it to contain %q", v.reason, tt.reason)
			}
		})
	}
}

func TestJudgeWithoutBootID(t *testing.T) {
	// Without a boot ID on either side only the start time counts.
	f := ownerFacts{pid: 7, record: &netnsx.Owner{PID: 7, StartTime: 5}, stat: &netnsx.ProcStat{PID: 7, State: 'S', StartTime: 5}, boot: "b"}
	if v := judge(f); !v.alive {
		t.Errorf("record without boot ID: %+v, want alive", v)
	}
	f.record.BootID, f.boot = "a", ""
	if v := judge(f); !v.alive {
		t.Errorf("no current boot ID: %+v, want alive", v)
	}
}

func TestSigkillPending(t *testing.T) {
	status := func(sig, shd string) []byte {
		return []byte("Name:\tsleep\nState:\tS (sleeping)\nSigQ:\t0/96549\nSigPnd:\t" + sig + "\nShdPnd:\t" + shd + "\nSigBlk:\t0000000000000100\n")
	}
	for _, tt := range []struct {
		sig, shd string
		want     bool
	}{
		{"0000000000000000", "0000000000000000", false},
		{"0000000000000100", "0000000000000000", true}, // SIGKILL is bit 8
		{"0000000000000000", "0000000000000100", true},
		{"0000000000004000", "0000000000000002", false}, // SIGTERM, SIGINT
		{"garbage", "0000000000000000", false},
	} {
		if got := sigkillPending(status(tt.sig, tt.shd)); got != tt.want {
			t.Errorf("SigPnd %s ShdPnd %s: %v, want %v (SigBlk must not count)", tt.sig, tt.shd, got, tt.want)
		}
	}
}
