package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/tcpmetrics"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/topology"
)

// ReportedSysctls are the per-node sysctls an observation records: the
// ones TFO behaviour and its timing depend on.
var ReportedSysctls = []string{
	"net.ipv4.tcp_fastopen",
	"net.ipv4.tcp_fastopen_blackhole_timeout_sec",
	"net.ipv4.tcp_syn_retries",
	"net.ipv4.tcp_synack_retries",
	"net.ipv4.tcp_syn_linear_timeouts",
	"net.ipv4.tcp_timestamps",
}

// Running is a scenario's lab once Run has built it: what a front end that
// keeps the lab alive (tfolab run --keep) tells its user about.
type Running struct {
	Topo     *topology.Topology
	Services map[string]netip.AddrPort
}

// Run builds the scenario's topology inside l, starts its services, runs
// its timeline and returns the observation. Everything it creates is on
// l's cleanup stack; the caller closes l (services keep answering until
// then). Run does not judge: that is what Expect is for.
func Run(ctx context.Context, l *lab.Lab, s Scenario) (*observation.Observation, error) {
	obs, _, err := RunKeep(ctx, l, s)
	return obs, err
}

// RunKeep is Run that also returns the running lab.
func RunKeep(ctx context.Context, l *lab.Lab, s Scenario) (*observation.Observation, *Running, error) {
	if err := s.Validate(); err != nil {
		return nil, nil, err
	}
	r, err := run(ctx, l, s)
	if err != nil {
		err = fmt.Errorf("scenario %q: %w", s.Name, err)
	}
	return r.obs, r.running, err
}

type runState struct {
	obs     *observation.Observation
	running *Running
}

func run(ctx context.Context, l *lab.Lab, s Scenario) (runState, error) {
	var st runState
	topo, err := topology.Build(ctx, l, s.Topology)
	if err != nil {
		return st, err
	}
	for _, node := range sortedKeys(s.Sysctls) {
		if err := topo.Namespace(node).SetSysctls(s.Sysctls[node]); err != nil {
			return st, err
		}
	}
	site := Site{Lab: l, Topo: topo, Family: s.Family}
	obs := observation.New(s.Name, s.Family)
	obs.Host = hostInfo()
	st.obs = obs

	// Middleboxes: each installed at its moment (Validate built or checked
	// them already); installed ones are read back for their hit counts.
	type placed struct {
		spec      MiddleboxSpec
		installed middlebox.Installed
	}
	var boxes []*placed
	for _, m := range s.Middleboxes {
		boxes = append(boxes, &placed{spec: m})
	}
	var installMu sync.Mutex
	install := func(moment string) error {
		installMu.Lock()
		defer installMu.Unlock()
		for _, b := range boxes {
			if b.installed != nil || b.spec.When != moment {
				continue
			}
			in, err := b.spec.Box.Apply(l, topo.Namespace(b.spec.node()), s.Family, s.middleboxParams(b.spec))
			if err != nil {
				return fmt.Errorf("middlebox %s on %s: %w", b.spec.Box.Name, b.spec.node(), err)
			}
			b.installed = in
		}
		return nil
	}
	if err := install(AtStart); err != nil {
		return st, err
	}

	services := map[string]netip.AddrPort{}
	handles := map[string]ServiceHandle{}
	for _, svc := range s.Services {
		addr := svc.Addr
		if !addr.IsValid() {
			if addr, err = topo.ServiceAddr(svc.node(), s.Family); err != nil {
				return st, err
			}
		}
		ap := netip.AddrPortFrom(addr, svc.port())
		h, err := svc.Kind.Start(ctx, site, svc.node(), ap)
		if err != nil {
			return st, fmt.Errorf("start service %s (%s) on %s: %w", svc.name(), svc.Kind.Kind(), svc.node(), err)
		}
		services[svc.name()], handles[svc.name()] = ap, h
		recordVersion(obs, svc.Kind)
	}
	for _, c := range s.Clients {
		recordVersion(obs, c.Kind)
	}
	st.running = &Running{Topo: topo, Services: services}

	nodes := topo.Spec.NodeNames()
	for _, n := range nodes {
		if obs.Node(n).Sysctls, err = readSysctls(topo.Namespace(n)); err != nil {
			return st, err
		}
	}
	captures, err := startCaptures(l, topo, s, obs)
	if err != nil {
		return st, err
	}
	if obs.SynSchedule, err = topo.Namespace(s.Clients[0].node()).SynScheduleOf(); err != nil {
		return st, err
	}
	before := map[string]lab.Counters{}
	for _, n := range nodes {
		if before[n], err = topo.Namespace(n).Counters(); err != nil {
			return st, err
		}
	}

	env := &Env{Obs: obs, site: site, scen: s, services: services, install: install}
	timeline := s.Timeline
	if timeline == nil {
		timeline = Sequential
	}
	obs.Started = time.Now().Round(0)
	start := time.Now()
	terr := timeline(ctx, env)
	obs.Elapsed = time.Since(start)
	if terr == nil {
		for _, b := range boxes {
			if b.installed == nil {
				terr = fmt.Errorf("middlebox %s waits for moment %q, which the timeline never reached", b.spec.Box.Name, b.spec.When)
			}
		}
	}

	// Stop the captures first: everything the timeline put on the wire is
	// queued on their sockets by now, and Stop drains it.
	for key, c := range captures {
		if err := c.Stop(); err != nil {
			return st, fmt.Errorf("stop capture %s: %w", key, err)
		}
		link := obs.Links[key]
		link.Packets = c.Packets()
		for i := range link.Packets {
			// No payload is nil, as the JSON form reads back.
			if len(link.Packets[i].Payload) == 0 {
				link.Packets[i].Payload = nil
			}
		}
		_, link.Dropped = c.Stats()
	}
	for _, n := range nodes {
		after, err := topo.Namespace(n).Counters()
		if err != nil {
			return st, err
		}
		obs.Node(n).Counters = after.Sub(before[n])
	}
	for _, c := range s.Clients {
		if obs.Node(c.node()).Metrics != nil {
			continue
		}
		m, err := tcpmetrics.Dump(topo.Namespace(c.node()).Handle())
		if err != nil {
			return st, err
		}
		obs.Node(c.node()).Metrics = append([]tcpmetrics.Entry{}, m...)
	}
	for _, svc := range s.Services {
		obs.Services = append(obs.Services, observation.Service{
			Name: svc.name(), Node: svc.node(), Kind: svc.Kind.Kind(), Addr: services[svc.name()],
			Accepted: handles[svc.name()].Accepted(),
		})
	}
	for _, b := range boxes {
		if b.installed == nil {
			continue
		}
		hits, err := b.installed.Hits()
		if err != nil {
			return st, fmt.Errorf("middlebox %s counters: %w", b.spec.Box.Name, err)
		}
		mb := observation.Middlebox{Name: b.spec.Box.Name, Node: b.spec.node(), Family: s.Family}
		for _, h := range hits {
			mb.Rules = append(mb.Rules, observation.RuleHits{Rule: h.Rule, Line: h.Line, Packets: h.Packets})
		}
		obs.Middleboxes = append(obs.Middleboxes, mb)
	}
	servedBy(obs)
	return st, terr
}

// servedBy sets each connection's ServerLink (and Served node) to the
// service-side capture that saw its first SYN: behind an ECMP router the
// service's address lives on several nodes, and only the captures tell
// which one a connection landed on.
func servedBy(obs *observation.Observation) {
	for i := range obs.Conns {
		c := &obs.Conns[i]
		for _, key := range obs.LinkNames() {
			l := obs.Links[key]
			if key == c.ClientLink || l.Node == c.Node {
				continue
			}
			for _, p := range l.Packets {
				if p.IsSYN() && p.Src == c.Local && p.Dst == c.Remote && !p.Time.Before(c.Start) {
					c.ServerLink, c.Served = key, l.Node
					break
				}
			}
			if c.Served != "" {
				break
			}
		}
	}
}

// startCaptures captures on every interface of every client node and
// every service node: what the clients sent and what reached the servers,
// on either side of whatever sits between them.
func startCaptures(l *lab.Lab, topo *topology.Topology, s Scenario, obs *observation.Observation) (map[string]*capture.Capture, error) {
	caps := map[string]*capture.Capture{}
	var nodes []string
	for _, c := range s.Clients {
		nodes = append(nodes, c.node())
	}
	for _, svc := range s.Services {
		nodes = append(nodes, svc.node())
	}
	for _, node := range nodes {
		for _, ifname := range topo.Interfaces(node) {
			key := observation.LinkKey(node, ifname)
			if caps[key] != nil {
				continue
			}
			c, err := capture.Start(topo.Namespace(node).Handle(), ifname, capture.Options{Link: key})
			if err != nil {
				return nil, fmt.Errorf("capture on %s: %w", key, err)
			}
			l.Defer("capture on "+key, c.Stop)
			caps[key] = c
			obs.Links[key] = &observation.Link{Node: node, Interface: ifname}
		}
	}
	return caps, nil
}

// readSysctls reads the ReportedSysctls present in ns.
func readSysctls(ns *lab.Namespace) (map[string]string, error) {
	out := map[string]string{}
	for _, k := range ReportedSysctls {
		v, err := ns.Sysctl(k)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // an older kernel without this knob
			}
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// Versioned is a service or client kind that knows the version of the
// program it runs (nginx 1.22.1); the observation records it.
type Versioned interface {
	Version() string
}

func recordVersion(obs *observation.Observation, kind any) {
	v, ok := kind.(Versioned)
	if !ok {
		return
	}
	k, _ := kind.(interface{ Kind() string })
	if obs.Host.Tools == nil {
		obs.Host.Tools = map[string]string{}
	}
	if k != nil {
		obs.Host.Tools[k.Kind()] = v.Version()
	}
}

// hostInfo is the kernel release the observation was made on.
func hostInfo() observation.Host {
	h := observation.Host{LabVersion: Version}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

// Version is the lab's version, stamped into observations.
const Version = "0.3.0"
