package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/proc"
	"github.com/tfolab/tfolab/observation"
	"golang.org/x/sys/unix"
)

// Curl is `curl --tcp-fastopen` (TCP_FASTOPEN_CONNECT in 7.88.1) making one
// HTTP/1.1 GET of PeerPath; the response, headers included (-i), is the
// connection's Response. Its request is fixed by its flags (Request), so
// a scenario knows the SYN's payload length; Connect's payload is unused.
type Curl struct {
	// Plain leaves --tcp-fastopen out: an ordinary client, e.g. in front of
	// a proxy whose other side is under test.
	Plain bool
}

func (Curl) Kind() string { return "curl" }

func (Curl) Requires() []Program { return []Program{ProgCurl} }

// Version is curl's own version ("7.88.1").
func (Curl) Version() string { return programVersion(ProgCurl.Path, reCurlVersion, "--version") }

// Request is the request curl sends with the flags Connect gives it: a
// fixed Host and User-Agent make it the same for every address and curl
// version.
func (Curl) Request() []byte {
	return []byte("GET " + PeerPath + " HTTP/1.1\r\nHost: tfolab\r\nUser-Agent: tfolab\r\nAccept: */*\r\n\r\n")
}

// curlWrite is curl's -w line: the connection as curl saw it.
const curlWrite = "\ntfolab-curl %{exitcode} %{http_code} %{local_ip} %{local_port} %{time_connect} %{time_starttransfer} %{errormsg}\n"

var reCurlWrite = regexp.MustCompile(`tfolab-curl (\d+) (\d+) (\S*) (\d+) ([\d.]+) ([\d.]+) ?(.*)`)

func (c Curl) Connect(ctx context.Context, site Site, node string, o ConnectOptions) []observation.Conn {
	return []observation.Conn{c.connect(ctx, site, node, o)}
}

func (c Curl) connect(ctx context.Context, site Site, node string, o ConnectOptions) observation.Conn {
	target, plain := o.Target, c.Plain || o.Plain
	mode := "connect" // TCP_FASTOPEN_CONNECT
	args := []string{"-q", "-sS", "-g", "--http1.1", "-i", "-o", "{dir}/response",
		"-H", "Host: tfolab", "-A", "tfolab", "-w", curlWrite}
	if plain {
		mode = "plain"
	} else {
		args = append(args, "--tcp-fastopen")
	}
	args = append(args, "http://"+target.String()+PeerPath)
	conn := observation.Conn{Label: o.Label, Mode: mode, Remote: target, Request: c.Request()}
	run, err := runClient(ctx, site, node, o, proc.Spec{Name: "curl", Path: ProgCurl.Path, Args: args}, ProgCurl)
	run.fill(&conn, err)
	if err != nil || conn.Stalled {
		return conn
	}
	m := reCurlWrite.FindStringSubmatch(string(run.output))
	if m == nil {
		conn.Error = fmt.Sprintf("curl exited %d without its -w line:\n%s", run.code, tail(run.output))
		return conn
	}
	if addr, err := netip.ParseAddr(m[3]); err == nil {
		port, _ := strconv.ParseUint(m[4], 10, 16)
		if !conn.Local.IsValid() {
			conn.Local = netip.AddrPortFrom(addr.Unmap(), uint16(port))
		}
	}
	if !run.onWire {
		// Not on a captured link (a proxy on the same node): curl's own
		// clock, from its start, is all there is.
		conn.Connected, conn.FirstByte = secs(m[5]), secs(m[6])
	}
	if run.code != 0 {
		conn.Error = fmt.Sprintf("curl: (%s) %s", m[1], strings.TrimSpace(m[7]))
		conn.Errno = curlErrno(run.code, m[7])
		conn.Stalled = run.code == 28
		return conn
	}
	conn.Response = run.files["response"]
	return conn
}

func secs(s string) time.Duration {
	f, _ := strconv.ParseFloat(s, 64)
	return time.Duration(math.Round(f * float64(time.Second)))
}

// curlErrno names the system error behind a curl exit code, where there is
// one (curl's own message carries strerror's words).
func curlErrno(code int, msg string) string {
	switch {
	case strings.Contains(msg, "Connection refused"):
		return "ECONNREFUSED"
	case strings.Contains(msg, "Connection reset"):
		return "ECONNRESET"
	case code == 28:
		return "ETIMEDOUT"
	}
	return ""
}

// PythonClient is the first seed's Python client (scripts/tfo_client.py,
// ported to Python 3) under Debian's python3: sendto(..., MSG_FASTOPEN,
// ...) of the payload, then recv until EOF; what it prints is the
// Response.
type PythonClient struct {
	// Script is the client's path; "" finds scripts/tfo_client.py in the
	// tfolab checkout.
	Script string
}

func (PythonClient) Kind() string { return "python-client" }

func (c PythonClient) Requires() []Program {
	return []Program{ProgPython, {Path: c.script()}}
}

// Version is the interpreter's ("3.11.2").
func (PythonClient) Version() string {
	return programVersion(ProgPython.Path, rePythonVersion, "--version")
}

// DefaultPythonScript is the seed's client in this repository.
const DefaultPythonScript = "scripts/tfo_client.py"

// script resolves the client's path: as given, else the checkout's copy
// found from the working directory (the suite runs at the module root,
// `tfolab run` usually does) or from this source file's location.
func (c PythonClient) script() string {
	if c.Script != "" {
		return c.Script
	}
	return findInCheckout(DefaultPythonScript)
}

func findInCheckout(rel string) string {
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if p := filepath.Join(d, rel); fileExists(p) {
				return p
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		if p := filepath.Join(filepath.Dir(file), "..", rel); fileExists(p) {
			return filepath.Clean(p)
		}
	}
	return rel
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

var rePythonErrno = regexp.MustCompile(`\[Errno (\d+)\]`)

func (c PythonClient) Connect(ctx context.Context, site Site, node string, o ConnectOptions) []observation.Conn {
	return []observation.Conn{c.connect(ctx, site, node, o)}
}

func (c PythonClient) connect(ctx context.Context, site Site, node string, o ConnectOptions) observation.Conn {
	target, payload := o.Target, o.Payload
	conn := observation.Conn{Label: o.Label, Mode: "sendto", Remote: target, Request: bytes.Clone(payload)}
	script, err := filepath.Abs(c.script())
	if err != nil {
		conn.Error = err.Error()
		return conn
	}
	run, err := runClient(ctx, site, node, o, proc.Spec{
		Name: "python-client",
		Path: ProgPython.Path,
		Args: []string{script, target.Addr().String(), strconv.Itoa(int(target.Port())), string(payload)},
	}, ProgPython, Program{Path: script})
	run.fill(&conn, err)
	if err != nil || conn.Stalled {
		return conn
	}
	if run.code != 0 {
		lines := strings.Split(strings.TrimSpace(string(run.output)), "\n")
		conn.Error = fmt.Sprintf("python client exited %d: %s", run.code, lines[len(lines)-1])
		if m := rePythonErrno.FindStringSubmatch(conn.Error); m != nil {
			n, _ := strconv.Atoi(m[1])
			conn.Errno = unix.ErrnoName(syscall.Errno(n))
		}
		return conn
	}
	conn.Response = run.output
	return conn
}

// clientRun is one run of a one-shot client program.
type clientRun struct {
	start  time.Time // before the fork
	end    time.Time // after the exit
	code   int
	output []byte            // stdout and stderr, in order
	files  map[string][]byte // files it wrote into its temp dir
	wire   []capture.Packet  // the node's packets while it ran
	target netip.AddrPort
	onWire bool // its SYN was captured
	err    error
}

// clientFiles are the files a client run reads back from the temp dir.
var clientFiles = []string{"response"}

// runClient runs a one-shot client on node until it exits, o.Timeout
// after its first packet, or ctx ends (then it is killed and the
// connection reported stalled), capturing the node's links meanwhile: an
// external program cannot say which port it used or when its SYN left,
// but its first SYN to the target after the start can. Until its first
// packet the program is bounded by its CPU (programCPUBudget) and ctx,
// not by the connection's bound: beside two dozen other labs on two
// cores, a fork and exec was seen to wait seconds for a CPU.
func runClient(ctx context.Context, site Site, node string, o ConnectOptions, spec proc.Spec, progs ...Program) (clientRun, error) {
	r := clientRun{target: o.Target, files: map[string][]byte{}}
	if err := missingError(progs...); err != nil {
		return r, fmt.Errorf("%s: %w", spec.Name, err)
	}
	w, err := watch(site, node)
	if err != nil {
		return r, err
	}
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if o.Timeout > 0 {
		defer w.afterFirstPacket(rctx, o.Timeout, func() { cancel(context.DeadlineExceeded) })()
	}
	spec.Ready = proc.Exited()
	spec.CPUBudget = programCPUBudget
	r.start = time.Now()
	p, err := proc.Start(rctx, site.Topo.Namespace(node).Runner(), spec)
	r.end = time.Now()
	var se *proc.StartError
	switch {
	case errors.As(err, &se) && rctx.Err() != nil:
		r.err = context.Cause(rctx) // killed at the bound: Start has cleaned up
		r.output = []byte(se.Tail)
	case err != nil:
		w.stop()
		return r, err
	default:
		site.Lab.Defer(fmt.Sprintf("%s (pid %d) on %s", spec.Name, p.Pid(), node), p.Stop)
		r.code, _ = p.Wait(rctx)
		r.output = p.Output()
		for _, f := range clientFiles {
			if b, err := os.ReadFile(filepath.Join(p.Dir(), f)); err == nil {
				r.files[f] = b
			}
		}
		if err := p.Stop(); err != nil {
			r.err = err
		}
	}
	pkts, werr := w.stop()
	if werr != nil && r.err == nil {
		r.err = werr
	}
	r.wire = pkts
	return r, nil
}

// programCPUBudget bounds a client program's run by its own CPU: curl
// and the Python client use 10 to 50 ms for one connection here, so one
// that has used a second is stuck.
const programCPUBudget = time.Second

// fill sets what the wire and the run say about the connection: Local,
// Start and the timings from its packets (the lab's own client measures
// from its first sending syscall; for a program the SYN leaving is the
// closest observable), else from the process's start and exit.
func (r *clientRun) fill(c *observation.Conn, err error) {
	c.Start = r.start.Round(0)
	if err != nil {
		c.Error = err.Error()
		return
	}
	if !r.end.IsZero() {
		c.Done = r.end.Sub(r.start)
	}
	var syn *capture.Packet
	for i := range r.wire {
		p := &r.wire[i]
		if p.IsSYN() && p.Dst == r.target && !p.Time.Before(r.start) {
			syn = p
			break
		}
	}
	if syn != nil {
		r.onWire = true
		c.Local, c.Start = syn.Src, syn.Time
		c.Done = r.end.Sub(syn.Time)
		for _, p := range r.wire {
			if p.Src != r.target || p.Dst != syn.Src || p.Time.Before(syn.Time) {
				continue
			}
			if p.IsSYNACK() && c.Connected == 0 {
				c.Connected = p.Time.Sub(syn.Time)
			}
			if p.Length > 0 && c.FirstByte == 0 {
				c.FirstByte = p.Time.Sub(syn.Time)
			}
		}
	}
	if r.err != nil {
		c.Error = r.err.Error()
		if errors.Is(r.err, context.DeadlineExceeded) {
			c.Stalled = true
			c.Errno = "ETIMEDOUT"
		}
	}
}

func tail(b []byte) string {
	const n = 1024
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimRight(string(b), "\n")
}

// wire is a capture of a node's links while one client program runs.
type wire struct{ caps []*capture.Capture }

func watch(site Site, node string) (*wire, error) {
	w := &wire{}
	ns := site.Topo.Namespace(node)
	for _, ifname := range site.Topo.Interfaces(node) {
		c, err := capture.Start(ns.Handle(), ifname, capture.Options{Link: observation.LinkKey(node, ifname)})
		if err != nil {
			w.stop()
			return nil, fmt.Errorf("watch %s/%s for the client's SYN: %w", node, ifname, err)
		}
		w.caps = append(w.caps, c)
	}
	return w, nil
}

// stop ends the captures and returns their packets, all links merged in
// time order.
func (w *wire) stop() ([]capture.Packet, error) {
	var (
		out  []capture.Packet
		errs []error
	)
	for _, c := range w.caps {
		errs = append(errs, c.Stop())
		out = append(out, c.Packets()...)
	}
	sortPackets(out)
	return out, errors.Join(errs...)
}

// afterFirstPacket calls f once d has passed since the first packet
// seen on the node's links, or never if ctx ends first; the function it
// returns stops it.
func (w *wire) afterFirstPacket(ctx context.Context, d time.Duration, f func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		tick := time.NewTicker(firstPacketPoll)
		defer tick.Stop()
		for !w.seen() {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
			f()
		}
	}()
	return cancel
}

// firstPacketPoll is how often afterFirstPacket looks: the bound starts
// at most this late, against bounds of seconds.
const firstPacketPoll = 2 * time.Millisecond

// seen reports whether any link has captured a packet yet.
func (w *wire) seen() bool {
	for _, c := range w.caps {
		if c.Frames() > 0 {
			return true
		}
	}
	return false
}

func sortPackets(p []capture.Packet) {
	sort.SliceStable(p, func(i, j int) bool { return p[i].Time.Before(p[j].Time) })
}
