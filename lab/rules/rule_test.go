package rules

import (
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
