package labfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tfolab/tfolab/assertions"
)

// A malformed file gets one error, one line, naming file:line: the
// line of the mistake, found before any namespace exists.
func TestMalformedFilesNameTheirLine(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		line       int
		says       string
	}{
		{"unknown key", "services:\n  - kind: listener\n    queu: 3\nclients: [{count: 1}]\n", 3, `unknown field "queu"`},
		{"wrong type", "services: [{kind: listener}]\nclients:\n  - count: many\n", 3, "cannot unmarshal"},
		{"duration", "services: [{kind: listener}]\nclients:\n  - timeout: soon\n", 3, "soon"},
		{"syntax", "services: [{kind: listener}\nclients: []\n", 2, ""},
		{"client on a missing node", "services: [{kind: listener}]\nclients:\n  - count: 1\n    node: ghost\n", 4, `node "ghost" does not exist`},
		{"service on a missing node", "topology: pool 3\nservices:\n  - {kind: listener, node: server4}\nclients: [{}]\n", 3, `node "server4" does not exist`},
		{"sysctls for a missing node", "services: [{}]\nclients: [{}]\nsysctls:\n  client: {net.ipv4.tcp_fastopen: \"1\"}\n  serverr: {net.ipv4.tcp_fastopen: \"2\"}\n", 5, `node "serverr"`},
		{"missing config file", "services:\n  - kind: nginx\n    config: nope.conf\nclients: [{kind: curl}]\n", 3, "nope.conf: no such file"},
		{"missing sysctl.d file", "services: [{}]\nclients: [{}]\nsysctl-files:\n  server: [fleet.conf]\n", 4, "fleet.conf: no such file"},
		{"missing ruleset", "services: [{}]\nclients: [{}]\nmiddleboxes:\n  - iptables: v4.rules\n", 4, "v4.rules: no such file"},
		{"unknown behaviour", "services: [{}]\nclients: [{}]\nmiddleboxes:\n  - behaviour: drop-syn-dta\n", 4, `no behaviour "drop-syn-dta"`},
		{"moment never named", "services: [{}]\nclients: [{}]\nmiddleboxes:\n  - behaviour: drop-syn-data\n    at: later\n", 5, `moment "later"`},
		{"a key for another kind", "services:\n  - kind: listener\n    config: x.conf\nclients: [{}]\n", 3, `"config" does not apply to a listener`},
		{"link to a missing node", "nodes: [{name: client}, {name: server}]\nlinks:\n  - [client, sever]\nservices: [{}]\nclients: [{}]\n", 3, `node "sever"`},
		{"two claims in one", "services: [{}]\nclients: [{}]\nexpect:\n  - {no-stall: true, completed: true}\n", 4, "exactly one claim"},
		{"bad counter bound", "services: [{}]\nclients: [{}]\nexpect:\n  - counters:\n      node: server\n      deltas: {TCPFastOpenPassive: \"lots\"}\n", 6, "TCPFastOpenPassive"},
		{"unknown diagnosis", "services: [{}]\nclients: [{}]\nexpect:\n  - diagnosis: works\n", 4, `diagnosis "works"`},
		{"repeat without steps", "services: [{}]\nclients: [{}]\ntimeline:\n  - {connect: 1}\n  - repeat: 3\n", 5, "repeat: want a count"},
		{"until-counter outside a connect step", "services: [{}]\nclients: [{}]\ntimeline:\n  - {wait: 1s, until-counter: TCPFastOpenBlackhole}\n", 4, "belong to a connect step"},
		{"timeline step with two actions", "services: [{}]\nclients: [{}]\ntimeline:\n  - {connect: 1, wait: 1s}\n", 4, "exactly one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "lab.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err := Load(path)
			took := time.Since(start)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("want an *Error, got %v", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			if e.Line != tc.line || !strings.HasPrefix(msg, path+":") {
				t.Errorf("error at line %d, want %d: %s", e.Line, tc.line, msg)
			}
			if !strings.Contains(msg, tc.says) {
				t.Errorf("error %q does not say %q", msg, tc.says)
			}
			if took > 200*time.Millisecond {
				t.Errorf("took %v to refuse", took)
			}
		})
	}
}

// Every example lab loads, and states claims (no example leans on the
// default verdict).
func TestExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../examples/labs/*/lab.yaml")
	if len(files) < 5 {
		t.Fatalf("%d example labs, want at least 5", len(files))
	}
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(s.Expect) == 0 || assertions.NameOf(s.Expect[0]) == "diagnosis" && len(s.Expect) == 1 {
			t.Errorf("%s: no claims of its own", f)
		}
	}
}

// A file without expectations is judged by the lab's own verdict: the
// diagnosis of the client's capture must say TFO works.
func TestNoExpectationsIsTheDiagnosis(t *testing.T) {
	path := filepath.Join(t.TempDir(), "min.yaml")
	if err := os.WriteFile(path, []byte("services: [{}]\nclients: [{count: 2}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Expect) != 1 || assertions.NameOf(s.Expect[0]) != "diagnosis" || !strings.Contains(assertions.Describe(s.Expect[0]), "tfo-works") {
		t.Fatalf("expectations %v, want the diagnosis tfo-works", s.Expect)
	}
	if s.Name != "min" || s.Topology.Name != "routed" || s.Clients[0].Connections != 2 {
		t.Errorf("defaults: name %q, topology %q, %d connections", s.Name, s.Topology.Name, s.Clients[0].Connections)
	}
}
