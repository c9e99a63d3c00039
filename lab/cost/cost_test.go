package cost

import (
	"context"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRecordReachesTheContextsMeters(t *testing.T) {
	outer, inner := &Meter{}, &Meter{}
	ctx := WithMeter(WithMeter(context.Background(), outer), inner)
	other := WithMeter(context.Background(), &Meter{})
	before := Take()
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	Record(ctx, "/bin/sh", cmd.ProcessState)
	for name, m := range map[string]*Meter{"outer": outer, "inner": inner} {
		u := m.Programs()["sh"]
		if u.Runs != 1 || u.Total() <= 0 {
			t.Errorf("%s meter: sh = %+v, want one run with CPU", name, u)
		}
	}
	if got := meters(other)[0].Programs(); len(got) != 0 {
		t.Errorf("a meter of another context collected %v", got)
	}
	s := Since(before, Take(), time.Second)
	if s.Programs["sh"].Runs != 1 {
		t.Errorf("Since: programs %v, want sh once", s.Programs)
	}
	if _, ok := s.Programs["other"]; ok {
		t.Errorf("Since: a recorded child also counted as other: %v", s.Programs)
	}
}

func TestSinceNamesUnrecordedChildrenOther(t *testing.T) {
	before := Take()
	if err := exec.Command("sh", "-c", "i=0; while [ $i -lt 50000 ]; do i=$((i+1)); done").Run(); err != nil {
		t.Fatal(err)
	}
	s := Since(before, Take(), time.Second)
	if s.Programs["other"].Total() <= 0 {
		t.Errorf("an unrecorded child's CPU is lost: %v", s.Programs)
	}
}

func TestSummarizeByProgramAndLabel(t *testing.T) {
	ms := time.Millisecond
	items := []Item{
		{Name: "a", Labels: []string{"peers", "ipv4"}, Spend: Spend{Go: Usage{User: 100 * ms}, Programs: Table{"tshark": {User: 800 * ms, Runs: 1}}}},
		{Name: "b", Labels: []string{"baseline", "ipv4"}, Spend: Spend{Go: Usage{Sys: 50 * ms}}},
	}
	b := Summarize(items)
	if b.Total() != 950*ms {
		t.Errorf("total %v, want 950ms", b.Total())
	}
	if b.Labels["ipv4"].Total() != 950*ms || b.Labels["peers"].Total() != 900*ms || b.LabelItems["ipv4"] != 2 {
		t.Errorf("labels %v %v", b.Labels, b.LabelItems)
	}
	md := b.Markdown(2 * time.Second)
	for _, want := range []string{"| tshark | 1 | 0.80 |", "| peers | 1 | 0.90 |", "machine spent 2.0 s"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestMachineCPU(t *testing.T) {
	a, err := MachineCPU()
	if err != nil || a <= 0 {
		t.Fatalf("MachineCPU = %v, %v", a, err)
	}
}

// Twice as many busy threads as CPUs must wait for one: the run-queue
// figure sees it.
func TestSampleSeesWaitsForACPU(t *testing.T) {
	n := 2 * runtime.NumCPU()
	// As many Ps as threads, so they queue in the kernel, not in Go.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(n))
	before := Take()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // each its own thread, alive at the second Take
			for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
			}
			time.Sleep(200 * time.Millisecond)
		}()
	}
	time.Sleep(350 * time.Millisecond)
	s := Since(before, Take(), time.Second)
	wg.Wait()
	if s.Waited < 50*time.Millisecond {
		t.Errorf("%d busy threads on %d CPUs for 300 ms waited %v for a CPU in all, want at least 50 ms", n, runtime.NumCPU(), s.Waited)
	}
}
