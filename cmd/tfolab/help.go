package main

// Every command's prose (its usage line, its one-line summary, its
// description and its examples) is a text file, help/NAME.txt, embedded in
// the binary; the Go of a command holds only what is code: its group, its
// argument check and completion, its flags and what it runs.
//
// The format of help/NAME.txt, read strictly (TestHelpFiles):
//
//	Use: NAME [ARGS]
//	Short: one line for `tfolab --help`
//
//	Long:
//	the description, any number of lines, none of them the first or the
//	last blank
//
//	Example:
//	  tfolab NAME ...
//
// Use and Short are required, Use's first word is NAME; Long and Example
// are optional, in that order, each after one blank line (a blank line
// then another "Word:" line is refused, not taken for text). No line ends
// in white space; the file ends with the last line's newline. The texts
// are cobra's Use, Short, Long and Example, as they are.

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"sync"

	"github.com/spf13/cobra"
)

//go:embed help/*.txt
var helpFiles embed.FS

// helpText is what one help file holds.
type helpText struct {
	use, short, long, example string
}

// helpTexts are the help files parsed, by command name, and what was
// wrong with any of them; parsed once, on the first use.
var helpTexts = sync.OnceValues(func() (map[string]helpText, error) {
	return parseHelpFiles(helpFiles)
})

// parseHelpFiles parses every help/*.txt of fsys.
func parseHelpFiles(fsys fs.FS) (map[string]helpText, error) {
	files, err := fs.Glob(fsys, "help/*.txt")
	if err != nil {
		return nil, err
	}
	texts := map[string]helpText{}
	var errs []error
	for _, file := range files {
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		name := strings.TrimSuffix(path.Base(file), ".txt")
		h, err := parseHelp(name, string(b))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		texts[name] = h
	}
	return texts, errors.Join(errs...)
}

// sectionLike is a line that looks like a section's title: after a blank
// line, one that is not Long: or Example: is a mistake, not text.
var sectionLike = regexp.MustCompile(`^[A-Za-z]+:$`)

// parseHelp parses the help file of command name.
func parseHelp(name, text string) (helpText, error) {
	var h helpText
	body, ok := strings.CutSuffix(text, "\n")
	if !ok || strings.HasSuffix(body, "\n") {
		return h, errors.New("want one newline at the end")
	}
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		if strings.TrimRight(l, " \t") != l {
			return h, fmt.Errorf("line %d: trailing white space", i+1)
		}
	}
	if len(lines) < 2 {
		return h, errors.New("want a Use: and a Short: line")
	}
	if h.use, ok = strings.CutPrefix(lines[0], "Use: "); !ok || strings.SplitN(h.use, " ", 2)[0] != name || strings.Contains(h.use, "  ") {
		return h, fmt.Errorf("line 1: want \"Use: %s\" and its arguments", name)
	}
	if h.short, ok = strings.CutPrefix(lines[1], "Short: "); !ok || h.short == "" || strings.TrimSpace(h.short) != h.short {
		return h, errors.New("line 2: want \"Short: \" and a summary")
	}
	sections := []struct {
		title string
		text  *string
	}{{"Long:", &h.long}, {"Example:", &h.example}}
	isTitle := func(l string) bool { return l == "Long:" || l == "Example:" }
	for n := 2; n < len(lines); {
		if lines[n] != "" || n+1 == len(lines) {
			return h, fmt.Errorf("line %d: %q: want a blank line, then Long: or Example:", n+1, lines[n])
		}
		for len(sections) > 0 && sections[0].title != lines[n+1] {
			sections = sections[1:] // a section this file does not have
		}
		if len(sections) == 0 {
			return h, fmt.Errorf("line %d: %q: want Long: or Example:, once each and in that order", n+2, lines[n+1])
		}
		end := n + 2
		for ; end < len(lines) && !(lines[end] == "" && end+1 < len(lines) && isTitle(lines[end+1])); end++ {
			if lines[end] == "" && end+1 < len(lines) && sectionLike.MatchString(lines[end+1]) {
				return h, fmt.Errorf("line %d: %q: want Long: or Example:", end+2, lines[end+1])
			}
		}
		text := lines[n+2 : end]
		if len(text) == 0 || text[0] == "" || text[len(text)-1] == "" {
			return h, fmt.Errorf("line %d: %s wants text, its first and last lines not blank", n+2, sections[0].title)
		}
		*sections[0].text = strings.Join(text, "\n")
		sections, n = sections[1:], end
	}
	return h, nil
}

// command is the command help/NAME.txt describes: in group (none for a
// hidden one), its arguments checked by args, completed by complete (nil:
// as file names) and run by run.
func command(name, group string, args cobra.PositionalArgs, complete cobra.CompletionFunc, run func(*cobra.Command, []string) error) *cobra.Command {
	c := &cobra.Command{GroupID: group, Args: args, ValidArgsFunction: complete, RunE: run}
	describe(c, name)
	return c
}

// describe gives c the text of help/NAME.txt. A file missing or malformed
// fails TestHelpFiles; the command still runs, its summary naming it.
func describe(c *cobra.Command, name string) {
	texts, _ := helpTexts()
	h, ok := texts[name]
	if !ok {
		c.Use, c.Short = name, "(help/"+name+".txt is missing or malformed)"
		return
	}
	c.Use, c.Short, c.Long, c.Example = h.use, h.short, h.long, h.example
}
