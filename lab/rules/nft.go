package rules

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/tfolab/tfolab/lab"
)

// NFTRuleset is an nftables ruleset as `nft list ruleset` prints it (or an
// `nft -f` script of add/insert commands), read far enough to know what it
// creates (its tables), which families it filters, and which line each rule
// and each DROP policy comes from, so that per-rule packet counts can be
// reported by the user's line numbers. nft itself parses the rules.
type NFTRuleset struct {
	// Text is what ApplyNFT feeds to `nft -f`: the file with its
	// `flush ruleset` statements blanked out (the lab's namespace starts
	// empty, and a flush would also remove the lab's own iptables rules),
	// every line kept in place so nft's line numbers are the file's.
	Text   string
	Tables []NFTTable
	Chains []NFTChain
	Rules  []NFTRule
}

// NFTTable is a table the ruleset declares.
type NFTTable struct {
	Family, Name string
	Line         int
}

// NFTChain is a chain the ruleset declares; base chains have a Hook.
type NFTChain struct {
	Family, Table, Name string
	Line                int
	// Hook is the netfilter hook of a base chain (input, forward, ...).
	Hook string
	// Policy is "drop" for a base chain whose policy drops, at PolicyLine.
	Policy     string
	PolicyLine int
}

// NFTRule is one rule of the ruleset.
type NFTRule struct {
	Family, Table, Chain string
	// Text is the rule as written (whitespace collapsed).
	Text string
	Line int
}

// String is the rule as a person would add it: "nft add rule inet filter
// forward tcp dport 443 accept".
func (r NFTRule) String() string {
	return fmt.Sprintf("nft add rule %s %s %s %s", r.Family, r.Table, r.Chain, r.Text)
}

// Empty reports whether the ruleset holds nothing that filters: no rule
// and no DROP policy.
func (rs NFTRuleset) Empty() bool {
	if len(rs.Rules) > 0 {
		return false
	}
	for _, c := range rs.Chains {
		if c.Policy == "drop" {
			return false
		}
	}
	return true
}

// Covers reports whether the ruleset's tables see packets of family f:
// ip tables IPv4, ip6 tables IPv6, inet and netdev tables both.
func (rs NFTRuleset) Covers(f Family) bool {
	for _, t := range rs.Tables {
		switch t.Family {
		case "inet", "netdev":
			return true
		case "ip":
			if f == lab.IPv4 {
				return true
			}
		case "ip6":
			if f == lab.IPv6 {
				return true
			}
		}
	}
	return false
}

// DropPolicies are the base chains whose policy is drop.
func (rs NFTRuleset) DropPolicies() []NFTChain {
	var out []NFTChain
	for _, c := range rs.Chains {
		if c.Policy == "drop" {
			out = append(out, c)
		}
	}
	return out
}

var nftFamilies = map[string]bool{"ip": true, "ip6": true, "inet": true, "arp": true, "bridge": true, "netdev": true}

// tableObjects are the blocks a table holds besides chains; their content
// is not rules.
var tableObjects = map[string]bool{
	"set": true, "map": true, "flowtable": true, "counter": true, "quota": true, "ct": true,
	"limit": true, "secmark": true, "synproxy": true, "tunnel": true,
}

// iptablesLineRE is the first word of an iptables-save line.
var iptablesLineRE = regexp.MustCompile(`^(\*[a-z]+|:[A-Za-z].*|-A|COMMIT)$`)

// ParseNFT reads an nftables ruleset. It refuses, with a *ParseError naming
// the line, iptables-save syntax (WrongFormat "iptables"), `include` (one
// self-contained ruleset, please), and commands other than table, chain and
// rule declarations (`delete`, `flush table`, `insert ... position`): the
// lab must know which rule is which line.
func ParseNFT(r io.Reader) (NFTRuleset, error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return NFTRuleset{}, err
	}
	p := &nftParser{src: src}
	if err := p.tokenize(); err != nil {
		return NFTRuleset{}, err
	}
	if err := p.top(); err != nil {
		return NFTRuleset{}, err
	}
	text := append([]byte(nil), src...)
	for _, b := range p.blank {
		for i := b[0]; i < b[1]; i++ {
			if text[i] != '\n' {
				text[i] = ' '
			}
		}
	}
	p.rs.Text = string(text)
	return p.rs, nil
}

type nftTokKind int

const (
	tokWord nftTokKind = iota
	tokOpen
	tokClose
	tokEnd // newline or ';'
)

type nftTok struct {
	kind       nftTokKind
	text       string
	line       int
	start, end int // byte offsets in the source
}

type nftParser struct {
	src   []byte
	toks  []nftTok
	pos   int
	rs    NFTRuleset
	blank [][2]int
	// inserted counts, per chain, rules an `insert rule` put first.
	inserted map[string]int
}

func (p *nftParser) errAt(line int, format string, a ...any) error {
	return &ParseError{Line: line, Msg: fmt.Sprintf(format, a...)}
}

// tokenize splits the source into words (a quoted string is one word),
// braces and statement ends; comments and line continuations vanish.
func (p *nftParser) tokenize() error {
	line := 1
	s := p.src
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			p.toks = append(p.toks, nftTok{kind: tokEnd, line: line, start: i, end: i})
			line++
			i++
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n':
			line++
			i += 2
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == ';':
			p.toks = append(p.toks, nftTok{kind: tokEnd, line: line, start: i, end: i + 1})
			i++
		case c == '{':
			p.toks = append(p.toks, nftTok{kind: tokOpen, text: "{", line: line, start: i, end: i + 1})
			i++
		case c == '}':
			p.toks = append(p.toks, nftTok{kind: tokClose, text: "}", line: line, start: i, end: i + 1})
			i++
		default:
			start := i
			for i < len(s) {
				c := s[i]
				if c == '"' {
					j := bytes.IndexByte(s[i+1:], '"')
					if j < 0 || bytes.IndexByte(s[i+1:i+1+j], '\n') >= 0 {
						return p.errAt(line, "unterminated \" quote")
					}
					i += j + 2
					continue
				}
				if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';' || c == '{' || c == '}' || c == '#' {
					break
				}
				i++
			}
			p.toks = append(p.toks, nftTok{kind: tokWord, text: string(s[start:i]), line: line, start: start, end: i})
		}
	}
	return nil
}

func (p *nftParser) peek() (nftTok, bool) {
	if p.pos >= len(p.toks) {
		return nftTok{}, false
	}
	return p.toks[p.pos], true
}

// statement reads words up to the end of a statement (newline or ';'),
// stopping before a '{' or '}' when stopAtBrace, or swallowing balanced
// braces (an anonymous set in a rule) otherwise.
func (p *nftParser) statement(stopAtBrace bool) []nftTok {
	var out []nftTok
	depth := 0
	for p.pos < len(p.toks) {
		t := p.toks[p.pos]
		switch t.kind {
		case tokEnd:
			if depth == 0 {
				p.pos++
				return out
			}
			p.pos++
			continue
		case tokOpen:
			if stopAtBrace && depth == 0 {
				return out
			}
			depth++
		case tokClose:
			if depth == 0 {
				return out
			}
			depth--
		}
		out = append(out, t)
		p.pos++
	}
	return out
}

// skipEnds skips empty statements.
func (p *nftParser) skipEnds() {
	for p.pos < len(p.toks) && p.toks[p.pos].kind == tokEnd {
		p.pos++
	}
}

// skipBlock skips a '{ ... }' block, nested ones included.
func (p *nftParser) skipBlock(line int) error {
	depth := 0
	for p.pos < len(p.toks) {
		switch p.toks[p.pos].kind {
		case tokOpen:
			depth++
		case tokClose:
			depth--
			if depth == 0 {
				p.pos++
				return nil
			}
		}
		p.pos++
	}
	return p.errAt(line, "block opened here is never closed")
}

func words(ts []nftTok) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.text
	}
	return out
}

// familyName splits "[family] name ..." (the family defaults to ip).
func familyName(ws []string) (family string, rest []string) {
	if len(ws) > 0 && nftFamilies[ws[0]] {
		return ws[0], ws[1:]
	}
	return "ip", ws
}

func (p *nftParser) top() error {
	for {
		p.skipEnds()
		t, ok := p.peek()
		if !ok {
			return nil
		}
		if t.kind == tokClose {
			return p.errAt(t.line, "'}' without a block to close")
		}
		if t.kind == tokOpen {
			return p.errAt(t.line, "'{' outside a table")
		}
		if iptablesLineRE.MatchString(t.text) {
			return &ParseError{Line: t.line, WrongFormat: "iptables",
				Msg: fmt.Sprintf("%q is iptables-save syntax, not an nftables ruleset", t.text)}
		}
		st := p.statement(true)
		ws := words(st)
		switch {
		case ws[0] == "table":
			fam, rest := familyName(ws[1:])
			if len(rest) != 1 {
				return p.errAt(t.line, "want `table FAMILY NAME {`")
			}
			if err := p.table(fam, rest[0], t.line, true); err != nil {
				return err
			}
		case len(ws) == 2 && ws[0] == "flush" && ws[1] == "ruleset":
			p.blank = append(p.blank, [2]int{st[0].start, st[1].end})
		case ws[0] == "define" || ws[0] == "redefine" || ws[0] == "undefine":
			if next, ok := p.peek(); ok && next.kind == tokOpen {
				if err := p.skipBlock(t.line); err != nil {
					return err
				}
				p.statement(false)
			}
		case ws[0] == "include":
			return p.errAt(t.line, "include: give one self-contained ruleset (the lab reads no other file)")
		case (ws[0] == "add" || ws[0] == "create" || ws[0] == "insert") && len(ws) >= 2:
			if err := p.command(ws[0], ws[1], st, t.line); err != nil {
				return err
			}
		default:
			return p.errAt(t.line, "%q: want table declarations as `nft list ruleset` prints them (or add table/chain/rule commands)", truncate(strings.Join(ws, " "), 40))
		}
	}
}

// table reads a table body; the '{' is next when block is true.
func (p *nftParser) table(fam, name string, line int, block bool) error {
	if !nftFamilies[fam] {
		return p.errAt(line, "unknown family %q", fam)
	}
	if !p.hasTable(fam, name) {
		p.rs.Tables = append(p.rs.Tables, NFTTable{Family: fam, Name: name, Line: line})
	}
	if !block {
		return nil
	}
	return p.body(line, fmt.Sprintf("table %s %s", fam, name), true, func(t nftTok, _ []nftTok, ws []string) error {
		switch {
		case ws[0] == "chain" && len(ws) == 2:
			return p.chain(fam, name, ws[1], t.line, true)
		case tableObjects[ws[0]]:
			if next, ok := p.peek(); ok && next.kind == tokOpen {
				return p.skipBlock(t.line)
			}
		case ws[0] == "flags" || ws[0] == "comment":
		default:
			return p.errAt(t.line, "%q in table %s %s: want chain, set, map, ... blocks", truncate(strings.Join(ws, " "), 40), fam, name)
		}
		return nil
	})
}

// body reads the `{ ... }` block that follows what (a table or a chain,
// declared at line), handing each statement to each with its first token
// and its words, up to the closing '}'. nested says whether a statement
// may open a block of its own (a table's chain does).
func (p *nftParser) body(line int, what string, nested bool, each func(t nftTok, st []nftTok, ws []string) error) error {
	if t, ok := p.peek(); !ok || t.kind != tokOpen {
		return p.errAt(line, "want `{` after %s", what)
	}
	p.pos++
	for {
		p.skipEnds()
		t, ok := p.peek()
		if !ok {
			return p.errAt(line, "%s is never closed", what)
		}
		if t.kind == tokClose {
			p.pos++
			return nil
		}
		st := p.statement(nested)
		if len(st) == 0 {
			return p.errAt(t.line, "unexpected '{'")
		}
		if err := each(t, st, words(st)); err != nil {
			return err
		}
	}
}

func (p *nftParser) hasTable(fam, name string) bool {
	for _, t := range p.rs.Tables {
		if t.Family == fam && t.Name == name {
			return true
		}
	}
	return false
}

func (p *nftParser) chainIndex(fam, table, name string) int {
	for i, c := range p.rs.Chains {
		if c.Family == fam && c.Table == table && c.Name == name {
			return i
		}
	}
	return -1
}

// chain reads a chain body; the '{' is next when block is true.
func (p *nftParser) chain(fam, table, name string, line int, block bool) error {
	ci := p.chainIndex(fam, table, name)
	if ci < 0 {
		p.rs.Chains = append(p.rs.Chains, NFTChain{Family: fam, Table: table, Name: name, Line: line})
		ci = len(p.rs.Chains) - 1
	}
	if !block {
		return nil
	}
	return p.body(line, "chain "+name, false, func(t nftTok, st []nftTok, ws []string) error {
		switch ws[0] {
		case "type":
			for i := 0; i+1 < len(ws); i++ {
				if ws[i] == "hook" {
					p.rs.Chains[ci].Hook = ws[i+1]
				}
			}
		case "policy":
			if len(ws) != 2 {
				return p.errAt(t.line, "want `policy accept` or `policy drop`")
			}
			if ws[1] == "drop" {
				p.rs.Chains[ci].Policy, p.rs.Chains[ci].PolicyLine = "drop", t.line
			}
		case "comment", "devices", "device", "flags":
		default:
			p.addRule(fam, table, name, st, t.line, false)
		}
		return nil
	})
}

func (p *nftParser) addRule(fam, table, chain string, st []nftTok, line int, insert bool) {
	text := strings.Join(strings.Fields(string(p.src[st[0].start:st[len(st)-1].end])), " ")
	r := NFTRule{Family: fam, Table: table, Chain: chain, Text: text, Line: line}
	if !insert {
		p.rs.Rules = append(p.rs.Rules, r)
		return
	}
	// insert puts the rule first in its chain: before every rule of the
	// chain so far.
	for i, o := range p.rs.Rules {
		if o.Family == fam && o.Table == table && o.Chain == chain {
			p.rs.Rules = append(p.rs.Rules[:i], append([]NFTRule{r}, p.rs.Rules[i:]...)...)
			return
		}
	}
	p.rs.Rules = append(p.rs.Rules, r)
}

// command reads `add|create table|chain|rule ...` and `insert rule ...`.
func (p *nftParser) command(verb, object string, st []nftTok, line int) error {
	ws := words(st[2:])
	fam, rest := familyName(ws)
	switch {
	case object == "table" && verb != "insert":
		if len(rest) != 1 {
			return p.errAt(line, "want `%s table FAMILY NAME`", verb)
		}
		block := false
		if t, ok := p.peek(); ok && t.kind == tokOpen {
			block = true
		}
		if block {
			return p.table(fam, rest[0], line, true)
		}
		return p.table(fam, rest[0], line, false)
	case object == "chain" && verb != "insert":
		if len(rest) < 2 {
			return p.errAt(line, "want `%s chain FAMILY TABLE NAME`", verb)
		}
		if !p.hasTable(fam, rest[0]) {
			return p.errAt(line, "chain %s in table %s %s, which the ruleset has not declared", rest[1], fam, rest[0])
		}
		if t, ok := p.peek(); ok && t.kind == tokOpen {
			return p.chain(fam, rest[0], rest[1], line, true)
		}
		return p.chain(fam, rest[0], rest[1], line, false)
	case object == "rule":
		if len(rest) < 3 {
			return p.errAt(line, "want `%s rule FAMILY TABLE CHAIN STATEMENTS`", verb)
		}
		if p.chainIndex(fam, rest[0], rest[1]) < 0 {
			return p.errAt(line, "rule for chain %s %s %s, which the ruleset has not declared", fam, rest[0], rest[1])
		}
		if rest[2] == "position" || rest[2] == "index" || rest[2] == "handle" {
			return p.errAt(line, "%s rule ... %s: give rules in order (the lab maps them to lines by position)", verb, rest[2])
		}
		// The rule starts after "verb rule [family] table chain".
		skip := 2 + len(ws) - len(rest) + 2
		p.addRule(fam, rest[0], rest[1], st[skip:], line, verb == "insert")
		return nil
	}
	return p.errAt(line, "%s %s: not supported (want table, chain and rule declarations)", verb, object)
}
