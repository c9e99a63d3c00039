package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tfolab/tfolab/scenarios"
)

// complete asks the command line for completions as the shell scripts
// do, and returns the words (without descriptions) and the directive.
func complete(t *testing.T, args ...string) ([]string, string) {
	t.Helper()
	root := newRootCmd()
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	if err := execute(root, append([]string{cobra.ShellCompRequestCmd}, args...)); err != nil {
		t.Fatalf("__complete %q: %v\n%s", args, err, stderr.String())
	}
	out := stdout.String()
	var words []string
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[:len(lines)-1] {
		w, _, _ := strings.Cut(l, "\t")
		words = append(words, w)
	}
	return words, lines[len(lines)-1]
}

// Shell completion of `tfolab run baseline/` gives the catalogue's names
// that start with it, and no file names.
func TestCompleteRun(t *testing.T) {
	var want []string
	for _, s := range scenarios.Catalogue() {
		if strings.HasPrefix(s.Name, "baseline/") {
			want = append(want, s.Name)
		}
	}
	if len(want) == 0 {
		t.Fatal("the catalogue has no baseline/ scenario")
	}
	words, directive := complete(t, "run", "baseline/")
	if !slices.Equal(words, want) {
		t.Errorf("completions %q, want %q", words, want)
	}
	if directive != ":4" { // ShellCompDirectiveNoFileComp
		t.Errorf("directive %s, want :4 (no file completion)", directive)
	}
	if words, _ := complete(t, "run", "baseline/routed/ipv4/sendto/cookie-then-data", ""); len(words) != 0 {
		t.Errorf("a second argument completes to %q", words)
	}
	if words, _ := complete(t, "probe", "pool/"); len(words) == 0 {
		t.Error("probe pool/ completes to nothing")
	}
}

// `tfolab list` completes labels; flags complete their values.
func TestCompleteLabelsAndFlags(t *testing.T) {
	words, _ := complete(t, "list", "")
	for _, l := range []string{"baseline", "blackhole", "ipv6", "pool"} {
		if !slices.Contains(words, l) {
			t.Errorf("list completes %q: no %q", words, l)
		}
	}
	if words, _ := complete(t, "firewall", "--place", ""); !slices.Equal(words, []string{"router", "server", "client"}) {
		t.Errorf("--place completes %q", words)
	}
	if words, directive := complete(t, "diagnose", ""); !slices.Contains(words, "pcap") || directive != ":8" {
		t.Errorf("diagnose completes %q %s: want capture extensions (:8, filter by extension)", words, directive)
	}
	if words, _ := complete(t, "report", "--labels", "bl"); !slices.Equal(words, []string{"blackhole"}) {
		t.Errorf("report --labels bl completes %q", words)
	}
}

// No flag that takes a value completes as a file name by accident: each
// has a completion of its own.
func TestFlagCompletions(t *testing.T) {
	for _, c := range newRootCmd().Commands() {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Value.Type() == "bool" {
				return
			}
			if _, ok := c.GetFlagCompletionFunc(f.Name); !ok {
				t.Errorf("%s --%s has no completion", c.Name(), f.Name)
			}
		})
	}
}

// The completion scripts generate, and bash's (zsh's where installed)
// parses.
func TestCompletionScripts(t *testing.T) {
	dir := t.TempDir()
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, code := tfolab(t, "completion", shell)
		if code != exitPass || !strings.Contains(out, "tfolab") {
			t.Fatalf("completion %s: exit %d:\n%.300s", shell, code, out)
		}
		path := filepath.Join(dir, "tfolab."+shell)
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		if shell == "fish" {
			continue // fish -n is not a syntax check on every fish
		}
		sh, err := exec.LookPath(shell)
		if err != nil {
			if shell == "bash" {
				t.Fatalf("bash: %v", err)
			}
			continue
		}
		if b, err := exec.Command(sh, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", shell, err, b)
		}
	}
}

// bash itself, with the script `tfolab completion bash` prints, completes
// `tfolab run baseline/routed/ipv6/s` to the catalogue's three names. The
// bash-completion package's _get_comp_words_by_ref is stubbed: the test
// needs bash only.
func TestBashCompletesScenarioNames(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wrapper := "#!/bin/sh\n" + asCLI + "=1 exec '" + self + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "tfolab"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	script, code := tfolab(t, "completion", "bash")
	if code != exitPass {
		t.Fatalf("completion bash: exit %d", code)
	}
	if err := os.WriteFile(filepath.Join(dir, "tfolab.bash"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	const line = "tfolab run baseline/routed/ipv6/s"
	cmd := exec.Command(bash, "-c", `
_get_comp_words_by_ref() { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
source "$1"
COMP_LINE=$2; COMP_POINT=${#COMP_LINE}; COMP_WORDS=($COMP_LINE); COMP_CWORD=2; COMP_TYPE=9
__start_tfolab tfolab "${COMP_WORDS[2]}" tfolab 2>/dev/null
printf '%s\n' "${COMPREPLY[@]}"`, "bash", filepath.Join(dir, "tfolab.bash"), line)
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	got := strings.Fields(string(out))
	want := []string{
		"baseline/routed/ipv6/sendto/cookie-then-data",
		"baseline/routed/ipv6/sendto/server-tfo-off",
		"baseline/routed/ipv6/sendto/no-cookie",
	}
	if !slices.Equal(got, want) {
		t.Errorf("bash completes %q to %q, want %q", line, got, want)
	}
}
