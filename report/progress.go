package report

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tfolab/tfolab/lab"
	"golang.org/x/sys/unix"
)

// Progress shows a run as it goes. On a terminal it rewrites one line
// (scenarios done of all, elapsed, and what the longest-running ones wait
// on: the kernel timer of their client's open socket, read from
// /proc/net/tcp in its namespace); anywhere else (CI) it prints a plain
// line per finished scenario and, every WaitEvery, one about what is
// still running.
type Progress struct {
	w     io.Writer
	tty   bool
	width int

	mu      sync.Mutex
	total   int
	done    int
	failed  int
	start   time.Time
	running map[*job]bool
}

// WaitEvery is how often a non-terminal progress says what is waiting.
const WaitEvery = 5 * time.Second

// NewProgress writes to f, as a live line if f is a terminal.
func NewProgress(f *os.File) *Progress {
	p := &Progress{w: f, width: 120}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		p.tty = true
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 20 {
			p.width = int(ws.Col) - 1
		}
	}
	return p
}

func (p *Progress) begin(total int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total, p.done, p.failed, p.start, p.running = total, 0, 0, time.Now(), map[*job]bool{}
}

func (p *Progress) started(j *job) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running[j] = true
}

func (p *Progress) finished(j *job, s Scenario) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.running, j)
	p.done++
	status := "PASS"
	switch {
	case s.Unsupported != "":
		status = "N/S"
	case !s.Pass:
		p.failed++
		status = "FAIL"
	}
	line := fmt.Sprintf("[%d/%d] %s %s (%s, timeline %s)", p.done, p.total, status, s.Name, readable(s.Wall), readable(s.Elapsed))
	if !s.Pass {
		line += ": " + failedNames(s)
	}
	if p.tty {
		if s.Pass {
			p.draw()
			return
		}
		fmt.Fprintf(p.w, "\r\033[K%s\n", line) // failures stay on screen
		p.draw()
		return
	}
	fmt.Fprintln(p.w, line)
}

// run redraws (terminal) or reports waits (plain) until the returned stop.
func (p *Progress) run(ctx context.Context) (stop func()) {
	if p == nil {
		return func() {}
	}
	every := WaitEvery
	if p.tty {
		every = 250 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.tick()
			}
		}
	}()
	return func() {
		cancel()
		<-done
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.tty {
			fmt.Fprint(p.w, "\r\033[K")
		}
	}
}

func (p *Progress) tick() {
	n := 3
	if p.tty {
		n = 1 // one line: the longest-running scenario's wait
	}
	waits := p.waits(n, !p.tty)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.drawWith(waits)
		return
	}
	if len(p.running) > 0 {
		fmt.Fprintf(p.w, "… %s: %d running: %s\n", readable(time.Since(p.start)), len(p.running), strings.Join(waits, "; "))
	}
}

func (p *Progress) draw() { p.drawWith(nil) }

func (p *Progress) drawWith(waits []string) {
	line := fmt.Sprintf("report %d/%d", p.done, p.total)
	if p.failed > 0 {
		line += fmt.Sprintf(" (%d failed)", p.failed)
	}
	line += fmt.Sprintf(" · %d running · %s", len(p.running), readable(time.Since(p.start)))
	if len(waits) > 0 {
		line += " · " + strings.Join(waits, " · ")
	}
	if r := []rune(line); len(r) > p.width {
		line = string(r[:p.width-1]) + "…"
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

// waits describes the n longest-running scenarios' waits.
func (p *Progress) waits(n int, withElapsed bool) []string {
	p.mu.Lock()
	jobs := make([]*job, 0, len(p.running))
	for j := range p.running {
		jobs = append(jobs, j)
	}
	p.mu.Unlock()
	slices.SortFunc(jobs, func(a, b *job) int { return a.startedAt().Compare(b.startedAt()) })
	var out []string
	for _, j := range jobs[:min(n, len(jobs))] {
		out = append(out, j.waiting(withElapsed))
	}
	return out
}

func (j *job) startedAt() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.started
}

// waiting says what the scenario waits on: its client's socket with a
// pending timer (a SYN retransmission, a data RTO), or what else it does.
func (j *job) waiting(withElapsed bool) string {
	j.mu.Lock()
	defer j.mu.Unlock()
	name := shortName(j.scenario.Name)
	if j.started.IsZero() {
		return name + ": starting"
	}
	elapsed := ""
	if withElapsed {
		elapsed = " " + readable(time.Since(j.started))
	}
	if j.ended {
		return fmt.Sprintf("%s%s: tearing down", name, elapsed)
	}
	var ns *lab.Namespace
	if j.lab != nil {
		ns = j.lab.Namespace(j.prep.clientNode)
	}
	if ns == nil {
		return fmt.Sprintf("%s%s: building the lab", name, elapsed)
	}
	var socks []timedSocket
	_ = ns.Do(func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			if b, err := os.ReadFile(f); err == nil {
				socks = append(socks, parseTimers(b)...)
			}
		}
		return nil
	})
	return fmt.Sprintf("%s%s: %s", name, elapsed, describeWait(socks))
}

// timedSocket is the part of a /proc/net/tcp row that says what a socket
// waits for.
type timedSocket struct {
	state   uint8 // TCP_ESTABLISHED 1, TCP_SYN_SENT 2, ...
	timer   uint8 // 0 none, 1 retransmit (SYN or data), 2 keepalive, 3 TIME_WAIT, 4 zero-window probe
	when    time.Duration
	retrans int
	port    uint16 // remote
}

// parseTimers reads the "st", "tr:tm->when" and "retrnsmt" columns of
// /proc/net/tcp(6); tm->when is in clock ticks (USER_HZ, 100 a second).
func parseTimers(b []byte) []timedSocket {
	var out []timedSocket
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) < 7 || f[0] == "sl" {
			continue
		}
		st, err1 := strconv.ParseUint(f[3], 16, 8)
		tr, when, ok := strings.Cut(f[5], ":")
		timer, err2 := strconv.ParseUint(tr, 16, 8)
		ticks, err3 := strconv.ParseUint(when, 16, 64)
		retrans, err4 := strconv.ParseUint(f[6], 16, 32)
		_, portHex, _ := strings.Cut(f[2], ":")
		port, err5 := strconv.ParseUint(portHex, 16, 16)
		if !ok || errorsAny(err1, err2, err3, err4, err5) {
			continue
		}
		out = append(out, timedSocket{uint8(st), uint8(timer), time.Duration(ticks) * 10 * time.Millisecond, int(retrans), uint16(port)})
	}
	return out
}

func errorsAny(errs ...error) bool {
	for _, e := range errs {
		if e != nil {
			return true
		}
	}
	return false
}

// describeWait picks the socket that explains the wait: a SYN being
// retransmitted first, then data awaiting its ACK, else an idle state.
func describeWait(socks []timedSocket) string {
	const synSent, established = 2, 1
	for _, s := range socks {
		if s.state == synSent && s.timer == 1 {
			return fmt.Sprintf("SYN to :%d, retransmission %d in %s", s.port, s.retrans+1, readable(s.when))
		}
	}
	for _, s := range socks {
		if s.state == established && s.timer == 1 {
			return fmt.Sprintf("data to :%d unacked, RTO %d in %s", s.port, s.retrans+1, readable(s.when))
		}
	}
	for _, s := range socks {
		if s.state == established {
			return fmt.Sprintf("connected to :%d, reading", s.port)
		}
	}
	return "no socket open (between connections, or waiting out a pause)"
}

func failedNames(s Scenario) string {
	if s.Unsupported != "" {
		return s.Unsupported
	}
	if s.Error != "" {
		return "run failed: " + firstLine(s.Error)
	}
	var names []string
	for _, v := range s.Verdicts {
		if !v.Pass {
			names = append(names, v.Name)
		}
	}
	if s.Teardown != "" {
		names = append(names, "teardown: "+firstLine(s.Teardown))
	}
	return strings.Join(names, ", ")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// shortName drops the area prefix ("blackhole/", "middlebox/") for the
// progress line, where the width is scarce.
func shortName(name string) string {
	if _, rest, ok := strings.Cut(name, "/"); ok {
		return rest
	}
	return name
}
