// Package firewall is tfolab's firewall check: a user's own ruleset in (an
// iptables-save file for IPv4, an ip6tables-save file for IPv6, an
// nftables ruleset for the families its tables filter), a TFO-safety
// verdict out, per family × client mode × phase.
//
// Load reads and checks the input before anything is built; Validate
// applies it once in a scratch namespace (what iptables or nft refuse is
// bad input too); Run builds one scenario per variant (scenarios.Scenario
// on the Routed topology, the rules placed on the router, the server or
// the client), runs them in parallel through package harness, each in its
// own lab, and classifies every observation into one of the Kinds, naming
// what was lost and which of the user's rules, by line, matched.
package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/rules"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/scenarios"
)

// Input is what a user brings: any combination of the three files, the
// service port and where the ruleset sits.
type Input struct {
	// Rules is an iptables-save file (IPv4), Rules6 an ip6tables-save file
	// (IPv6), NFT an `nft list ruleset` file; "" when not given.
	Rules  string `json:"rules,omitempty"`
	Rules6 string `json:"rules6,omitempty"`
	NFT    string `json:"nft,omitempty"`
	// Port is the service port the lab's server listens on; 0 is
	// scenarios.ServicePort.
	Port uint16 `json:"port"`
	// Place is where the ruleset sits: in the path (the router, FORWARD
	// sees the traffic) or on the server's or the client's own host.
	Place middlebox.Placement `json:"-"`
}

// knob names the input a file came in by, for messages a user of the
// command line (--rules) and of make (RULES=) both read.
type knob struct {
	name, flag, env string
}

var (
	knobRules  = knob{"IPv4 rules", "--rules", "RULES"}
	knobRules6 = knob{"IPv6 rules", "--rules6", "RULES6"}
	knobNFT    = knob{"nft ruleset", "--nft", "NFT"}
)

func (k knob) String() string { return fmt.Sprintf("%s (%s, %s=)", k.name, k.flag, k.env) }

// BadInput is input the check refuses before any namespace exists (or, for
// a rule iptables or nft refuses, after a scratch namespace that is gone
// again): one line naming the file and, where there is one, the line.
type BadInput struct{ msg string }

func (e *BadInput) Error() string { return e.msg }

func badInput(format string, a ...any) error {
	return &BadInput{fmt.Sprintf(format, a...)}
}

// IsBadInput reports whether err is a BadInput.
func IsBadInput(err error) bool {
	var b *BadInput
	return errors.As(err, &b)
}

// ParsePlace reads a placement: router, server or client.
func ParsePlace(s string) (middlebox.Placement, error) {
	switch s {
	case "", "router":
		return middlebox.Router, nil
	case "server":
		return middlebox.ServerSide, nil
	case "client":
		return middlebox.ClientSide, nil
	}
	return 0, badInput("place %q: want router (in the path), server or client (on that host)", s)
}

// PlaceName is the word ParsePlace reads.
func PlaceName(p middlebox.Placement) string {
	switch p {
	case middlebox.ServerSide:
		return "server"
	case middlebox.ClientSide:
		return "client"
	}
	return "router"
}

// Check is an input that Load accepted: the parsed files, ready to run.
type Check struct {
	Input Input
	v4    *source
	v6    *source
	nft   *source
}

// source is one file as a middlebox.
type source struct {
	knob  knob
	path  string
	label string // file name, the middlebox's name
	ipt   *rules.Ruleset
	nft   *rules.NFTRuleset
}

func (s *source) covers(f lab.Family) bool {
	if s == nil {
		return false
	}
	if s.nft != nil {
		return s.nft.Covers(f)
	}
	return s.ipt.Family == f
}

func (s *source) box() middlebox.Middlebox {
	if s.nft != nil {
		return middlebox.CustomNFT(*s.nft, s.label)
	}
	return middlebox.CustomRuleset(*s.ipt, s.label)
}

// Load reads and checks the input: every given file exists, is not empty,
// parses, holds rules, is in the format and family of its knob, and the
// files do not fight over an iptables table. It builds nothing: every
// error is a *BadInput of one line.
func Load(in Input) (*Check, error) {
	if in.Port == 0 {
		in.Port = scenarios.ServicePort
	}
	switch in.Place {
	case middlebox.Router, middlebox.ServerSide, middlebox.ClientSide:
	default:
		return nil, badInput("place %d: want router, server or client", int(in.Place))
	}
	if in.Rules == "" && in.Rules6 == "" && in.NFT == "" {
		return nil, badInput("no ruleset given: want at least one of %s, %s, %s", knobRules, knobRules6, knobNFT)
	}
	c := &Check{Input: in}
	var err error
	if in.Rules != "" {
		if c.v4, err = loadIPTables(knobRules, in.Rules, lab.IPv4); err != nil {
			return nil, err
		}
	}
	if in.Rules6 != "" {
		if c.v6, err = loadIPTables(knobRules6, in.Rules6, lab.IPv6); err != nil {
			return nil, err
		}
	}
	if in.NFT != "" {
		if c.nft, err = loadNFT(in.NFT); err != nil {
			return nil, err
		}
		if err := c.tableClash(); err != nil {
			return nil, err
		}
	}
	if c.v4 != nil && c.v6 != nil && c.v4.label == c.v6.label {
		c.v6.label += "6" // two files of one name: keep their hit counts apart
	}
	return c, nil
}

func readInput(k knob, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, badInput("%s %s: no such file", k, path)
	case err != nil:
		return nil, badInput("%s %s: %v", k, path, errors.Unwrap(err))
	case len(bytes.TrimSpace(b)) == 0:
		return nil, badInput("%s %s: the file is empty", k, path)
	}
	return b, nil
}

// parseFailure turns a parse error into the one line, with the knob the
// file belongs to when it is of another family or format.
func parseFailure(k knob, path string, err error) error {
	msg := fmt.Sprintf("%s %s: %v", k, path, err)
	var pe *rules.ParseError
	if errors.As(err, &pe) {
		switch {
		case pe.WrongFamily == lab.IPv6:
			msg += fmt.Sprintf(": give it as the %s", knobRules6)
		case pe.WrongFamily == lab.IPv4:
			msg += fmt.Sprintf(": give it as the %s", knobRules)
		case pe.WrongFormat == "nft":
			msg += fmt.Sprintf(": give it as the %s", knobNFT)
		case pe.WrongFormat == "iptables":
			msg += fmt.Sprintf(": give it as the %s or the %s", knobRules, knobRules6)
		}
	}
	return badInput("%s", msg)
}

func loadIPTables(k knob, path string, f lab.Family) (*source, error) {
	b, err := readInput(k, path)
	if err != nil {
		return nil, err
	}
	rs, err := rules.ParseRuleset(bytes.NewReader(b), f)
	if err != nil {
		return nil, parseFailure(k, path, err)
	}
	if rs.Empty() {
		return nil, badInput("%s %s: no rules (nothing but comments, chain declarations and ACCEPT policies): nothing to check", k, path)
	}
	return &source{knob: k, path: path, label: filepath.Base(path), ipt: &rs}, nil
}

func loadNFT(path string) (*source, error) {
	b, err := readInput(knobNFT, path)
	if err != nil {
		return nil, err
	}
	rs, err := rules.ParseNFT(bytes.NewReader(b))
	if err != nil {
		return nil, parseFailure(knobNFT, path, err)
	}
	if rs.Empty() {
		return nil, badInput("%s %s: no rules and no drop policy: nothing to check", knobNFT, path)
	}
	if !rs.Covers(lab.IPv4) && !rs.Covers(lab.IPv6) {
		return nil, badInput("%s %s: line %d: no table of family ip, ip6, inet or netdev: nothing that filters IPv4 or IPv6", knobNFT, path, rs.Tables[0].Line)
	}
	return &source{knob: knobNFT, path: path, label: filepath.Base(path), nft: &rs}, nil
}

// tableClash refuses an nft table of the name iptables (nf_tables backend)
// keeps a given iptables file's rules in: both would edit one table, and
// neither teardown could remove only its own.
func (c *Check) tableClash() error {
	iptFamily := map[lab.Family]string{lab.IPv4: "ip", lab.IPv6: "ip6"}
	for _, s := range []*source{c.v4, c.v6} {
		if s == nil {
			continue
		}
		used := map[string]bool{}
		for _, r := range s.ipt.Rules {
			used[r.Table] = true
		}
		for _, p := range s.ipt.Policies {
			used[p.Table] = true
		}
		for _, t := range c.nft.nft.Tables {
			if t.Family == iptFamily[s.ipt.Family] && used[t.Name] {
				return badInput("%s %s: line %d: table %s %s is where iptables keeps the %s: check the two files one at a time, or rename the nft table",
					knobNFT, c.nft.path, t.Line, t.Family, t.Name, s.knob)
			}
		}
	}
	return nil
}

// Families are the families some file covers, IPv4 first.
func (c *Check) Families() []lab.Family {
	var out []lab.Family
	for _, f := range []lab.Family{lab.IPv4, lab.IPv6} {
		if c.boxes(f) != nil {
			out = append(out, f)
		}
	}
	return out
}

// NoRules are the families no file covers: reported as "no rules given",
// never tested with another family's rules.
func (c *Check) NoRules() []lab.Family {
	var out []lab.Family
	for _, f := range []lab.Family{lab.IPv4, lab.IPv6} {
		if c.boxes(f) == nil {
			out = append(out, f)
		}
	}
	return out
}

// sources are the files that filter family f: its iptables file, then the
// nft ruleset if its tables see f. The nft ruleset goes first into a
// namespace (see boxes).
func (c *Check) sources(f lab.Family) []*source {
	var out []*source
	for _, s := range []*source{c.v4, c.v6, c.nft} {
		if s.covers(f) {
			out = append(out, s)
		}
	}
	return out
}

// boxes are the middleboxes of family f, nft first: a ruleset loaded after
// iptables rules could not be told apart from their tables.
func (c *Check) boxes(f lab.Family) []middlebox.Middlebox {
	var out []middlebox.Middlebox
	srcs := c.sources(f)
	for i := len(srcs) - 1; i >= 0; i-- {
		out = append(out, srcs[i].box())
	}
	return out
}

// Describe is the input in one line: which file covers what, where, port.
func (c *Check) Describe() string {
	var parts []string
	for _, s := range []*source{c.v4, c.v6, c.nft} {
		if s == nil {
			continue
		}
		var fams []string
		for _, f := range []lab.Family{lab.IPv4, lab.IPv6} {
			if s.covers(f) {
				fams = append(fams, f.String())
			}
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", s.path, strings.Join(fams, "+")))
	}
	where := map[middlebox.Placement]string{
		middlebox.Router:     "in the path (router, forwarding)",
		middlebox.ServerSide: "on the server's host",
		middlebox.ClientSide: "on the client's host",
	}[c.Input.Place]
	return fmt.Sprintf("%s %s, service port %d", strings.Join(parts, ", "), where, c.Input.Port)
}

// Validate applies every file once in a scratch namespace of a lab of its
// own, the way Run will, so that a rule iptables or nft refuses is bad
// input (one line: file, line, the tool's reason) before any lab is built;
// the scratch lab is torn down either way, and nothing of it may remain.
// It needs root.
func (c *Check) Validate(ctx context.Context) (err error) {
	l := lab.New()
	defer func() {
		cerr := l.Close()
		names, lerr := lab.ListNamespaces()
		for _, n := range names {
			if strings.Contains(n, l.ID) {
				cerr = errors.Join(cerr, fmt.Errorf("namespace %s left behind", n))
			}
		}
		if cerr = errors.Join(cerr, lerr); cerr != nil {
			err = errors.Join(err, fmt.Errorf("firewall: scratch namespace teardown: %w", cerr))
		}
	}()
	ns, err := l.AddNamespace("fwcheck")
	if err != nil {
		return fmt.Errorf("firewall: scratch namespace: %w", err)
	}
	if c.nft != nil {
		if err := rules.NFTAvailable(); err != nil {
			return fmt.Errorf("firewall: %s %s: %w", c.nft.knob, c.nft.path, err)
		}
		if _, err := rules.ApplyNFT(ctx, l, ns, *c.nft.nft); err != nil {
			var ne *rules.NFTError
			if errors.As(err, &ne) {
				return badInput("%s %s: %v", c.nft.knob, c.nft.path, ne)
			}
			return fmt.Errorf("firewall: %s %s: %w", c.nft.knob, c.nft.path, err)
		}
	}
	for _, s := range []*source{c.v4, c.v6} {
		if s == nil {
			continue
		}
		// One transaction; a refusal names its rule, and so its line.
		if err := rules.Apply(l, ns, s.ipt.Family, s.ipt.Rules); err != nil {
			var re *rules.RuleError
			if errors.As(err, &re) {
				return badInput("%s %s: line %d: %s refuses `%s`: %s", s.knob, s.path, re.Rule.Line, rules.Program(s.ipt.Family), re.Rule.String(), re.Reason)
			}
			return fmt.Errorf("firewall: %s %s: %w", s.knob, s.path, err)
		}
		for _, p := range s.ipt.Policies {
			if err := rules.ApplyPolicies(l, ns, s.ipt.Family, []rules.Policy{p}); err != nil {
				return badInput("%s %s: line %d: %s refuses `%s`: %s", s.knob, s.path, p.Line, rules.Program(s.ipt.Family), p.String(), iptablesReason(err))
			}
		}
	}
	return nil
}

var (
	exitStatusRE = regexp.MustCompile(`exit status \d+: `)
	toolPrefixRE = regexp.MustCompile(`^ip6?tables(-restore)? v[\d.]+ \([^)]*\):\s*`)
)

// iptablesReason is the line of iptables' own output that says why.
func iptablesReason(err error) string {
	s := err.Error()
	if locs := exitStatusRE.FindAllStringIndex(s, -1); locs != nil {
		s = s[locs[len(locs)-1][1]:]
	}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(toolPrefixRE.ReplaceAllString(strings.TrimSpace(line), ""))
		if line == "" || strings.HasPrefix(line, "Warning:") || strings.HasPrefix(line, "Try `") {
			continue
		}
		return line
	}
	return strings.TrimSpace(s)
}
