package rules

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// builtinChains lists the chains each table has without a declaration.
var builtinChains = map[string][]string{
	"filter":   {"INPUT", "FORWARD", "OUTPUT"},
	"nat":      {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	"mangle":   {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"raw":      {"PREROUTING", "OUTPUT"},
	"security": {"INPUT", "FORWARD", "OUTPUT"},
}

func isBuiltin(table, chain string) bool {
	for _, c := range builtinChains[table] {
		if c == chain {
			return true
		}
	}
	return false
}

var (
	chainLineRE = regexp.MustCompile(`^:(\S+)\s+(\S+)(?:\s+\[\d+:\d+\])?$`)
	countsRE    = regexp.MustCompile(`^\[\d+:\d+\]\s+`)
)

// ParseRulesFile reads rules in iptables-save format:
//
//	# comment
//	*filter
//	:INPUT ACCEPT [0:0]
//	:TFO - [0:0]
//	-A FORWARD -p tcp --dport 80 -j TFO
//	-A TFO -m comment --comment "drop it" -j DROP
//	COMMIT
//
// Every returned Rule carries its source Line. A user-defined chain
// (`:NAME - [x:y]`) becomes a chain declaration Rule (nil Spec), which Apply
// creates before the rules that follow it. Built-in chain lines are accepted
// only with policy ACCEPT (the lab never changes a policy; write
// `-A CHAIN -j DROP` instead). Only -A is supported: -I/-D/-F and the other
// commands are errors, as are a -A outside a *table section, an unknown
// table or chain, and a section without COMMIT. Arguments are split like a
// shell does ('single', "double" with backslash escapes); an optional
// leading [packets:bytes] counter (iptables-save -c) is ignored.
func ParseRulesFile(r io.Reader) ([]Rule, error) {
	var (
		rules     []Rule
		table     string
		tableLine int
		declared  map[string]bool
		lineNo    int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		errf := func(format string, a ...any) error {
			return fmt.Errorf("line %d: %s", lineNo, fmt.Sprintf(format, a...))
		}
		switch {
		case strings.HasPrefix(line, "*"):
			if table != "" {
				return nil, errf("*%s before COMMIT of *%s (line %d)", line[1:], table, tableLine)
			}
			name := line[1:]
			if _, ok := builtinChains[name]; !ok {
				return nil, errf("unknown table %q (want filter, nat, mangle, raw or security)", name)
			}
			table, tableLine, declared = name, lineNo, map[string]bool{}
		case line == "COMMIT":
			if table == "" {
				return nil, errf("COMMIT outside a *table section")
			}
			table = ""
		case strings.HasPrefix(line, ":"):
			if table == "" {
				return nil, errf("chain line outside a *table section")
			}
			m := chainLineRE.FindStringSubmatch(line)
			if m == nil {
				return nil, errf("bad chain line %q (want :NAME POLICY [packets:bytes])", line)
			}
			name, policy := m[1], m[2]
			if isBuiltin(table, name) {
				if policy != "ACCEPT" && policy != "-" {
					return nil, errf("policy %s for built-in chain %s not supported (the lab never changes policies; append -A %s -j %s)", policy, name, name, policy)
				}
				continue
			}
			if policy != "-" {
				return nil, errf("user-defined chain %s cannot have policy %s (want -)", name, policy)
			}
			if declared[name] {
				return nil, errf("chain %s declared twice", name)
			}
			declared[name] = true
			rules = append(rules, Rule{Table: table, Chain: name, Line: lineNo})
		default:
			line = countsRE.ReplaceAllString(line, "")
			args, err := shellSplit(line)
			if err != nil {
				return nil, errf("%v", err)
			}
			if len(args) == 0 {
				continue
			}
			switch args[0] {
			case "-A", "--append":
			case "-I", "--insert", "-D", "--delete", "-F", "--flush", "-R", "--replace",
				"-N", "--new-chain", "-X", "--delete-chain", "-P", "--policy", "-Z", "--zero", "-E", "--rename-chain":
				return nil, errf("%s: -I/-D/-F not supported, use -A (and :NAME - [0:0] for chains)", args[0])
			default:
				return nil, errf("unexpected %q (want *table, :CHAIN, -A, COMMIT or # comment)", args[0])
			}
			if table == "" {
				return nil, errf("-A outside a *table section")
			}
			if len(args) < 2 {
				return nil, errf("-A without a chain")
			}
			chain := args[1]
			if !isBuiltin(table, chain) && !declared[chain] {
				return nil, errf("chain %s is neither built into table %s nor declared (:%s - [0:0])", chain, table, chain)
			}
			spec := args[2:]
			if spec == nil {
				spec = []string{}
			}
			for _, a := range spec {
				if a == "-t" || a == "--table" {
					return nil, errf("-t inside a rule; use a *table section")
				}
			}
			rules = append(rules, Rule{Table: table, Chain: chain, Spec: spec, Line: lineNo})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", lineNo+1, err)
	}
	if table != "" {
		return nil, fmt.Errorf("line %d: missing COMMIT for *%s", tableLine, table)
	}
	return rules, nil
}

// shellSplit splits s into words like a POSIX shell (no expansion).
func shellSplit(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\'':
			in = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			in = true
			closed := false
			for i++; i < len(s); i++ {
				if s[i] == '"' {
					closed = true
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if !closed {
				return nil, fmt.Errorf(`unterminated " quote`)
			}
		case c == '\\':
			in = true
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
		default:
			in = true
			cur.WriteByte(c)
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}
