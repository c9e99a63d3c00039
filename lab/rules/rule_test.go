package rules

import (
	"slices"
	"strings"
	"testing"
)

func TestRuleStringQuoting(t *testing.T) {
	r := Rule{Table: "filter", Chain: "TFO", Spec: []string{"-m", "comment", "--comment", `say "hi" $x`, "-j", "DROP"}}
	want := `-t filter -A TFO -m comment --comment "say \"hi\" \$x" -j DROP`
	if got := r.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := (Rule{Table: "filter", Chain: "TFO"}).String(); got != "-t filter -N TFO" {
		t.Errorf("chain declaration: %s", got)
	}
	// Round trip through the parser's shell splitting.
	words, err := shellSplit(r.String())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(words[4:], "|") != strings.Join(r.Spec, "|") {
		t.Errorf("round trip: %q", words)
	}
}

func TestInstalledTagBeforeTarget(t *testing.T) {
	r := Rule{Table: "filter", Chain: "FORWARD", Spec: []string{"-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"}}
	got := strings.Join(r.installed(), " ")
	want := "-p tcp -m comment --comment " + r.Tag() + " -j REJECT --reject-with tcp-reset"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	noTarget := Rule{Table: "filter", Chain: "FORWARD", Spec: []string{"-p", "tcp"}}
	if got := strings.Join(noTarget.installed(), " "); got != "-p tcp -m comment --comment "+noTarget.Tag() {
		t.Errorf("no target: %s", got)
	}
	if r.Tag() == noTarget.Tag() || !strings.HasPrefix(r.Tag(), TagPrefix) {
		t.Errorf("tags %s %s", r.Tag(), noTarget.Tag())
	}
}

func TestRestoreErrorLineAndReason(t *testing.T) {
	for _, c := range []struct {
		stderr, reason string
		line           int
	}{
		{"iptables-restore v1.8.9 (nf_tables): Couldn't load match `bogus':No such file or directory\n\nError occurred at line: 3\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.",
			"Couldn't load match `bogus':No such file or directory", 3},
		{"ip6tables-restore v1.8.9 (nf_tables): \nline 3: RULE_APPEND failed (Invalid argument): rule in chain FORWARD",
			"RULE_APPEND failed (Invalid argument): rule in chain FORWARD", 3},
		{"iptables-restore: line 7 failed", "iptables-restore: line 7 failed", 7},
		{"something else", "something else", 0},
	} {
		e := &restoreError{stderr: c.stderr}
		if got := e.line(); got != c.line {
			t.Errorf("line of %q = %d, want %d", c.stderr, got, c.line)
		}
		if got := e.reason(); got != c.reason {
			t.Errorf("reason of %q = %q, want %q", c.stderr, got, c.reason)
		}
	}
}

func TestBatchesInstallAndRemoveInOrder(t *testing.T) {
	rs := []Rule{
		{Table: "filter", Chain: "G"},
		{Table: "filter", Chain: "FORWARD", Spec: []string{"-p", "tcp", "-j", "G"}},
		{Table: "mangle", Chain: "FORWARD", Spec: []string{"-m", "bpf", "--bytecode", "4,48 0 0 9", "-j", "DROP"}},
		{Table: "filter", Chain: "G", Spec: []string{"-j", "DROP"}},
	}
	in := batches(rs, true)
	if len(in) != 2 || in[0].table != "filter" || in[1].table != "mangle" {
		t.Fatalf("install batches by table: %v", in)
	}
	wantFilter := "*filter\n-N G\n-A FORWARD -p tcp -m comment --comment " + rs[1].Tag() + " -j G\n-A G -m comment --comment " + rs[3].Tag() + " -j DROP\nCOMMIT\n"
	if got := in[0].text.String(); got != wantFilter {
		t.Errorf("filter install:\n%s\nwant:\n%s", got, wantFilter)
	}
	if got, want := in[1].text.String(), `-A FORWARD -m bpf --bytecode "4,48 0 0 9" -m comment`; !strings.Contains(got, want) {
		t.Errorf("mangle install %q lacks the quoted bytecode %q", got, want)
	}
	if got, want := in[0].from, []int{-1, 0, 1, 3, -1}; !slices.Equal(got, want) {
		t.Errorf("filter install lines from rules %v, want %v", got, want)
	}
	out := batches(rs, false)
	wantRemove := "*filter\n-D G -m comment --comment " + rs[3].Tag() + " -j DROP\n-D FORWARD -p tcp -m comment --comment " + rs[1].Tag() + " -j G\n-X G\nCOMMIT\n"
	if got := out[0].text.String(); out[0].table != "filter" || got != wantRemove {
		t.Errorf("filter removal:\n%s\nwant:\n%s", got, wantRemove)
	}
}

func TestParseSavedCounters(t *testing.T) {
	s := parseSaved([]byte("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [12:720]\n:G - [0:0]\n[5:300] -A FORWARD -p tcp -m comment --comment \"tfolab:ab\" -j G\nCOMMIT\n"))
	if p := s.policies["FORWARD"]; p.target != "DROP" || p.packets != 12 {
		t.Errorf("FORWARD policy %+v", p)
	}
	if _, ok := s.policies["G"]; ok {
		t.Error("a user chain has no policy")
	}
	if len(s.rules) != 1 || s.rules[0].packets != 5 || !strings.Contains(s.rules[0].line, "tfolab:ab") {
		t.Errorf("rules %+v", s.rules)
	}
}
