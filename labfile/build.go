package labfile

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/tfolab/tfolab/lab/rules"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/profile"
	"github.com/tfolab/tfolab/scenarios"
	"github.com/tfolab/tfolab/topology"
)

// DefaultQueue is the TFO queue of a listener or a built-in nginx whose
// file sets none.
const DefaultQueue = 16

// builder turns a decoded File into a Scenario, with every error at its
// line.
type builder struct {
	file, dir string
	tree      *ast.File
	nodes     map[string]bool
	cat       map[string]scenarios.Scenario
}

// errAt is an *Error at the value path names.
func (b *builder) errAt(path []pathElem, format string, args ...any) error {
	return &Error{File: b.file, Line: lineOf(b.tree, path...), Msg: oneLine(fmt.Sprintf(format, args...))}
}

// at builds a path.
func at(p ...pathElem) []pathElem { return p }

// readFile reads a file the scenario file names, relative to its folder.
func (b *builder) readFile(path []pathElem, name string) ([]byte, string, error) {
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(b.dir, p)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, p, b.errAt(path, "%s: %v", name, unwrapPathErr(err))
	}
	return data, p, nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// node checks that a node exists.
func (b *builder) node(path []pathElem, what, name string) error {
	if !b.nodes[name] {
		return b.errAt(path, "%s: node %q does not exist (nodes: %s)", what, name, strings.Join(slices.Sorted(mapKeys(b.nodes)), ", "))
	}
	return nil
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (b *builder) build(f File) (scenarios.Scenario, error) {
	s := scenarios.Scenario{
		Name:        cmp.Or(f.Name, strings.TrimSuffix(filepath.Base(b.file), filepath.Ext(b.file))),
		Description: cmp.Or(f.Description, "scenario file "+filepath.Base(b.file)),
		Labels:      f.Labels,
	}
	switch strings.ToLower(f.Family) {
	case "", "ipv4", "4":
		s.Family = topology.IPv4
	case "ipv6", "6":
		s.Family = topology.IPv6
	default:
		return s, b.errAt(at("family"), "family %q: want ipv4 or ipv6", f.Family)
	}
	var err error
	if s.Topology, err = b.topology(f); err != nil {
		return s, err
	}
	b.nodes = map[string]bool{}
	for _, n := range s.Topology.Nodes {
		b.nodes[n.Name] = true
	}
	if s.Sysctls, err = b.sysctls(f); err != nil {
		return s, err
	}
	if len(f.Services) == 0 {
		return s, b.errAt(nil, "no services: a scenario needs at least one")
	}
	for i, fs := range f.Services {
		svc, err := b.service(i, fs, s.Family)
		if err != nil {
			return s, err
		}
		s.Services = append(s.Services, svc)
	}
	if len(f.Clients) == 0 {
		return s, b.errAt(nil, "no clients: a scenario needs at least one")
	}
	for i, fc := range f.Clients {
		c, err := b.client(i, fc, f, s.Services)
		if err != nil {
			return s, err
		}
		s.Clients = append(s.Clients, c)
	}
	moments := map[string]bool{}
	if len(f.Timeline) > 0 {
		sc, timeout, err := b.timeline(f.Timeline, s, moments)
		if err != nil {
			return s, err
		}
		if sc.Call.Fn != "" {
			s.Script(sc)
		} else {
			s.Timeline = sc.Run
		}
		s.Timeout = timeout
	}
	s.KernelNeeds = f.KernelNeeds
	if f.Timeout != 0 {
		if s.Timeline == nil {
			return s, b.errAt(at("timeout"), "timeout bounds a timeline; the sequential one is bounded by its connections")
		}
		s.Timeout = f.Timeout
	}
	for i, fm := range f.Middleboxes {
		m, err := b.middlebox(i, fm, f, s, moments)
		if err != nil {
			return s, err
		}
		s.Middleboxes = append(s.Middleboxes, m)
	}
	if s.Expect, err = b.expectations(f.Expect, s); err != nil {
		return s, err
	}
	if err := s.Validate(); err != nil {
		return s, b.errAt(nil, "%v", err)
	}
	return s, nil
}

var rePool = regexp.MustCompile(`^pool\s*(\d+)$`)

func (b *builder) topology(f File) (topology.Spec, error) {
	if len(f.Nodes) == 0 {
		if len(f.Links) > 0 {
			return topology.Spec{}, b.errAt(at("links"), "links without nodes: declare the nodes too, or use a built-in topology")
		}
		t := strings.ToLower(strings.TrimSpace(f.Topology))
		switch {
		case t == "" || t == "routed":
			return topology.Routed(), nil
		case t == "direct":
			return topology.Direct(), nil
		case rePool.MatchString(t):
			n, _ := strconv.Atoi(rePool.FindStringSubmatch(t)[1])
			if n < 1 || n > 16 {
				return topology.Spec{}, b.errAt(at("topology"), "pool of %d servers: want 1 to 16", n)
			}
			return topology.Pool(n), nil
		}
		return topology.Spec{}, b.errAt(at("topology"), "topology %q: want direct, routed or \"pool N\" (or nodes and links of your own)", f.Topology)
	}
	// With nodes of one's own, topology is only the topology's name.
	spec := topology.Spec{Name: cmp.Or(f.Topology, f.Name, "custom")}
	names := map[string]bool{}
	for i, n := range f.Nodes {
		if n.Name == "" {
			return spec, b.errAt(at("nodes", i), "node without a name")
		}
		if names[n.Name] {
			return spec, b.errAt(at("nodes", i, "name"), "node %q twice", n.Name)
		}
		names[n.Name] = true
	}
	b.nodes = names
	for i, n := range f.Nodes {
		node := topology.Node{Name: n.Name, Router: n.Router, Sysctls: n.Sysctls}
		for j, a := range n.Loopback {
			addr, err := netip.ParseAddr(a)
			if err != nil {
				return spec, b.errAt(at("nodes", i, "loopback", j), "loopback address %q: %v", a, err)
			}
			node.Loopback = append(node.Loopback, addr)
		}
		for j, r := range n.Routes {
			dst, err := netip.ParsePrefix(r.Dst)
			if err != nil {
				if a, aerr := netip.ParseAddr(r.Dst); aerr == nil {
					dst, err = netip.PrefixFrom(a, a.BitLen()), nil
				}
			}
			if err != nil {
				return spec, b.errAt(at("nodes", i, "routes", j, "dst"), "route destination %q: want an address or a prefix", r.Dst)
			}
			for k, v := range r.Via {
				if err := b.node(at("nodes", i, "routes", j, "via", k), "route via", v); err != nil {
					return spec, err
				}
			}
			node.Routes = append(node.Routes, topology.Route{Dst: dst, Via: r.Via, FastOpenNoCookie: r.FastOpenNoCookie})
		}
		spec.Nodes = append(spec.Nodes, node)
	}
	for i, l := range f.Links {
		if len(l) != 2 {
			return spec, b.errAt(at("links", i), "a link joins two nodes: [a, b]")
		}
		for j, n := range l {
			if err := b.node(at("links", i, j), "link", n); err != nil {
				return spec, err
			}
		}
		spec.Links = append(spec.Links, topology.Link{A: l[0], B: l[1]})
	}
	if err := spec.Validate(); err != nil {
		return spec, b.errAt(at("nodes"), "topology: %v", err)
	}
	return spec, nil
}

func (b *builder) sysctls(f File) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	set := func(node, k, v string) {
		if out[node] == nil {
			out[node] = map[string]string{}
		}
		out[node][k] = v
	}
	for _, node := range slices.Sorted(mapKeysS(f.SysctlFiles)) {
		if err := b.node(at("sysctl-files", node), "sysctl-files", node); err != nil {
			return nil, err
		}
		var srcs []profile.Source
		for i, name := range f.SysctlFiles[node] {
			data, p, err := b.readFile(at("sysctl-files", node, i), name)
			if err != nil {
				return nil, err
			}
			srcs = append(srcs, profile.NewSource(p, data))
		}
		p := profile.FromSources(srcs...)
		if err := p.CheckStatic(); err != nil {
			return nil, b.errAt(at("sysctl-files", node), "%v", err)
		}
		for _, st := range p.Settings {
			if st.Value == nil {
				continue
			}
			if st.Glob() {
				return nil, b.errAt(at("sysctl-files", node), "%s: a glob key (%s) names no one sysctl of a lab namespace; write the keys out", st.Where(), profile.Dotted(st.Key))
			}
			set(node, profile.Dotted(st.Key), *st.Value)
		}
	}
	for _, node := range slices.Sorted(mapKeysS(f.Sysctls)) {
		if err := b.node(at("sysctls", node), "sysctls", node); err != nil {
			return nil, err
		}
		for k, v := range f.Sysctls[node] {
			if !strings.HasPrefix(k, "net.") {
				return nil, b.errAt(at("sysctls", node, k), "sysctl %s: only net.* keys are per network namespace", k)
			}
			set(node, k, v)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func mapKeysS[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// serviceFields are the keys each service kind takes beyond name, node,
// addr, port and kind.
var serviceFields = map[string][]string{
	"listener":    {"queue", "key", "reply", "reply-base64", "no-cookie"},
	"nginx":       {"queue", "config", "body", "body-base64"},
	"haproxy":     {"config", "tfo", "backend", "body", "body-base64"},
	"scripted":    {"greeting", "cookie"},
	"partial-ack": {"ack-bytes", "cookie", "any-cookie-length"},
	// Its application is the timeline: a call of a catalogue timeline
	// that drives it (packetdrill's).
	"scripted-listener": {"queue", "max-seg"},
}

func setServiceFields(s Service) []string {
	var out []string
	add := func(cond bool, k string) {
		if cond {
			out = append(out, k)
		}
	}
	add(s.Queue != nil, "queue")
	add(s.NoCookie, "no-cookie")
	add(s.Key != "", "key")
	add(s.Reply != nil, "reply")
	add(s.ReplyBase64 != "", "reply-base64")
	add(s.Body != "", "body")
	add(s.BodyBase64 != "", "body-base64")
	add(s.Config != "", "config")
	add(s.TFO != nil, "tfo")
	add(s.Backend != nil, "backend")
	add(s.Greeting != "", "greeting")
	add(s.Cookie != "", "cookie")
	add(s.AckBytes != nil, "ack-bytes")
	add(s.AnyCookieLength, "any-cookie-length")
	add(s.MaxSeg != 0, "max-seg")
	return out
}

func (b *builder) service(i int, fs Service, fam topology.Family) (scenarios.Service, error) {
	p := func(k ...pathElem) []pathElem { return append(at("services", i), k...) }
	svc := scenarios.Service{Name: fs.Name, Node: fs.Node, Port: fs.Port}
	if svc.Node == "" && defaultServiceNode(b.nodes) != topology.Server {
		svc.Node = defaultServiceNode(b.nodes)
	}
	if err := b.node(p("node"), "service "+cmp.Or(fs.Name, "service"), svc.NodeName()); err != nil {
		return svc, err
	}
	if fs.Addr != "" {
		a, err := netip.ParseAddr(fs.Addr)
		if err != nil {
			return svc, b.errAt(p("addr"), "address %q: %v", fs.Addr, err)
		}
		if a.Is4() != (fam == topology.IPv4) {
			return svc, b.errAt(p("addr"), "address %s is not %s, the scenario's family", a, fam)
		}
		svc.Addr = a
	}
	kind := cmp.Or(fs.Kind, "listener")
	allowed, ok := serviceFields[kind]
	if !ok {
		return svc, b.errAt(p("kind"), "service kind %q: want listener, nginx, haproxy, scripted, partial-ack or scripted-listener", fs.Kind)
	}
	for _, k := range setServiceFields(fs) {
		if !slices.Contains(allowed, k) {
			return svc, b.errAt(p(k), "%q does not apply to a %s service (it takes %s)", k, kind, strings.Join(allowed, ", "))
		}
	}
	queue := DefaultQueue
	if fs.Queue != nil {
		queue = *fs.Queue
	}
	switch kind {
	case "listener":
		if fs.NoCookie {
			if fs.Key != "" || fs.Reply != nil || fs.ReplyBase64 != "" {
				return svc, b.errAt(p("no-cookie"), "a no-cookie listener takes only a queue")
			}
			svc.Kind = scenarios.NoCookieListener{Queue: queue}
			break
		}
		l := scenarios.Listener{Queue: queue}
		if fs.Key != "" {
			k, err := tfo.ParseKey(fs.Key)
			if err != nil {
				return svc, b.errAt(p("key"), "%v", err)
			}
			l.Key = &k
		}
		if fs.Reply != nil {
			if fs.ReplyBase64 != "" {
				return svc, b.errAt(p("reply"), "reply and reply-base64: choose one")
			}
			l.Reply = []byte(*fs.Reply)
		} else if fs.ReplyBase64 != "" {
			reply, err := b.bytes(p, "reply", "", fs.ReplyBase64)
			if err != nil {
				return svc, err
			}
			l.Reply = reply
		}
		svc.Kind = l
	case "nginx":
		body, err := b.bytes(p, "body", fs.Body, fs.BodyBase64)
		if err != nil {
			return svc, err
		}
		if fs.Config == "" {
			svc.Kind = scenarios.Nginx{FastOpen: queue, Body: body}
			break
		}
		if body != nil {
			return svc, b.errAt(p("body"), "a body goes with the lab's nginx configuration, not with your own")
		}
		data, path, err := b.readConfig(p("config"), fs.Config)
		if err != nil {
			return svc, err
		}
		svc.Kind = scenarios.NginxConfig{Path: path, Config: data}
	case "haproxy":
		if fs.Config != "" {
			if fs.TFO != nil || fs.Backend != nil {
				return svc, b.errAt(p("config"), "a haproxy service takes its own config or tfo/backend, not both")
			}
			data, path, err := b.readConfig(p("config"), fs.Config)
			if err != nil {
				return svc, err
			}
			svc.Kind = scenarios.HAProxyConfig{Path: path, Config: data}
			break
		}
		body, err := b.bytes(p, "body", fs.Body, fs.BodyBase64)
		if err != nil {
			return svc, err
		}
		h := scenarios.HAProxy{NoTFO: fs.TFO != nil && !*fs.TFO, Body: body}
		if be := fs.Backend; be != nil {
			if be.Node != "" {
				if err := b.node(p("backend", "node"), "haproxy backend", be.Node); err != nil {
					return svc, err
				}
			}
			h.Backend = &scenarios.HAProxyBackend{Node: be.Node, Port: be.Port}
			if be.Resolver != "" {
				r, err := netip.ParseAddrPort(be.Resolver)
				if err != nil {
					return svc, b.errAt(p("backend", "resolver"), "resolver %q: want address:port", be.Resolver)
				}
				h.Backend.Resolver = r
			}
		}
		svc.Kind = h
	case "scripted":
		cookie, err := b.hexCookie(p("cookie"), fs.Cookie)
		if err != nil {
			return svc, err
		}
		svc.Kind = scenarios.ScriptedPeer{Greeting: []byte(fs.Greeting), Cookie: cookie}
	case "scripted-listener":
		q := 0
		if fs.Queue != nil {
			q = *fs.Queue
		}
		svc.Kind = scenarios.NewScriptedListener(q, fs.MaxSeg)
	case "partial-ack":
		pp := scenarios.PartialAckPeer{AnyCookieLength: fs.AnyCookieLength}
		if fs.AckBytes != nil {
			pp.AckBytes = *fs.AckBytes
		}
		cookie, err := b.hexCookie(p("cookie"), fs.Cookie)
		if err != nil {
			return svc, err
		}
		pp.Cookie = cookie
		svc.Kind = pp
	}
	if err := svc.Kind.Validate(); err != nil {
		return svc, b.errAt(p("kind"), "%v", err)
	}
	return svc, nil
}

// hexCookie is a cookie written in hex digits; none (nil) for "".
func (b *builder) hexCookie(path []pathElem, cookie string) ([]byte, error) {
	if cookie == "" {
		return nil, nil
	}
	c, err := hex.DecodeString(cookie)
	if err != nil {
		return nil, b.errAt(path, "cookie %q: want hex digits", cookie)
	}
	return c, nil
}

// readConfig reads a server's configuration file (see readFile) and
// checks the nodes its {addr:NODE} names.
func (b *builder) readConfig(path []pathElem, name string) ([]byte, string, error) {
	data, p, err := b.readFile(path, name)
	if err != nil {
		return nil, "", err
	}
	for _, n := range scenarios.ConfigNodes(data) {
		if err := b.node(path, "{addr:"+n+"} in the configuration", n); err != nil {
			return nil, "", err
		}
	}
	return data, p, nil
}

// defaultServiceNode is "server" when the topology has one, else the
// first pool server.
func defaultServiceNode(nodes map[string]bool) string {
	if !nodes[topology.Server] && nodes["server1"] {
		return "server1"
	}
	return topology.Server
}

var clientFields = map[string][]string{
	"lab":    {"mode", "no-cookie"},
	"curl":   {"plain"},
	"python": {"script"},
}

func (b *builder) client(i int, fc Client, f File, services []scenarios.Service) (scenarios.Client, error) {
	p := func(k ...pathElem) []pathElem { return append(at("clients", i), k...) }
	c := scenarios.Client{Name: fc.Name, Node: fc.Node, Service: fc.Service, Connections: fc.Count, ConnTimeout: fc.Timeout}
	if err := b.node(p("node"), "client "+cmp.Or(fc.Name, "client"), c.NodeName()); err != nil {
		return c, err
	}
	if fc.Service != "" && !slices.ContainsFunc(services, func(s scenarios.Service) bool { return cmp.Or(s.Name, "service") == fc.Service }) {
		return c, b.errAt(p("service"), "service %q does not exist", fc.Service)
	}
	if fc.Payload != "" {
		c.Payload = []byte(fc.Payload)
	}
	if c.Connections == 0 && len(f.Timeline) == 0 {
		c.Connections = 1
	}
	if c.Connections < 0 {
		return c, b.errAt(p("count"), "count %d: want 0 or more", c.Connections)
	}
	kind := cmp.Or(fc.Kind, "lab")
	allowed, ok := clientFields[kind]
	if !ok {
		return c, b.errAt(p("kind"), "client kind %q: want lab, curl or python", fc.Kind)
	}
	set := map[string]bool{"mode": fc.Mode != "", "plain": fc.Plain, "script": fc.Script != "", "no-cookie": fc.NoCookie}
	for _, k := range []string{"mode", "plain", "script", "no-cookie"} {
		if set[k] && !slices.Contains(allowed, k) {
			return c, b.errAt(p(k), "%q does not apply to a %s client", k, kind)
		}
	}
	switch kind {
	case "lab":
		m, ok := map[string]tfo.Mode{"": tfo.ModeSendto, "sendto": tfo.ModeSendto, "connect": tfo.ModeConnect, "plain": tfo.ModePlain}[fc.Mode]
		if !ok {
			return c, b.errAt(p("mode"), "mode %q: want sendto, connect or plain", fc.Mode)
		}
		c.Kind = scenarios.LabClient{Mode: m}
		if fc.NoCookie {
			c.Kind = scenarios.NoCookieLabClient{Mode: m}
		}
	case "curl":
		c.Kind = scenarios.Curl{Plain: fc.Plain}
	case "python":
		pc := scenarios.PythonClient{}
		if fc.Script != "" {
			_, path, err := b.readFile(p("script"), fc.Script)
			if err != nil {
				return c, err
			}
			pc.Script = path
		}
		c.Kind = pc
	}
	return c, nil
}

var reAfter = regexp.MustCompile(`^after (\d+) connections?$`)

func (b *builder) middlebox(i int, fm Middlebox, f File, s scenarios.Scenario, moments map[string]bool) (scenarios.MiddleboxSpec, error) {
	p := func(k ...pathElem) []pathElem { return append(at("middleboxes", i), k...) }
	var m scenarios.MiddleboxSpec
	var kinds []string
	for k, set := range map[string]bool{"behaviour": fm.Behaviour != "", "iptables": fm.Iptables != "", "nft": fm.Nft != "", "delay": fm.Delay != 0, "call": fm.Call != nil} {
		if set {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) != 1 {
		return m, b.errAt(p(), "a middlebox is exactly one of behaviour, iptables, nft, delay or call (got %d)", len(kinds))
	}
	switch {
	case fm.Call != nil:
		box, err := callMiddlebox(fm.Call)
		if err != nil {
			return m, b.errAt(p("call"), "call: %v", err)
		}
		m.Box = box
	case fm.Behaviour != "":
		box, ok := scenarios.BoxByName(fm.Behaviour)
		if !ok {
			var names []string
			for _, c := range append(middlebox.Catalogue(), scenarios.Boxes()...) {
				names = append(names, c.Name)
			}
			return m, b.errAt(p("behaviour"), "no behaviour %q in the catalogue (%s)", fm.Behaviour, strings.Join(names, ", "))
		}
		m.Box = box
	case fm.Iptables != "":
		data, path, err := b.readFile(p("iptables"), fm.Iptables)
		if err != nil {
			return m, err
		}
		rs, err := rules.ParseRuleset(bytes.NewReader(data), s.Family)
		if err != nil {
			return m, b.errAt(p("iptables"), "%s: %v", fm.Iptables, err)
		}
		m.Box = middlebox.CustomRuleset(rs, filepath.Base(path))
	case fm.Nft != "":
		data, path, err := b.readFile(p("nft"), fm.Nft)
		if err != nil {
			return m, err
		}
		rs, err := rules.ParseNFT(bytes.NewReader(data))
		if err != nil {
			return m, b.errAt(p("nft"), "%s: %v", fm.Nft, err)
		}
		m.Box = middlebox.CustomNFT(rs, filepath.Base(path))
	default:
		if fm.Delay < 0 {
			return m, b.errAt(p("delay"), "delay %v: want a positive duration", fm.Delay)
		}
		m.Box = middlebox.Delay(fm.Delay)
	}
	switch fm.Placement {
	case "", "router":
		m.Placement = middlebox.Router
	case "client-side", "client":
		m.Placement = middlebox.ClientSide
	case "server-side", "server":
		m.Placement = middlebox.ServerSide
	default:
		return m, b.errAt(p("placement"), "placement %q: want router, client-side or server-side", fm.Placement)
	}
	m.Node, m.Port = fm.Node, fm.Port
	node := cmp.Or(fm.Node, m.Placement.DefaultNode())
	if err := b.node(p("node"), "middlebox "+m.Box.Name, node); err != nil {
		if fm.Node == "" {
			return m, b.errAt(p(), "middlebox %s: its placement's default node %q does not exist: name one with node:", m.Box.Name, node)
		}
		return m, err
	}
	switch at := strings.TrimSpace(fm.At); {
	case at == "" || at == "start":
		m.When = scenarios.AtStart
	case reAfter.MatchString(at):
		n, _ := strconv.Atoi(reAfter.FindStringSubmatch(at)[1])
		if s.Timeline != nil && !hasCall(f.Timeline) {
			return m, b.errAt(p("at"), "%q is a moment of the sequential timeline; this file has a timeline: name one of its moments", at)
		}
		m.When = scenarios.AfterConnections(n)
	default:
		if s.Timeline == nil || (!hasCall(f.Timeline) && !moments[at]) {
			return m, b.errAt(p("at"), "moment %q: no timeline step names it (want start, \"after N connections\", or a timeline moment)", at)
		}
		m.When = at
	}
	if err := m.Box.Validate(s.Family, middlebox.Params{ServicePort: cmp.Or(m.Port, cmp.Or(s.Services[0].Port, scenarios.ServicePort)), Placement: m.Placement}); err != nil {
		return m, b.errAt(p(kinds[0]), "%v", err)
	}
	return m, nil
}

// durationOr is d, or def when d is zero.
func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// bytes is a text field or its base64 twin; nil when neither is set.
func (b *builder) bytes(p func(k ...pathElem) []pathElem, key, text, b64 string) ([]byte, error) {
	switch {
	case text != "" && b64 != "":
		return nil, b.errAt(p(key), "%s and %s-base64: choose one", key, key)
	case b64 != "":
		data, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, b.errAt(p(key+"-base64"), "%s-base64: %v", key, err)
		}
		return data, nil
	case text != "":
		return []byte(text), nil
	}
	return nil, nil
}

// catalogue finds the catalogue scenario (or "self-check: BREAKAGE")
// of that name, building the catalogue once.
func (b *builder) catalogue(path []pathElem, name string) (scenarios.Scenario, error) {
	if b.cat == nil {
		b.cat = map[string]scenarios.Scenario{}
		for _, s := range scenarios.Catalogue() {
			b.cat[s.Name] = s
		}
		for _, m := range scenarios.Mutants() {
			b.cat[SelfCheckPrefix+m.Breakage] = m.Scenario
		}
	}
	s, ok := b.cat[name]
	if !ok {
		return s, b.errAt(path, "no scenario %q in the catalogue (`tfolab list` shows it)", name)
	}
	return s, nil
}

// SelfCheckPrefix names a self-check (tfolab export, Lookup): "self-check: "
// and its breakage.
const SelfCheckPrefix = "self-check: "

// Lookup finds a catalogue scenario by name, or a self-check by
// SelfCheckPrefix and its breakage, freshly built.
func Lookup(name string) (scenarios.Scenario, bool) {
	b := builder{}
	s, err := b.catalogue(nil, name)
	return s, err == nil
}
