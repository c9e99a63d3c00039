package labfile

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/scenarios"
	"github.com/tfolab/tfolab/topology"
)

// Export writes a catalogue scenario as a scenario file, all of it data:
// its topology, sysctls, services, clients and middleboxes (by name, or as
// a call of a middlebox constructor), its scripted timeline as a call of
// its constructor (scenarios.Timelines), and its expectations as calls of
// the assertions constructors. Each call is checked to build back what it
// stands for. The file loads into a scenario that runs to the same
// verdicts, and exports again to the same bytes. A part with no file form
// is an error naming it: nothing travels as a reference to Go.
func Export(s scenarios.Scenario) ([]byte, error) { return ExportAs(s, s.Name) }

// ExportAs is Export under the name the header gives: a scenario's name,
// or SelfCheckPrefix and a self-check's breakage.
func ExportAs(s scenarios.Scenario, ref string) ([]byte, error) {
	e := exporter{}
	f, err := e.file(s)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", ref, err)
	}
	out, err := yaml.MarshalWithOptions(f, yaml.CustomMarshaler[string](quoteControl))
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", ref, err)
	}
	header := fmt.Sprintf("# tfolab export of %s\n# Timelines, expectations and built middleboxes are calls of their Go constructors.\n", ref)
	return append([]byte(header), out...), nil
}

type exporter struct{}

func (e *exporter) file(s scenarios.Scenario) (File, error) {
	f := File{Name: s.Name, Description: s.Description, Labels: s.Labels, Family: "ipv4"}
	if s.Family == topology.IPv6 {
		f.Family = "ipv6"
	}
	e.topology(&f, s.Topology)
	f.Sysctls = s.Sysctls
	for i, svc := range s.Services {
		fs, err := service(svc)
		if err != nil {
			return f, fmt.Errorf("service %d: %w", i, err)
		}
		f.Services = append(f.Services, fs)
	}
	for i, c := range s.Clients {
		fc, err := client(c)
		if err != nil {
			return f, fmt.Errorf("client %d: %w", i, err)
		}
		f.Clients = append(f.Clients, fc)
	}
	for i, m := range s.Middleboxes {
		port := m.Port
		if port == 0 && len(s.Services) > 0 {
			port = cmp.Or(s.Services[0].Port, scenarios.ServicePort)
		}
		fm, err := e.middlebox(m, s.Family, middlebox.Params{ServicePort: port, Placement: m.Placement})
		if err != nil {
			return f, fmt.Errorf("middlebox %d: %w", i, err)
		}
		f.Middleboxes = append(f.Middleboxes, fm)
	}
	if s.Timeline != nil {
		if s.TimelineCall == nil {
			return f, fmt.Errorf("timeline: a scripted timeline that records no call: build it with a constructor of scenarios.Timelines (Scenario.Script)")
		}
		call, err := asTimelineCall(*s.TimelineCall)
		if err != nil {
			return f, fmt.Errorf("timeline: %w", err)
		}
		f.Timeline, f.Timeout = []Step{{Call: call}}, s.Timeout
	}
	if len(s.KernelNeeds) > 0 {
		f.KernelNeeds = s.KernelNeeds
	}
	for i, m := range s.Expect {
		call, err := asCall(m)
		if err != nil {
			return f, fmt.Errorf("expectation %d (%s: %s) has no file form: %w", i, assertions.NameOf(m), assertions.Describe(m), err)
		}
		f.Expect = append(f.Expect, Expectation{Call: call})
	}
	return f, nil
}

var rePoolName = regexp.MustCompile(`^pool(\d+)$`)

func (e *exporter) topology(f *File, t topology.Spec) {
	for _, std := range []topology.Spec{topology.Direct(), topology.Routed()} {
		if reflect.DeepEqual(std, t) {
			f.Topology = std.Name
			return
		}
	}
	if m := rePoolName.FindStringSubmatch(t.Name); m != nil {
		n, _ := strconv.Atoi(m[1])
		if reflect.DeepEqual(topology.Pool(n), t) {
			f.Topology = "pool " + m[1]
			return
		}
	}
	f.Topology = t.Name
	for _, n := range t.Nodes {
		fn := Node{Name: n.Name, Router: n.Router, Sysctls: n.Sysctls}
		for _, a := range n.Loopback {
			fn.Loopback = append(fn.Loopback, a.String())
		}
		for _, r := range n.Routes {
			fn.Routes = append(fn.Routes, Route{Dst: r.Dst.String(), Via: r.Via, FastOpenNoCookie: r.FastOpenNoCookie})
		}
		f.Nodes = append(f.Nodes, fn)
	}
	for _, l := range t.Links {
		f.Links = append(f.Links, []string{l.A, l.B})
	}
}

// text is b as a text field, or as its base64 twin when it is not text.
func text(b []byte) (string, string) {
	if b == nil {
		return "", ""
	}
	if utf8.Valid(b) && !bytes.ContainsAny(b, "\x00") {
		return string(b), ""
	}
	return "", base64.StdEncoding.EncodeToString(b)
}

// bodyOf is a peer's body for the file: nothing for the default one.
func bodyOf(b []byte) (string, string) {
	if b == nil || bytes.Equal(b, scenarios.DefaultBody()) {
		return "", ""
	}
	return text(b)
}

func intp(n int) *int { return &n }

// service writes a service; a kind without a case here cannot be
// exported: add it (and its decoding in build.go).
func service(svc scenarios.Service) (Service, error) {
	fs := Service{Name: svc.Name, Node: svc.Node, Port: svc.Port}
	if svc.Addr.IsValid() {
		fs.Addr = svc.Addr.String()
	}
	switch k := svc.Kind.(type) {
	case scenarios.Listener:
		fs.Kind, fs.Queue = "listener", intp(k.Queue)
		if k.Key != nil {
			fs.Key = k.Key.String()
		}
		if k.Reply != nil {
			var r string
			r, fs.ReplyBase64 = text(k.Reply)
			if fs.ReplyBase64 == "" {
				fs.Reply = &r
			}
		}
	case scenarios.NoCookieListener:
		fs.Kind, fs.Queue, fs.NoCookie = "listener", intp(k.Queue), true
	case scenarios.Nginx:
		fs.Kind, fs.Queue = "nginx", intp(k.FastOpen)
		fs.Body, fs.BodyBase64 = bodyOf(k.Body)
	case scenarios.NginxConfig:
		fs.Kind, fs.Config = "nginx", k.Path
	case scenarios.HAProxy:
		fs.Kind = "haproxy"
		if k.NoTFO {
			no := false
			fs.TFO = &no
		}
		fs.Body, fs.BodyBase64 = bodyOf(k.Body)
		if be := k.Backend; be != nil {
			fs.Backend = &Backend{Node: be.Node, Port: be.Port}
			if be.Resolver.IsValid() {
				fs.Backend.Resolver = be.Resolver.String()
			}
		}
	case scenarios.HAProxyConfig:
		fs.Kind, fs.Config = "haproxy", k.Path
	case scenarios.PartialAckPeer:
		fs.Kind, fs.AckBytes, fs.AnyCookieLength = "partial-ack", intp(k.AckBytes), k.AnyCookieLength
		if k.Cookie != nil {
			fs.Cookie = fmt.Sprintf("%x", k.Cookie)
		}
	case scenarios.ScriptedListener:
		fs.Kind, fs.Queue, fs.MaxSeg = "scripted-listener", intp(k.Queue), k.MaxSeg
	case scenarios.ScriptedPeer:
		fs.Kind, fs.Greeting = "scripted", string(k.Greeting)
		if k.Cookie != nil {
			fs.Cookie = fmt.Sprintf("%x", k.Cookie)
		}
	default:
		return fs, fmt.Errorf("service kind %T (%s) has no labfile form: add a case to labfile.service (export.go) and its decoding (build.go)", svc.Kind, kindName(svc.Kind))
	}
	return fs, nil
}

func kindName(k interface{ Kind() string }) string {
	if k == nil {
		return "nil"
	}
	return k.Kind()
}

// client writes a client; a kind without a case here cannot be
// exported.
func client(c scenarios.Client) (Client, error) {
	fc := Client{Name: c.Name, Node: c.Node, Service: c.Service, Count: c.Connections, Payload: string(c.Payload), Timeout: c.ConnTimeout}
	switch k := c.Kind.(type) {
	case scenarios.LabClient, scenarios.NoCookieLabClient:
		fc.Kind = "lab"
		mode := tfo.Mode(0)
		switch k := k.(type) {
		case scenarios.LabClient:
			mode = k.Mode
		case scenarios.NoCookieLabClient:
			mode, fc.NoCookie = k.Mode, true
		}
		switch mode {
		case tfo.ModeSendto:
			fc.Mode = "sendto"
		case tfo.ModeConnect:
			fc.Mode = "connect"
		case tfo.ModePlain:
			fc.Mode = "plain"
		default:
			return fc, fmt.Errorf("lab client mode %d", int(mode))
		}
	case scenarios.Curl:
		fc.Kind, fc.Plain = "curl", k.Plain
	case scenarios.PythonClient:
		fc.Kind, fc.Script = "python", k.Script
	default:
		return fc, fmt.Errorf("client kind %T (%s) has no labfile form: add a case to labfile.client (export.go) and its decoding (build.go)", c.Kind, kindName(c.Kind))
	}
	if !utf8.ValidString(fc.Payload) {
		return fc, fmt.Errorf("client %s: a payload that is not text", c.Name)
	}
	return fc, nil
}

func (e *exporter) middlebox(m scenarios.MiddleboxSpec, fam topology.Family, params middlebox.Params) (Middlebox, error) {
	fm := Middlebox{Node: m.Node, Port: m.Port, At: m.When}
	switch m.Placement {
	case middlebox.Router:
	case middlebox.ClientSide:
		fm.Placement = "client-side"
	case middlebox.ServerSide:
		fm.Placement = "server-side"
	default:
		return fm, fmt.Errorf("placement %v", m.Placement)
	}
	if box, ok := scenarios.BoxByName(m.Box.Name); ok && sameBehaviour(box, m.Box, fam, params) {
		fm.Behaviour = m.Box.Name
		return fm, nil
	}
	if made := m.Box.Made; made != nil {
		if made.Fn == "Delay" && len(made.Args) == 1 {
			if d, ok := made.Args[0].(time.Duration); ok && d > 0 {
				fm.Delay = d
				return fm, nil
			}
		}
		call, err := asMiddleboxCall(m.Box, fam, params)
		if err != nil {
			return fm, fmt.Errorf("%s: %w", m.Box.Name, err)
		}
		fm.Call = call
		return fm, nil
	}
	return fm, fmt.Errorf("%s has no file form: neither a behaviour by name (scenarios.BoxByName) nor built by a constructor of labfile.Middleboxes (middlebox.Made)", m.Box.Name)
}

// quoteControl writes a string with control characters (a greeting's
// "\r\n") double-quoted with escapes: a block scalar would lose its CRs.
func quoteControl(s string) ([]byte, error) {
	if strings.ContainsFunc(s, unicode.IsControl) {
		return []byte(strconv.Quote(s)), nil
	}
	return yaml.Marshal(s)
}

// sameBehaviour reports whether m does what the catalogue's box of its
// name does: the same description, no installer of its own, and the same
// rules for the scenario's family and knobs (a self-check that keeps a
// behaviour's name but empties its rules is not that behaviour).
func sameBehaviour(box, m middlebox.Middlebox, fam topology.Family, p middlebox.Params) bool {
	if box.Description != m.Description || (box.Install == nil) != (m.Install == nil) || (box.Rules == nil) != (m.Rules == nil) || m.Made != nil {
		return false
	}
	if m.Install != nil {
		// The very installer (a package-level box's).
		return m.Rules == nil && samePointer(box.Install, m.Install) && samePointer(box.Check, m.Check)
	}
	if m.Rules == nil {
		return false
	}
	want, werr := box.Rules(fam, p)
	got, gerr := m.Rules(fam, p)
	return werr == nil && gerr == nil && reflect.DeepEqual(want, got)
}

// samePointer reports whether two funcs are the same function value
// (nil or not).
func samePointer(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.IsNil() || vb.IsNil() {
		return va.IsNil() == vb.IsNil()
	}
	return va.Pointer() == vb.Pointer()
}

// asMiddleboxCall is the call that built box (Custom's rules), checked
// to build back the same rules.
func asMiddleboxCall(box middlebox.Middlebox, fam topology.Family, p middlebox.Params) (map[string]any, error) {
	enc, err := boxes.encode(assertions.Call{Fn: box.Made.Fn, Args: box.Made.Args})
	if err != nil {
		return nil, err
	}
	back, err := callMiddlebox(enc)
	if err != nil {
		return nil, fmt.Errorf("the call does not build back: %w", err)
	}
	if back.Name != box.Name || back.Description != box.Description {
		return nil, fmt.Errorf("the call builds %s (%s), not %s (%s)", back.Name, back.Description, box.Name, box.Description)
	}
	if box.Rules != nil {
		want, werr := box.Rules(fam, p)
		got, gerr := back.Rules(fam, p)
		if werr != nil || gerr != nil || !reflect.DeepEqual(want, got) {
			return nil, fmt.Errorf("the call builds other rules: %v, not %v", got, want)
		}
	}
	return enc, nil
}
