package scenarios

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tfolab/tfolab/lab/cost"

	"github.com/tfolab/tfolab/lab/proc"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/topology"
)

// Real peers: curl, nginx, HAProxy and the seed's Python client, each a
// lab/proc process inside its node with a generated config in its own temp
// dir, judged on the same captures and counters as the lab's own sockets.

// Program is an external program a kind or an expectation runs: the file
// that must exist and the Debian package that installs it, as the
// Makefile's DEB_DEPS lists them ("package:path").
type Program struct {
	// Package is the Debian package; "" for a file of this repository.
	Package string
	Path    string
}

func (p Program) String() string {
	if p.Package == "" {
		return p.Path + " (from the tfolab checkout)"
	}
	return fmt.Sprintf("%s (Debian package %s)", p.Path, p.Package)
}

// check reports why the program cannot run here, nil if it can.
func (p Program) check() error {
	fi, err := os.Stat(p.Path)
	if err != nil {
		return err
	}
	if fi.IsDir() || (p.Package != "" && fi.Mode()&0o111 == 0) {
		return fmt.Errorf("%s is not an executable file", p.Path)
	}
	return nil
}

// The Debian 12 programs the peers run. Debian's python3-scapy imports
// only under Debian's /usr/bin/python3 (a python3 on PATH may be a pyenv
// build), so every Python program names that interpreter.
var (
	ProgCurl    = Program{"curl", "/usr/bin/curl"}
	ProgNginx   = Program{"nginx", "/usr/sbin/nginx"}
	ProgHAProxy = Program{"haproxy", "/usr/sbin/haproxy"}
	ProgPython  = Program{"python3", "/usr/bin/python3"}
	ProgScapy   = Program{"python3-scapy", "/usr/bin/scapy"}
	ProgTshark  = Program{"tshark", "/usr/bin/tshark"}
)

// Requirer is a kind or an expectation that runs external programs.
type Requirer interface {
	Requires() []Program
}

// missingError is the error a kind's Start returns for a program that is
// not installed: the same words the suite skips or fails with.
func missingError(progs ...Program) error {
	var missing []Program
	for _, p := range progs {
		if p.check() != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return errors.New(missingReason(missing))
}

// missingReason names each missing program and how to install it.
func missingReason(missing []Program) string {
	var names, debs []string
	for _, p := range missing {
		names = append(names, p.String())
		if p.Package != "" {
			debs = append(debs, p.Package)
		}
	}
	s := "not installed: " + strings.Join(names, ", ")
	if len(debs) > 0 {
		s += fmt.Sprintf("; `sudo make deps` installs it (apt-get install --no-install-recommends %s)", strings.Join(debs, " "))
	}
	return s
}

// PeerPath is the URL path the HTTP peers serve DefaultBody at.
const PeerPath = "/body.bin"

// DefaultBodySize is the size of DefaultBody: three segments, well inside
// HAProxy's 16 kB buffer (http-request return file).
const DefaultBodySize = 3000

// DefaultBody is the static body the HTTP peers serve: pseudo-random bytes
// from a fixed seed, so that a truncated, reordered or corrupted response
// cannot match by chance, and every run serves the same bytes.
func DefaultBody() []byte {
	b := make([]byte, DefaultBodySize)
	r := rand.NewChaCha8([32]byte{'t', 'f', 'o', 'l', 'a', 'b'})
	_, _ = r.Read(b) // ChaCha8.Read never fails
	return b
}

// HTTPReply is a complete HTTP/1.1 response carrying body, what the lab's
// own Listener writes (Listener{Reply: HTTPReply(body)}) so that HTTP
// clients accept it.
func HTTPReply(body []byte) []byte {
	h := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	return append([]byte(h), body...)
}

// versions caches each program's version: Version is called for every
// scenario run and the answer cannot change under a running test.
var versions sync.Map // path+args -> string

// programVersion runs path with args (in this namespace: it reads
// nothing from the network) and returns the first submatch of re in its
// output, or "" if the program is missing or says something else. The
// answer is also kept machine-wide, keyed by the binary's size and
// modification time: `tshark --version` alone costs a fifth of a CPU
// second, and every parallel worker asks.
func programVersion(path string, re *regexp.Regexp, args ...string) string {
	key := path + " " + strings.Join(args, " ")
	if v, ok := versions.Load(key); ok {
		return v.(string)
	}
	cache := ""
	if st, err := os.Stat(path); err == nil {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", key, st.Size(), st.ModTime().UnixNano()))
		cache = filepath.Join(os.TempDir(), "tfolab-versions", hex.EncodeToString(sum[:8]))
		if b, err := os.ReadFile(cache); err == nil {
			versions.Store(key, string(b))
			return string(b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	out, _ := cmd.CombinedOutput()
	cost.Record(ctx, path, cmd.ProcessState)
	v := ""
	if m := re.FindSubmatch(out); m != nil {
		v = string(m[1])
	}
	if v != "" || ctx.Err() == nil {
		versions.Store(key, v)
	}
	if v != "" && cache != "" && os.MkdirAll(filepath.Dir(cache), 0o755) == nil {
		// Written whole, then renamed: a parallel reader never sees half.
		tmp := fmt.Sprintf("%s.%d", cache, os.Getpid())
		if os.WriteFile(tmp, []byte(v), 0o644) == nil {
			_ = os.Rename(tmp, cache)
		}
	}
	return v
}

var (
	reNginxVersion   = regexp.MustCompile(`nginx/(\S+)`)
	reHAProxyVersion = regexp.MustCompile(`HAProxy version (\S+)`)
	reCurlVersion    = regexp.MustCompile(`^curl (\S+)`)
	rePythonVersion  = regexp.MustCompile(`Python (\S+)`)
)

// startProgram starts a peer process on node, registers its teardown on the
// lab right away, and fails with the install hint when the program is
// missing.
func startProgram(ctx context.Context, site Site, node string, spec proc.Spec, progs ...Program) (*proc.Process, error) {
	if err := missingError(progs...); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	p, err := proc.Start(ctx, site.Topo.Namespace(node).Runner(), spec)
	if err != nil {
		return nil, err
	}
	site.Lab.Defer(fmt.Sprintf("%s (pid %d) on %s", spec.Name, p.Pid(), node), p.Stop)
	return p, nil
}

// Nginx is nginx serving Body at PeerPath with `listen ADDR:PORT
// fastopen=N`, one worker, in the foreground, its error log on stderr and
// its access log in its temp dir.
type Nginx struct {
	// FastOpen is the listen directive's fastopen=N (the TCP_FASTOPEN
	// queue); 0 leaves it out: nginx then does no TFO (self-check).
	FastOpen int
	// Body is served at PeerPath; nil is DefaultBody.
	Body []byte
}

func (Nginx) Kind() string { return "nginx" }

func (n Nginx) Validate() error { return validQueue("nginx", n.FastOpen) }

func (Nginx) Requires() []Program { return []Program{ProgNginx} }

// Version is what `nginx -v` says ("1.22.1").
func (Nginx) Version() string { return programVersion(ProgNginx.Path, reNginxVersion, "-v") }

func (n Nginx) body() []byte {
	if n.Body == nil {
		return DefaultBody()
	}
	return n.Body
}

// nginxLog is the access log format: what Accepted reads back.
const nginxLog = `tfolab $remote_addr $remote_port $msec "$request"`

func (n Nginx) config(addr netip.AddrPort) string {
	listen := "listen " + addr.String()
	if n.FastOpen > 0 {
		listen += fmt.Sprintf(" fastopen=%d", n.FastOpen)
	}
	// Every path nginx would write to is in the temp dir: nothing of the
	// host's /var/lib/nginx or /var/log/nginx is touched.
	return fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
  log_format tfolab '%s';
  access_log {dir}/access.log tfolab;
  client_body_temp_path {dir}/tmp/body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  default_type application/octet-stream;
  keepalive_timeout 0;
  server {
    %s;
    root {dir}/www;
  }
}
`, nginxLog, listen)
}

func (n Nginx) Start(ctx context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	p, err := startProgram(ctx, site, node, proc.Spec{
		Name: "nginx",
		Path: ProgNginx.Path,
		// -e stderr: nginx opens its compiled-in error log before it reads
		// the config otherwise.
		Args:       []string{"-e", "stderr", "-p", "{dir}/", "-c", "{dir}/nginx.conf"},
		Files:      map[string][]byte{"nginx.conf": []byte(n.config(addr)), "www" + PeerPath: n.body(), "tmp/.keep": nil},
		Ready:      proc.ListeningOn(addr),
		StopSignal: syscall.SIGQUIT, // graceful: workers finish what they serve
	}, ProgNginx)
	if err != nil {
		return nil, err
	}
	return &logHandle{read: func() []byte {
		b, _ := os.ReadFile(filepath.Join(p.Dir(), "access.log"))
		return b
	}}, nil
}

// logHandle turns a peer's access log into Accepted records: the remote
// address and the request line. A program cannot tell whether the SYN's
// data was accepted, so SynData stays false: the captures and the
// TCPFastOpenPassive counter say it instead.
type logHandle struct{ read func() []byte }

// reAccessLine matches nginxLog and haproxyLog lines: remote address, port,
// a time in seconds, and the quoted request line.
var reAccessLine = regexp.MustCompile(`tfolab (\S+) (\d+) (\d+)(?:\.(\d+))? "([^"]*)"`)

func (h *logHandle) Accepted() []observation.Accepted {
	var out []observation.Accepted
	sc := bufio.NewScanner(bytes.NewReader(h.read()))
	for sc.Scan() {
		a, ok := parseAccessLine(sc.Text())
		if ok {
			out = append(out, a)
		}
	}
	return out
}

func parseAccessLine(line string) (observation.Accepted, bool) {
	m := reAccessLine.FindStringSubmatch(line)
	if m == nil {
		return observation.Accepted{}, false
	}
	addr, err := netip.ParseAddr(m[1])
	port, perr := strconv.ParseUint(m[2], 10, 16)
	if err != nil || perr != nil {
		return observation.Accepted{}, false
	}
	sec, _ := strconv.ParseInt(m[3], 10, 64)
	var nsec int64
	if frac := m[4]; frac != "" {
		f, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
		nsec = f
	}
	return observation.Accepted{
		Remote:  netip.AddrPortFrom(addr.Unmap(), uint16(port)),
		Request: []byte(m[5]),
		Time:    time.Unix(sec, nsec),
	}, true
}

// HAProxy is HAProxy 2.x in HTTP mode, in the foreground (-db), logging to
// stderr. Without Backend it is a TFO server (`bind ADDR:PORT tfo`) that
// answers every request with Body (http-request return). With Backend it
// is a proxy whose frontend (no tfo) forwards to a lab service with
// `server ... tfo`, the configuration a TFO rollout behind HAProxy uses.
//
// It is kept away from any resolver outside the lab: no resolvers section,
// numeric addresses only, `default-server init-addr none`; the scenarios
// check with a capture that it sends nothing else (NoStrayTraffic).
type HAProxy struct {
	// Body is served without a Backend; nil is DefaultBody.
	Body []byte
	// NoTFO leaves tfo off the server's bind line (self-check).
	NoTFO bool
	// Backend makes it a proxy to that lab service.
	Backend *HAProxyBackend
}

// HAProxyBackend is the lab service a proxying HAProxy forwards to.
type HAProxyBackend struct {
	// Node is the backend service's node ("" is topology.Server) and Port
	// its port (0 is ServicePort); its address is the node's service
	// address in the scenario's family.
	Node string
	Port uint16
	// Resolver, when set, makes HAProxy resolve the backend by name
	// through this nameserver, which must be a lab address: the
	// self-check that NoStrayTraffic sees DNS leave the proxy.
	Resolver netip.AddrPort
}

func (HAProxy) Kind() string { return "haproxy" }

func (h HAProxy) Validate() error {
	if b := h.Backend; b != nil && b.Resolver.IsValid() && !labPlan4.Contains(b.Resolver.Addr()) && !labPlan6.Contains(b.Resolver.Addr()) {
		return fmt.Errorf("haproxy: resolver %s is outside the lab's address plan (%s, %s)", b.Resolver, labPlan4, labPlan6)
	}
	return nil
}

// The lab's address plan (package topology): nothing a peer is pointed at
// may lie outside it.
var (
	labPlan4 = netip.MustParsePrefix("10.34.0.0/16")
	labPlan6 = netip.MustParsePrefix("fd34::/16")
)

func (HAProxy) Requires() []Program { return []Program{ProgHAProxy} }

// Version is what `haproxy -v` says ("2.6.12-1+deb12u4").
func (HAProxy) Version() string { return programVersion(ProgHAProxy.Path, reHAProxyVersion, "-v") }

// haproxyLog is the log-format: what Accepted reads back (%Ts.%ms is the
// accept date).
const haproxyLog = `tfolab %ci %cp %Ts.%ms "%r" %ST %B %bi:%bp`

func (h HAProxy) config(addr, backend netip.AddrPort) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
  log stderr format raw local0 info
  nbthread 1
defaults
  mode http
  log global
  log-format '%s'
  timeout connect 5s
  timeout client 5s
  timeout server 5s
  default-server init-addr none
`, haproxyLog)
	if h.Backend == nil {
		tfo := " tfo"
		if h.NoTFO {
			tfo = ""
		}
		fmt.Fprintf(&b, `frontend fe
  bind %s%s
  http-request return status 200 content-type application/octet-stream file {dir}/body.bin
`, addr, tfo)
		return b.String()
	}
	// Backend TFO needs these retry-on conditions (HAProxy's manual for
	// "tfo"); reuse is off so that every request makes its own backend
	// connection, each one a TFO attempt.
	server := backend.String()
	resolvers := ""
	if r := h.Backend.Resolver; r.IsValid() {
		fmt.Fprintf(&b, "resolvers lab\n  nameserver ns1 %s\n", r)
		server, resolvers = fmt.Sprintf("backend.tfolab:%d", backend.Port()), " resolvers lab"
	}
	fmt.Fprintf(&b, `frontend fe
  bind %s
  default_backend be
backend be
  retries 3
  retry-on conn-failure empty-response response-timeout
  http-reuse never
  server s1 %s tfo%s
`, addr, server, resolvers)
	return b.String()
}

func (h HAProxy) Start(ctx context.Context, site Site, node string, addr netip.AddrPort) (ServiceHandle, error) {
	var backend netip.AddrPort
	if be := h.Backend; be != nil {
		bn, port := be.Node, be.Port
		if bn == "" {
			bn = topology.Server
		}
		if port == 0 {
			port = ServicePort
		}
		a, err := site.Topo.ServiceAddr(bn, site.Family)
		if err != nil {
			return nil, fmt.Errorf("haproxy backend: %w", err)
		}
		backend = netip.AddrPortFrom(a, port)
	}
	body := h.Body
	if body == nil {
		body = DefaultBody()
	}
	p, err := startProgram(ctx, site, node, proc.Spec{
		Name:  "haproxy",
		Path:  ProgHAProxy.Path,
		Args:  []string{"-db", "-f", "{dir}/haproxy.cfg"},
		Files: map[string][]byte{"haproxy.cfg": []byte(h.config(addr, backend)), "body.bin": body},
		Ready: proc.ListeningOn(addr),
	}, ProgHAProxy)
	if err != nil {
		return nil, err
	}
	return &logHandle{read: p.Output}, nil
}
