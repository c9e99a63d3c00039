package labfile

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
)

// A call in a file builds the very expectation Go builds: same name, same
// statement.
func TestCallsBuildTheGoExpectations(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want types.GomegaMatcher
	}{
		{"{Conn: [1, {Dialogue: [client, {ClientSYN: [], with: [WithCookie, {WithPayload: [21]}]}, {ServerSYNACK: [], with: [AckingSYNData]}]}]}",
			assertions.Conn(1, assertions.Dialogue(assertions.AtClient, assertions.ClientSYN().WithCookie().WithPayload(21), assertions.ServerSYNACK().AckingSYNData()))},
		{"{EveryConn: [{ClientFail: syn retransmitted}, {FirstByteAfterSynRetransmissions: 1}, {NoPacket: [server, {ClientSYN: [], with: [{WithPayload: 21}]}]}]}",
			assertions.EveryConn(assertions.ClientFail(tfo.ClientFailSynRetransmitted), assertions.FirstByteAfterSynRetransmissions(1), assertions.NoPacket(assertions.AtServer, assertions.ClientSYN().WithPayload(21)))},
		{"{CountersOf: [server, {HaveCounterDeltas: [{Delta: [TCPFastOpenPassive, 2]}, {Delta: [TCPFastOpenPassiveFail, 0]}]}]}",
			assertions.CountersOf("server", assertions.HaveCounterDeltas(assertions.Delta(lab.TCPFastOpenPassive, 2), assertions.Delta(lab.TCPFastOpenPassiveFail, 0)))},
		{"{Named: [first pause, {PauseLasted: [1, 1s, 300ms]}]}",
			assertions.Named("first pause", assertions.PauseLasted(1, time.Second, 300*time.Millisecond))},
		{"{PoolCounterTotal: [[server1, server2], TCPFastOpenPassiveFail, 3]}",
			assertions.PoolCounterTotal([]string{"server1", "server2"}, lab.TCPFastOpenPassiveFail, 3)},
	} {
		path := filepath.Join(t.TempDir(), "lab.yaml")
		if err := os.WriteFile(path, []byte("services: [{}]\nclients: [{}]\nexpect:\n  - call: "+tc.yaml+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Load(path)
		if err != nil {
			t.Errorf("%s: %v", tc.yaml, err)
			continue
		}
		got := s.Expect[0]
		if assertions.NameOf(got) != assertions.NameOf(tc.want) || assertions.Describe(got) != assertions.Describe(tc.want) {
			t.Errorf("%s:\n got %q: %s\nwant %q: %s", tc.yaml, assertions.NameOf(got), assertions.Describe(got), assertions.NameOf(tc.want), assertions.Describe(tc.want))
		}
	}
}

// A wrong call is one line at the expectation's line.
func TestBadCalls(t *testing.T) {
	for _, tc := range []struct{ yaml, says string }{
		{"{Conn: [1, {Dialog: [client]}]}", `no constructor "Dialog"`},
		{"{Conn: [one]}", "want a number for int"},
		{"{ClientFail: sometimes}", `no tfo.ClientFail named "sometimes"`},
		{"{PoolOutcomes: [{Keys: {A: nokey}}]}", "PoolOutcomes argument 1: Keys: A:"},
		{"{ClientSYN: []}", "is no expectation"},
		{"{Conn: [1, {ClientSYN: []}]}", "where a assertions.ConnCheck goes"},
	} {
		path := filepath.Join(t.TempDir(), "lab.yaml")
		if err := os.WriteFile(path, []byte("services: [{}]\nclients: [{}]\nexpect:\n  - call: "+tc.yaml+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.HasPrefix(err.Error(), path+":4: ") || !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, want one line at :4 saying %q", tc.yaml, err, tc.says)
		}
	}
}

// Every exported constructor of package assertions that returns an
// expectation, a connection check, a packet step or a counter delta is
// callable from a file, or listed in NotCallable with its reason. A new
// constructor fails this test by name until it has its line in call.go.
func TestEveryConstructorIsCallable(t *testing.T) {
	files, err := filepath.Glob("../assertions/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no assertions sources: %v", err)
	}
	results := []string{"obsMatcher", "ConnCheck", "Step", "types.GomegaMatcher", "CounterDelta"}
	fset := token.NewFileSet()
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || !fd.Name.IsExported() || fd.Type.Results == nil || len(fd.Type.Results.List) != 1 {
				continue
			}
			res := exprString(fd.Type.Results.List[0].Type)
			if !slices.Contains(results, res) {
				continue
			}
			n++
			name := fd.Name.Name
			if _, ok := Constructors[name]; ok {
				continue
			}
			if _, ok := NotCallable[name]; ok {
				continue
			}
			t.Errorf("assertions.%s (%s) returns %s but a scenario file cannot call it: add `%q: assertions.%s,` to Constructors in labfile/call.go (or its reason to NotCallable)", name, filepath.Base(f), res, name, name)
		}
	}
	if n < 40 {
		t.Errorf("found only %d constructors: has the package moved?", n)
	}
}

func exprString(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return exprString(x.X) + "." + x.Sel.Name
	}
	return ""
}

// Every callable constructor records its call, so that an export writes
// its expectations as data: its result ends in .by("Name", ...) (in
// package scenarios: carries assertions.Call{Fn: "Name", ...}). Named,
// Counter and the counter deltas are recorded from their data instead.
func TestEveryConstructorRecordsItsCall(t *testing.T) {
	var src strings.Builder
	files, _ := filepath.Glob("../assertions/*.go")
	// The expectations of package scenarios record theirs as an
	// assertions.Call (Recorder).
	more, _ := filepath.Glob("../scenarios/*.go")
	for _, f := range append(files, more...) {
		if !strings.HasSuffix(f, "_test.go") {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(b)
		}
	}
	fromData := []string{"Named", "Counter", "HaveIncreasedBy", "HaveCounterDeltas", "Delta"}
	for name := range Constructors {
		if slices.Contains(fromData, name) {
			continue
		}
		if !strings.Contains(src.String(), `.by("`+name+`"`) && !strings.Contains(src.String(), `Call{Fn: "`+name+`"`) {
			t.Errorf("assertions.%s does not record its call: end what it returns with .by(%q, its parameters...)", name, name)
		}
	}
}
