// Package cost accounts for the CPU a run spends: the Go process's own
// (every thread, getrusage RUSAGE_SELF) and every program it runs, by
// program name, from the rusage the kernel returns when the program is
// reaped (its waited-for descendants included).
//
// Every place the lab starts a program reports the reaped process with
// Record. A Meter attached to a context collects what is recorded under
// that context, so that runs sharing one process (the report runs many
// scenarios at once) each get their own programs' CPU; the process-wide
// table sees everything. What no process is charged for (the kernel's
// network-namespace teardown in its workqueues) is outside both: compare
// with the machine's own figure (MachineCPU) for that share.
package cost

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Usage is CPU time, split as the kernel accounts it.
type Usage struct {
	User time.Duration `json:"user_ns"`
	Sys  time.Duration `json:"sys_ns"`
	// Runs counts the processes (0 for the Go process itself).
	Runs int `json:"runs,omitempty"`
}

// Total is user + sys.
func (u Usage) Total() time.Duration { return u.User + u.Sys }

// Add returns u + v.
func (u Usage) Add(v Usage) Usage {
	return Usage{User: u.User + v.User, Sys: u.Sys + v.Sys, Runs: u.Runs + v.Runs}
}

// Sub returns u - v, floored at zero.
func (u Usage) Sub(v Usage) Usage {
	d := Usage{User: u.User - v.User, Sys: u.Sys - v.Sys, Runs: u.Runs - v.Runs}
	d.User, d.Sys = max(d.User, 0), max(d.Sys, 0)
	d.Runs = max(d.Runs, 0)
	return d
}

func fromRusage(ru *syscall.Rusage) Usage {
	if ru == nil {
		return Usage{}
	}
	return Usage{User: time.Duration(ru.Utime.Nano()), Sys: time.Duration(ru.Stime.Nano())}
}

// Table is CPU by program name.
type Table map[string]Usage

// Total sums the table.
func (t Table) Total() Usage {
	var s Usage
	for _, u := range t {
		s = s.Add(u)
	}
	return s
}

func (t Table) clone() Table {
	c := make(Table, len(t))
	for k, v := range t {
		c[k] = v
	}
	return c
}

// Names are the programs, most CPU first.
func (t Table) Names() []string {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := t[names[i]].Total(), t[names[j]].Total()
		if a != b {
			return a > b
		}
		return names[i] < names[j]
	})
	return names
}

// Meter collects the programs recorded under one context.
type Meter struct {
	mu sync.Mutex
	t  Table
}

// Programs returns a copy of what the meter collected.
func (m *Meter) Programs() Table {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.t.clone()
}

func (m *Meter) add(name string, u Usage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t == nil {
		m.t = Table{}
	}
	m.t[name] = m.t[name].Add(u)
}

type meterKey struct{}

// WithMeter returns a context whose recorded programs m also collects
// (an outer meter keeps collecting them too).
func WithMeter(ctx context.Context, m *Meter) context.Context {
	return context.WithValue(ctx, meterKey{}, append(meters(ctx), m))
}

func meters(ctx context.Context) []*Meter {
	if ctx == nil {
		return nil
	}
	ms, _ := ctx.Value(meterKey{}).([]*Meter)
	return ms[:len(ms):len(ms)]
}

var process = &Meter{}

// Record adds a reaped program's CPU to the process-wide table and to the
// meters of ctx (nil ctx: the table only). name is the program as people
// call it ("iptables-restore", "tshark"); ps may be nil (never started).
func Record(ctx context.Context, name string, ps *os.ProcessState) {
	if ps == nil {
		return
	}
	ru, _ := ps.SysUsage().(*syscall.Rusage)
	u := fromRusage(ru)
	u.Runs = 1
	name = filepath.Base(name)
	process.add(name, u)
	for _, m := range meters(ctx) {
		m.add(name, u)
	}
}

// Sample is the process's CPU at one moment.
type Sample struct {
	Self, Children Usage
	Programs       Table
	// Waited is how long the process's live threads have waited on a run
	// queue for a CPU (schedstat).
	Waited time.Duration
}

// Take samples the process: its own CPU, its reaped children's, the
// recorded programs, and its threads' waits for a CPU.
func Take() Sample {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	return Sample{Self: fromRusage(&self), Children: fromRusage(&children), Programs: process.Programs(), Waited: runQueueWait()}
}

// runQueueWait sums the second field of every thread's schedstat: the
// nanoseconds it was runnable but waiting for a CPU. A thread that has
// exited takes its share with it, so this is a lower bound.
func runQueueWait() time.Duration {
	// One directory read and one read per thread: no glob (it would
	// stat every match), a buffer reused.
	d, err := os.Open("/proc/self/task")
	if err != nil {
		return 0
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	var sum time.Duration
	buf := make([]byte, 128)
	for _, tid := range names {
		fd, err := syscall.Open("/proc/self/task/"+tid+"/schedstat", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		n, _ := syscall.Read(fd, buf)
		syscall.Close(fd)
		if n <= 0 {
			continue
		}
		if f := strings.Fields(string(buf[:n])); len(f) >= 2 {
			if ns, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				sum += time.Duration(ns)
			}
		}
	}
	return sum
}

// Spend is what one run cost.
type Spend struct {
	// Go is the test process's own CPU (all its threads, the kernel work
	// its system calls do included).
	Go Usage `json:"go"`
	// Programs are the programs it ran, by name; "other" holds reaped
	// children that no Record named.
	Programs Table `json:"programs"`
	// Wall is the run's wall time.
	Wall time.Duration `json:"wall_ns"`
	// Shared says the process ran other things at the same time: Go is
	// then unknown (zero), Programs are this run's alone.
	Shared bool `json:"shared,omitempty"`
	// Waited is how long the process's threads waited for a CPU: a busy
	// machine's mark on the run's timing (at least this much).
	Waited time.Duration `json:"cpu_wait_ns,omitempty"`
}

// Total is the Go process's CPU and its programs'.
func (s Spend) Total() time.Duration { return s.Go.Total() + s.Programs.Total().Total() }

// Since is the spend from a to b of a process that ran one thing at a
// time in between (a Ginkgo worker).
func Since(a, b Sample, wall time.Duration) Spend {
	s := Spend{Go: b.Self.Sub(a.Self), Programs: Table{}, Wall: wall, Waited: max(b.Waited-a.Waited, 0)}
	var named Usage
	for n, u := range b.Programs {
		d := u.Sub(a.Programs[n])
		if d.Runs > 0 || d.Total() > 0 {
			s.Programs[n] = d
			named = named.Add(d)
		}
	}
	// Children reaped without a Record: libraries' own execs.
	if other := b.Children.Sub(a.Children).Sub(Usage{User: named.User, Sys: named.Sys}); other.Total() > time.Millisecond {
		s.Programs["other"] = other
	}
	return s
}

// MachineCPU is the CPU time every CPU of the machine has been busy since
// boot (/proc/stat: user, nice, system, irq, softirq, steal), the kernel's
// work for no process included. Differences of two readings bound what a
// run cost the machine (anything else running counts too).
func MachineCPU() (time.Duration, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("machine cpu: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 9 || fields[0] != "cpu" {
			continue
		}
		var ticks uint64
		for _, i := range []int{1, 2, 3, 6, 7, 8} {
			v, err := strconv.ParseUint(fields[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("machine cpu: /proc/stat field %d: %w", i, err)
			}
			ticks += v
		}
		// USER_HZ is 100 on every Linux architecture that exports it.
		return time.Duration(ticks) * 10 * time.Millisecond, nil
	}
	return 0, fmt.Errorf("machine cpu: no cpu line in /proc/stat")
}

// Item is one measured unit of a run (a spec, a scenario) with its labels.
type Item struct {
	Name   string
	Labels []string
	Spend  Spend
}

// Breakdown is a run's CPU by program and by label.
type Breakdown struct {
	Items    int
	Go       Usage
	Programs Table
	// Labels sums each item's total CPU under every label it has (an item
	// with two labels counts under both).
	Labels map[string]Usage
	// LabelItems counts the items under each label.
	LabelItems map[string]int
}

// Total is the Go processes' CPU and their programs'.
func (b Breakdown) Total() time.Duration { return b.Go.Total() + b.Programs.Total().Total() }

// Summarize adds the items up.
func Summarize(items []Item) Breakdown {
	b := Breakdown{Programs: Table{}, Labels: map[string]Usage{}, LabelItems: map[string]int{}}
	for _, it := range items {
		b.Items++
		b.Go = b.Go.Add(it.Spend.Go)
		total := it.Spend.Go
		for n, u := range it.Spend.Programs {
			b.Programs[n] = b.Programs[n].Add(u)
			total = total.Add(Usage{User: u.User, Sys: u.Sys})
		}
		for _, l := range it.Labels {
			b.Labels[l] = b.Labels[l].Add(total)
			b.LabelItems[l]++
		}
	}
	return b
}

// Markdown renders the breakdown as two tables; machine, when non-zero,
// is what the whole machine spent over the run (kernel work no process
// is charged for included).
func (b Breakdown) Markdown(machine time.Duration) string {
	var s strings.Builder
	total := b.Total()
	fmt.Fprintf(&s, "%d items, %.1f s of CPU", b.Items, total.Seconds())
	if machine > 0 {
		fmt.Fprintf(&s, " (the machine spent %.1f s over the run; the rest is kernel work charged to no process, and anything else running)", machine.Seconds())
	}
	s.WriteString("\n\n| program | runs | user s | sys s | CPU s | share |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	row := func(name string, u Usage) {
		share := 0.0
		if total > 0 {
			share = 100 * float64(u.Total()) / float64(total)
		}
		fmt.Fprintf(&s, "| %s | %d | %.2f | %.2f | %.2f | %.0f%% |\n", name, u.Runs, u.User.Seconds(), u.Sys.Seconds(), u.Total().Seconds(), share)
	}
	all := b.Programs.clone()
	all["go (the lab's own processes)"] = b.Go
	for _, n := range all.Names() {
		row(n, all[n])
	}
	labels := make([]string, 0, len(b.Labels))
	for l := range b.Labels {
		labels = append(labels, l)
	}
	sort.Slice(labels, func(i, j int) bool {
		if a, c := b.Labels[labels[i]].Total(), b.Labels[labels[j]].Total(); a != c {
			return a > c
		}
		return labels[i] < labels[j]
	})
	s.WriteString("\n| label | items | CPU s |\n| --- | ---: | ---: |\n")
	for _, l := range labels {
		fmt.Fprintf(&s, "| %s | %d | %.2f |\n", l, b.LabelItems[l], b.Labels[l].Total().Seconds())
	}
	return s.String()
}
