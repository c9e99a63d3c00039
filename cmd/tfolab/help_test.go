package main

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/spf13/cobra"
)

// Every help file parses, every command (the hidden ones too, and the
// root) has one, and every one belongs to a command.
func TestHelpFiles(t *testing.T) {
	texts, err := helpTexts()
	if err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	names := []string{root.Name()}
	for _, c := range root.Commands() {
		names = append(names, c.Name())
		if _, ok := texts[c.Name()]; !ok {
			t.Errorf("command %s has no help/%s.txt", c.Name(), c.Name())
		}
	}
	if _, ok := texts[root.Name()]; !ok {
		t.Errorf("the root command has no help/%s.txt", root.Name())
	}
	for name := range texts {
		if !slices.Contains(names, name) {
			t.Errorf("help/%s.txt: no command %s", name, name)
		}
	}
	// The text probe's help gives its default scenario is the default.
	if p := texts["probe"]; !strings.Contains(p.long, "(default "+defaultProbeScenario+")") {
		t.Errorf("probe's help does not name its default scenario %s:\n%s", defaultProbeScenario, p.long)
	}
}

// A help file in the format parses to its four texts; Long and Example are
// optional.
func TestParseHelp(t *testing.T) {
	h, err := parseHelp("x", "Use: x FILE\nShort: Do x\n\nLong:\nDoes x\n\nto FILE.\n\nExample:\n  tfolab x a\n  tfolab x b\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := (helpText{"x FILE", "Do x", "Does x\n\nto FILE.", "  tfolab x a\n  tfolab x b"}); h != want {
		t.Errorf("got %+v, want %+v", h, want)
	}
	for text, want := range map[string]helpText{
		"Use: x\nShort: Do x\n":                         {use: "x", short: "Do x"},
		"Use: x\nShort: Do x\n\nLong:\nDoes x\n":        {use: "x", short: "Do x", long: "Does x"},
		"Use: x\nShort: Do x\n\nExample:\n  tfolab x\n": {use: "x", short: "Do x", example: "  tfolab x"},
	} {
		if h, err := parseHelp("x", text); err != nil || h != want {
			t.Errorf("%q: got %+v, %v; want %+v", text, h, err, want)
		}
	}
}

// A malformed help file is an error naming what is wrong, never half a
// help.
func TestParseHelpStrict(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"", "newline at the end"},
		{"Use: x\nShort: Do x", "newline at the end"},
		{"Use: x\nShort: Do x\n\n", "newline at the end"},
		{"Use: x\n", "Use: and a Short:"},
		{"Use: y\nShort: Do x\n", `line 1: want "Use: x"`},
		{"Use:x\nShort: Do x\n", `line 1: want "Use: x"`},
		{"Use: x  FILE\nShort: Do x\n", `line 1: want "Use: x"`},
		{"Short: Do x\nUse: x\n", `line 1: want "Use: x"`},
		{"Use: x\nShort:\n", "line 2: want"},
		{"Use: x\nShort:  Do x\n", "line 2: want"},
		{"Use: x\nLong: Do x\n", "line 2: want"},
		{"Use: x\nShort: Do x \n", "line 2: trailing white space"},
		{"Use: x\nShort: Do x\nDoes x\n", `line 3: "Does x": want a blank line`},
		{"Use: x\nShort: Do x\nLong:\nDoes x\n", `line 3: "Long:": want a blank line`},
		{"Use: x\nShort: Do x\n\nlong:\nDoes x\n", `line 4: "long:": want Long: or Example:`},
		{"Use: x\nShort: Do x\n\nUsage:\nx\n", `line 4: "Usage:": want Long: or Example:`},
		{"Use: x\nShort: Do x\n\nLong:\n", "line 4: Long: wants text"},
		{"Use: x\nShort: Do x\n\nLong:\n\nDoes x\n", "line 4: Long: wants text"},
		{"Use: x\nShort: Do x\n\nLong:\nDoes x\n\n\nExample:\n  tfolab x\n", "line 4: Long: wants text"},
		{"Use: x\nShort: Do x\n\nLong:\nDoes x\n\nExampel:\n  tfolab x\n", `line 7: "Exampel:": want Long: or Example:`},
		{"Use: x\nShort: Do x\n\nExample:\n  tfolab x\n\nLong:\nDoes x\n", `line 7: "Long:": want Long: or Example:`},
		{"Use: x\nShort: Do x\n\nLong:\nDoes x\n\nLong:\nDoes x\n", `line 7: "Long:": want Long: or Example:`},
	} {
		if _, err := parseHelp("x", tc.text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one saying %q", tc.text, err, tc.want)
		}
	}
}

// A malformed file among the help files is named by the parse of them
// all; a missing one gives its command a summary that says so.
func TestHelpFilesMalformed(t *testing.T) {
	texts, err := parseHelpFiles(fstest.MapFS{
		"help/good.txt": {Data: []byte("Use: good\nShort: Fine\n")},
		"help/bad.txt":  {Data: []byte("Use: good\nShort: Fine\n")},
	})
	if err == nil || !strings.Contains(err.Error(), "help/bad.txt: line 1") {
		t.Errorf("error %v, want one naming help/bad.txt", err)
	}
	if _, ok := texts["good"]; !ok || len(texts) != 1 {
		t.Errorf("parsed %v, want good alone", texts)
	}
	c := &cobra.Command{}
	describe(c, "no-such-command")
	if c.Use != "no-such-command" || !strings.Contains(c.Short, "help/no-such-command.txt is missing") {
		t.Errorf("a command without help: Use %q, Short %q", c.Use, c.Short)
	}
}
