package main

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestMain runs the test binary as the command line itself when
// asCLI is set: how bash calls it in TestBashCompletesScenarioNames.
func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		main()
	}
	os.Exit(m.Run())
}

const asCLI = "TFOLAB_TEST_AS_CLI"

// tfolab runs the command line args as a user would, without a lab or
// root, and returns what it wrote (stdout and stderr) and its exit code.
func tfolab(t *testing.T, args ...string) (string, int) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	err := execute(root, args)
	if err != nil {
		out.WriteString(err.Error() + "\n")
	}
	return out.String(), exitCode(err)
}

// `tfolab --help` lists every command once, on one line of its own, and
// says the exit codes.
func TestRootHelp(t *testing.T) {
	out, code := tfolab(t, "--help")
	if code != exitPass {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	lines := strings.Split(out, "\n")
	root := newRootCmd()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	want := []string{"list", "run", "export", "report", "diff", "firewall", "key", "probe", "cost", "diagnose",
		"preflight", "sweep", "namespaces", "host-state", "check-labels", "junit-summary", "completion", "help"}
	var have []string
	for _, c := range root.Commands() {
		if !c.IsAvailableCommand() && c.Name() != "help" {
			continue
		}
		have = append(have, c.Name())
		re := regexp.MustCompile(`^  ` + regexp.QuoteMeta(c.Name()) + ` +\S`)
		n := 0
		for _, l := range lines {
			if re.MatchString(l) {
				n++
				if len(l) > 100 {
					t.Errorf("%s: line of %d characters: %q", c.Name(), len(l), l)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: listed on %d lines, want 1", c.Name(), n)
		}
		if strings.Contains(c.Short, "\n") || c.Short == "" {
			t.Errorf("%s: Short %q: want one line", c.Name(), c.Short)
		}
	}
	for _, w := range want {
		if !slices.Contains(have, w) {
			t.Errorf("command %s is missing", w)
		}
	}
	for _, code := range []string{"0  passed", "1  a verdict failed", "2  bad input"} {
		if !strings.Contains(out, code) {
			t.Errorf("root help does not explain exit code %q", code)
		}
	}
	// Exit codes are documented once: not again under every command.
	if sub, _ := tfolab(t, "run", "--help"); strings.Contains(sub, "Exit codes") {
		t.Error("run --help repeats the exit codes")
	}
}

// `tfolab run --help` shows its flags and an example.
func TestRunHelp(t *testing.T) {
	out, code := tfolab(t, "run", "--help")
	if code != exitPass {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{"tfolab run NAME [flags]", "--keep", "--out string", "Examples:", "tfolab run baseline/routed/ipv4/sendto/cookie-then-data --keep"} {
		if !strings.Contains(out, want) {
			t.Errorf("run --help lacks %q:\n%s", want, out)
		}
	}
}

// Every command says what it is for and shows an example in its --help.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range newRootCmd().Commands() {
		if c.Hidden {
			continue // vm-guest: a VM's PID 1, not for people
		}
		if c.Long == "" || c.Example == "" || c.GroupID == "" {
			t.Errorf("%s: want Long, Example and GroupID", c.Name())
		}
		if !strings.Contains(c.Example, "tfolab "+c.Name()) {
			t.Errorf("%s: the example does not run it: %q", c.Name(), c.Example)
		}
		// A scenario an example names is in the catalogue.
		for _, m := range exampleScenario.FindAllStringSubmatch(c.Example, -1) {
			if _, err := findScenario(m[1]); err != nil {
				t.Errorf("%s: example: %v", c.Name(), err)
			}
		}
	}
}

// exampleScenario is a scenario name in an example of run or probe.
var exampleScenario = regexp.MustCompile(`tfolab (?:run|probe) ([a-z0-9-]+/[^ \n]+)`)

// Bad input is one line naming the problem and a hint, exit 2, before
// any lab exists (these need no root).
func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run"}, "tfolab run: want one scenario NAME, got 0 arguments"},
		{[]string{"run", "a", "b"}, `tfolab run: want one scenario NAME, got 2 arguments (unexpected "b")`},
		{[]string{"run", "x", "--kep"}, "tfolab run: unknown flag: --kep"},
		{[]string{"rn"}, `tfolab: unknown command "rn"; did you mean run?`},
		{[]string{"list", "a", "b"}, "tfolab list: want at most one LABEL"},
		{[]string{"sweep", "now"}, `tfolab sweep: unexpected argument "now"`},
		{[]string{"key", "--backup", "a", "--rotate", "b"}, "tfolab key: if any flags in the group [backup rotate] are set"},
		{[]string{"report", "--rtt", "5"}, `tfolab report: invalid argument "5" for "--rtt" flag`},
		{[]string{"report", "--rtt", "5ms"}, "tfolab report: --rtt 5ms: want 0 (none) or at least 10ms"},
		{[]string{"report", "--parallel", "0"}, "tfolab report: --parallel 0: want 1 or more"},
		{[]string{"firewall", "--port", "0"}, `tfolab firewall: --port "0": want 1 to 65535`},
		{[]string{"firewall", "--rules", "x", "--place", "moon"}, `tfolab firewall: --place "moon": want router`},
		{[]string{"diagnose", "a.pcap", "--server", "nowhere"}, `tfolab diagnose: --server "nowhere": want ADDR:PORT`},
		{[]string{"diff", "a.json"}, "tfolab diff: want BASELINE.json and CANDIDATE.json, got 1 arguments"},
		{[]string{"junit-summary"}, "tfolab junit-summary: want one JUnit FILE, got 0 arguments"},
	} {
		out, code := tfolab(t, tc.args...)
		if code != exitBadInput {
			t.Errorf("%q: exit %d, want 2:\n%s", tc.args, code, out)
			continue
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], tc.want) || !regexp.MustCompile("^see `tfolab( [a-z-]+)? --help`$").MatchString(lines[1]) {
			t.Errorf("%q: got\n%s\nwant a line starting %q and a hint", tc.args, out, tc.want)
		}
	}
	// A value judged by the command itself is one line, as make test
	// LABELS=... prints it.
	if out, code := tfolab(t, "check-labels", "(it's"); code != exitBadInput || strings.Count(out, "\n") != 1 {
		t.Errorf("check-labels: exit %d, %q: want 2 and one line", code, out)
	}
	if out, code := tfolab(t, "run", "no/such/scenario"); code != exitBadInput || !strings.Contains(out, "tfolab list") {
		t.Errorf("run no/such/scenario: exit %d, %q", code, out)
	}
	if out, code := tfolab(t); code != exitBadInput || !strings.Contains(out, "Scenarios and labs:") {
		t.Errorf("no arguments: exit %d:\n%s", code, out)
	}
}

// The single-dash long flags Go's flag package read still work for the
// flags a command has; anything else is pflag's to judge.
func TestSingleDashLongFlags(t *testing.T) {
	root := newRootCmd()
	for _, tc := range []struct{ in, want []string }{
		{[]string{"sweep", "-all"}, []string{"sweep", "--all"}},
		{[]string{"run", "x", "-keep", "-out=d"}, []string{"run", "x", "--keep", "--out=d"}},
		{[]string{"run", "x", "-out", "d", "-help"}, []string{"run", "x", "--out", "d", "--help"}},
		{[]string{"run", "x", "-kep"}, []string{"run", "x", "-kep"}},
		{[]string{"run", "x", "--", "-keep"}, []string{"run", "x", "--", "-keep"}},
		{[]string{"run", "-h"}, []string{"run", "-h"}},
		{[]string{"nosuch", "-all"}, []string{"nosuch", "-all"}},
	} {
		if got := normalizeFlags(root, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
	out, code := tfolab(t, "key", "-sysctl-d")
	if code != exitPass || !strings.HasPrefix(out, "net.ipv4.tcp_fastopen_key = ") {
		t.Errorf("key -sysctl-d: exit %d, %q", code, out)
	}
}
