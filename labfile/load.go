package labfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/tfolab/tfolab/scenarios"
)

// Error is a mistake in a scenario file, at a line of it: one line of
// text, "file:line: what".
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line <= 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Load reads the scenario file at path and builds its scenario. Files it
// names (configurations, rulesets, sysctl.d files) are relative to its
// folder. Every error is an *Error.
func Load(path string) (scenarios.Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return scenarios.Scenario{}, &Error{File: path, Msg: oneLine(err.Error())}
	}
	return Decode(path, data)
}

// Decode builds the scenario written in data, read from path (which
// names it in errors and anchors its relative paths).
func Decode(path string, data []byte) (scenarios.Scenario, error) {
	var f File
	if err := yaml.UnmarshalWithOptions(data, &f, yaml.Strict()); err != nil {
		return scenarios.Scenario{}, decodeError(path, data, err)
	}
	tree, err := parser.ParseBytes(data, 0)
	if err != nil {
		return scenarios.Scenario{}, decodeError(path, data, err)
	}
	b := &builder{file: path, dir: filepath.Dir(path), tree: tree}
	return b.build(f)
}

// decodeError turns the YAML library's error into one line at its
// position. A few of its errors carry none (a duration that does not
// parse): those are placed at the first token holding the quoted value
// they name.
func decodeError(path string, data []byte, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) {
		line := 0
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			line = tk.Position.Line
		}
		return &Error{File: path, Line: line, Msg: oneLine(friendlier(ye.GetMessage()))}
	}
	line := 0
	if m := reQuoted.FindStringSubmatch(err.Error()); m != nil {
		for _, tk := range lexer.Tokenize(string(data)) {
			if tk.Value == m[1] && tk.Position != nil {
				line = tk.Position.Line
				break
			}
		}
	}
	return &Error{File: path, Line: line, Msg: oneLine(friendlier(err.Error()))}
}

var reQuoted = regexp.MustCompile(`"([^"]+)"`)

// friendlier drops the Go type names the library's messages carry.
func friendlier(msg string) string {
	msg = strings.ReplaceAll(msg, "labfile.", "")
	msg = strings.ReplaceAll(msg, "time.Duration", "duration (e.g. 1.5s)")
	return msg
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Path elements address a value of the file: a key (string) or a list
// index (int).
type pathElem = any

// lineOf is the line of the value at path, or of the deepest part of the
// path that exists.
func lineOf(tree *ast.File, path ...pathElem) int {
	if tree == nil || len(tree.Docs) == 0 {
		return 0
	}
	n := tree.Docs[0].Body
	line := 1
	if n != nil && n.GetToken() != nil {
		line = n.GetToken().Position.Line
	}
	for _, p := range path {
		n = unwrap(n)
		switch k := p.(type) {
		case string:
			var found ast.Node
			var keyLine int
			for _, mv := range mappingValues(n) {
				if mv.Key != nil && mv.Key.GetToken() != nil && mv.Key.GetToken().Value == k {
					found, keyLine = mv.Value, mv.Key.GetToken().Position.Line
				}
			}
			if found == nil {
				return line
			}
			n, line = found, keyLine
		case int:
			seq, ok := n.(*ast.SequenceNode)
			if !ok || k < 0 || k >= len(seq.Values) {
				return line
			}
			n = seq.Values[k]
			if tk := n.GetToken(); tk != nil {
				line = tk.Position.Line
			}
		}
	}
	return line
}

func unwrap(n ast.Node) ast.Node {
	for {
		switch v := n.(type) {
		case *ast.TagNode:
			n = v.Value
		case *ast.AnchorNode:
			n = v.Value
		default:
			return n
		}
	}
}

func mappingValues(n ast.Node) []*ast.MappingValueNode {
	switch v := n.(type) {
	case *ast.MappingNode:
		return v.Values
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{v}
	}
	return nil
}
