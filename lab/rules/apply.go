package rules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/cost"
)

// TagPrefix starts the comment Apply attaches to every rule it installs
// (`-m comment --comment tfolab:<hash>`), so that Counters can find the
// rule's line whatever form iptables prints it in, and a human reading
// iptables-save can tell lab rules apart.
const TagPrefix = "tfolab:"

// Tag is the comment Apply attaches to r: TagPrefix plus a hash of the
// rule's table, chain and spec.
func (r Rule) Tag() string {
	h := sha256.New()
	h.Write([]byte(r.Table + "\x00" + r.Chain))
	for _, s := range r.Spec {
		h.Write([]byte("\x00" + s))
	}
	return TagPrefix + hex.EncodeToString(h.Sum(nil)[:6])
}

// installed is the spec as Apply installs it: the tag goes just before the
// target (-j/-g), or at the end if there is none.
func (r Rule) installed() []string {
	tag := []string{"-m", "comment", "--comment", r.Tag()}
	for i, s := range r.Spec {
		if s == "-j" || s == "--jump" || s == "-g" || s == "--goto" {
			out := append(append(append([]string{}, r.Spec[:i]...), tag...), r.Spec[i:]...)
			return out
		}
	}
	return append(append([]string{}, r.Spec...), tag...)
}

// commandTimeout bounds one iptables-restore or iptables-save run.
const commandTimeout = 10 * time.Second

// iptablesRun runs the family's iptables-restore (with stdin) or
// iptables-save inside ns and returns its stdout; stderr goes into the
// error.
func iptablesRun(ns *lab.Namespace, f Family, tool string, stdin []byte, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	name := Program(f) + tool
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Started on the namespace's locked thread, the child lands in it.
	err := ns.Do(cmd.Run)
	cost.Record(ctx, name, cmd.ProcessState)
	if err != nil {
		return stdout.Bytes(), &restoreError{tool: name, err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), nil
}

// restoreError is a failed iptables-restore or -save: its exit and what it
// said, with the input line it refused when it named one.
type restoreError struct {
	tool   string
	err    error
	stderr string
}

func (e *restoreError) Error() string { return fmt.Sprintf("%s: %v: %s", e.tool, e.err, e.stderr) }

// errorLineRE finds the input line in iptables-restore's complaints:
// "Error occurred at line: N" (a line it could not parse or, with the
// nf_tables backend, the COMMIT whose transaction the kernel refused),
// legacy's "line N failed", nf_tables' "line N: RULE_APPEND failed ...".
var errorLineRE = regexp.MustCompile(`(?m)^Error occurred at line: (\d+)|line (\d+) failed|^line (\d+): `)

// line is the input line iptables-restore refused, 0 if it named none.
func (e *restoreError) line() int {
	m := errorLineRE.FindStringSubmatch(e.stderr)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1] + m[2] + m[3])
	return n
}

var (
	toolPrefixRE = regexp.MustCompile(`^ip6?tables-restore v[\d.]+ \([^)]*\):\s*`)
	linePrefixRE = regexp.MustCompile(`^line \d+: `)
)

// reason is iptables' own words, without its name and version, the
// "Error occurred" and "Try" lines, or input line numbers (they count the
// lab's input, not the user's file).
func (e *restoreError) reason() string {
	var keep []string
	for _, l := range strings.Split(e.stderr, "\n") {
		l = linePrefixRE.ReplaceAllString(toolPrefixRE.ReplaceAllString(strings.TrimSpace(l), ""), "")
		if l == "" || strings.HasPrefix(l, "Error occurred at line") || strings.HasPrefix(l, "Try `") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "; ")
}

// restoreQuote quotes an argument for iptables-restore's own tokenizer
// (double quotes, backslash escapes).
func restoreQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// batch is one table's iptables-restore input and, for each of its lines,
// the index of the rule it came from (-1 for the table and COMMIT lines).
type batch struct {
	table string
	text  bytes.Buffer
	from  []int
}

func (b *batch) line(rule int, args ...string) {
	for i, a := range args {
		if i > 0 {
			b.text.WriteByte(' ')
		}
		b.text.WriteString(restoreQuote(a))
	}
	b.text.WriteByte('\n')
	b.from = append(b.from, rule)
}

// batches groups rules by table, in the order each table first appears;
// install says whether they are added (-N, -A) or removed (-D, -X, in
// reverse so rules go before the chains they jump to).
func batches(rules []Rule, install bool) []*batch {
	var out []*batch
	byTable := map[string]*batch{}
	order := make([]int, len(rules))
	for i := range rules {
		order[i] = i
	}
	if !install {
		slices.Reverse(order)
	}
	for _, i := range order {
		r := rules[i]
		b := byTable[r.Table]
		if b == nil {
			b = &batch{table: r.Table}
			b.line(-1, "*"+r.Table)
			byTable[r.Table] = b
			out = append(out, b)
		}
		switch {
		case r.IsChain() && install:
			b.line(i, "-N", r.Chain)
		case r.IsChain():
			b.line(i, "-X", r.Chain)
		case install:
			b.line(i, append([]string{"-A", r.Chain}, r.installed()...)...)
		default:
			b.line(i, append([]string{"-D", r.Chain}, r.installed()...)...)
		}
	}
	for _, b := range out {
		b.line(-1, "COMMIT")
	}
	return out
}

// restore applies one batch with iptables-restore --noflush: a table's
// batch is one transaction, so a refused line leaves none of it applied.
// The error names the rule of the refused line.
func (b *batch) restore(ns *lab.Namespace, f Family, rules []Rule) error {
	_, err := iptablesRun(ns, f, "-restore", b.text.Bytes(), "--noflush")
	if err == nil {
		return nil
	}
	var re *restoreError
	if !errors.As(err, &re) {
		return err
	}
	if n := re.line(); n >= 1 && n <= len(b.from) && b.from[n-1] >= 0 {
		i := b.from[n-1]
		return &RuleError{Index: i, Rule: rules[i], Reason: re.reason()}
	}
	// The kernel refused the transaction as a whole (a jump to a chain
	// that does not exist, bytecode the match rejects): find the rule by
	// applying the batch's rules one transaction each, then take them out.
	return b.locate(ns, f, rules, err)
}

// locate finds the first rule of a refused batch that is refused on its
// own; the rules before it are removed again. Only the error path pays
// for its program runs.
func (b *batch) locate(ns *lab.Namespace, f Family, rules []Rule, whole error) error {
	var applied []int
	defer func() {
		for k := len(applied) - 1; k >= 0; k-- {
			i := applied[k]
			_ = batches([]Rule{rules[i]}, false)[0].restoreSingle(ns, f)
		}
	}()
	for _, i := range b.from {
		if i < 0 {
			continue
		}
		one := batches([]Rule{rules[i]}, true)[0]
		err := one.restoreSingle(ns, f)
		var re *restoreError
		if errors.As(err, &re) {
			return &RuleError{Index: i, Rule: rules[i], Reason: re.reason()}
		}
		if err != nil {
			return err
		}
		applied = append(applied, i)
	}
	return whole
}

func (b *batch) restoreSingle(ns *lab.Namespace, f Family) error {
	_, err := iptablesRun(ns, f, "-restore", b.text.Bytes(), "--noflush")
	return err
}

// RuleError is a rule iptables refused: its index in the list Apply was
// given, and iptables' own words.
type RuleError struct {
	Index  int
	Rule   Rule
	Reason string
}

func (e *RuleError) Error() string { return describe(e.Index, e.Rule) + ": " + e.Reason }

func describe(i int, r Rule) string {
	s := fmt.Sprintf("rule %d (%s)", i+1, r.String())
	if r.Line > 0 {
		s = fmt.Sprintf("line %d: %s", r.Line, s)
	}
	return s
}

// undo runs its function at most once, so rules removed by Apply's
// rollback are not removed again when the Lab closes.
type undo struct {
	mu   sync.Mutex
	done bool
	fn   func() error
}

func (u *undo) run() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil
	}
	u.done = true
	return u.fn()
}

// Apply installs rules in ns, in order, with iptables-restore --noflush
// (ip6tables-restore for IPv6) run inside the namespace: one transaction,
// and one program run, per table. Each rule is appended (-A) with a
// `-m comment --comment tfolab:<hash>` tag before its target; a Rule with a
// nil Spec creates a user-defined chain (-N). The removal of each table's
// rules and chains (one more restore, deleting in reverse order) is
// registered with l right after the table's rules exist (Lab.DeferIn: when
// l owns ns, the namespace's deletion takes them and no program runs).
//
// If a table's transaction is refused, nothing of it is applied, the
// tables this call already applied are removed, and the error names the
// refused rule (and its source line).
func Apply(l *lab.Lab, ns *lab.Namespace, f Family, rules []Rule) error {
	if ns == nil {
		return errors.New("rules: apply: nil namespace")
	}
	if f != lab.IPv4 && f != lab.IPv6 {
		return fmt.Errorf("rules: apply: family %d: want 4 or 6", int(f))
	}
	removals := batches(rules, false)
	var added []*undo
	var err error
	for _, b := range batches(rules, true) {
		if err = b.restore(ns, f, rules); err != nil {
			break
		}
		var rm *batch
		for _, r := range removals {
			if r.table == b.table {
				rm = r
			}
		}
		u := &undo{fn: func() error {
			if err := rm.restore(ns, f, rules); err != nil {
				return fmt.Errorf("remove the lab's %s rules in %s: %w", rm.table, ns.Name, err)
			}
			return nil
		}}
		added = append(added, u)
		l.DeferIn(ns, fmt.Sprintf("%s-restore: remove %d %s rules in %s", Program(f), len(rm.from)-2, b.table, ns.Name), u.run)
	}
	if err == nil {
		return nil
	}
	err = fmt.Errorf("rules: apply with %s-restore: %w", Program(f), err)
	var errs []error
	for i := len(added) - 1; i >= 0; i-- {
		if e := added[i].run(); e != nil {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w (rollback also failed: %w)", err, errors.Join(errs...))
	}
	return err
}

// saved is one table of `iptables-save -c`: each rule line with its packet
// count, and each built-in chain's policy with its own.
type saved struct {
	rules    []savedRule
	policies map[string]savedPolicy
}

type savedRule struct {
	line    string
	packets uint64
}

type savedPolicy struct {
	target  string
	packets uint64
}

var (
	savedRuleRE   = regexp.MustCompile(`^\[(\d+):\d+\] (-A .*)$`)
	savedPolicyRE = regexp.MustCompile(`^:(\S+) (\S+) \[(\d+):\d+\]$`)
)

// saves reads each table of a namespace once, on first use.
type saves struct {
	ns     *lab.Namespace
	f      Family
	tables map[string]saved
}

func (s *saves) table(name string) (saved, error) {
	if t, ok := s.tables[name]; ok {
		return t, nil
	}
	t, err := save(s.ns, s.f, name)
	if err != nil {
		return saved{}, err
	}
	if s.tables == nil {
		s.tables = map[string]saved{}
	}
	s.tables[name] = t
	return t, nil
}

// save reads one table of ns with `iptables-save -c -t table`.
func save(ns *lab.Namespace, f Family, table string) (saved, error) {
	out, err := iptablesRun(ns, f, "-save", nil, "-c", "-t", table)
	if err != nil {
		return saved{}, err
	}
	return parseSaved(out), nil
}

func parseSaved(out []byte) saved {
	s := saved{policies: map[string]savedPolicy{}}
	for _, line := range strings.Split(string(out), "\n") {
		if m := savedRuleRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			s.rules = append(s.rules, savedRule{m[2], n})
		} else if m := savedPolicyRE.FindStringSubmatch(line); m != nil && m[2] != "-" {
			n, _ := strconv.ParseUint(m[3], 10, 64)
			s.policies[m[1]] = savedPolicy{m[2], n}
		}
	}
	return s
}

// Counters returns, for each rule, the number of packets it matched so far,
// read with one `iptables-save -c` per table inside ns and found by the
// rule's tag. Chain declarations count 0. A rule that is not installed
// (not by Apply, or already removed) is an error.
func Counters(ns *lab.Namespace, f Family, rules []Rule) ([]uint64, error) {
	return savedCounts(ns, f, "counters", len(rules), func(i int, s *saves) (uint64, error) {
		r := rules[i]
		if r.IsChain() {
			return 0, nil
		}
		t, err := s.table(r.Table)
		if err != nil {
			return 0, err
		}
		// The tag is quoted or not, as iptables-save pleases: match the
		// word itself.
		tag := r.Tag()
		for _, sr := range t.rules {
			if strings.Contains(sr.line, tag) {
				return sr.packets, nil
			}
		}
		return 0, fmt.Errorf("%s: not installed", describe(i, r))
	})
}

// savedCounts reads n packet counts from ns's `iptables-save -c` output,
// each table read once: count(i, s) finds item i's. what names the
// reading in its errors.
func savedCounts(ns *lab.Namespace, f Family, what string, n int, count func(i int, s *saves) (uint64, error)) ([]uint64, error) {
	if ns == nil {
		return nil, fmt.Errorf("rules: %s: nil namespace", what)
	}
	out := make([]uint64, n)
	s := &saves{ns: ns, f: f}
	for i := range out {
		c, err := count(i, s)
		if err != nil {
			return nil, fmt.Errorf("rules: %s: %w", what, err)
		}
		out[i] = c
	}
	return out, nil
}

// ApplyRuleset installs rs in ns: its rules and chains with Apply, then its
// policies with ApplyPolicies (last, so a DROP policy never stands without
// the ACCEPT rules before it). Everything is on l's cleanup stack as soon as
// it exists; after a failure the caller closes l to remove the rest.
func ApplyRuleset(l *lab.Lab, ns *lab.Namespace, rs Ruleset) error {
	if err := Apply(l, ns, rs.Family, rs.Rules); err != nil {
		return err
	}
	return ApplyPolicies(l, ns, rs.Family, rs.Policies)
}

// ApplyPolicies sets each built-in chain's policy in ns (`-P CHAIN TARGET`
// through iptables-restore, one transaction per table) and registers the
// restore of the policies it replaced with l right after (Lab.DeferIn), so
// Close puts them back before the rules are removed. The namespace is
// the lab's own: the host's policies are never touched.
func ApplyPolicies(l *lab.Lab, ns *lab.Namespace, f Family, ps []Policy) error {
	if ns == nil {
		return errors.New("rules: policies: nil namespace")
	}
	var tables []string
	byTable := map[string][]int{}
	for i, p := range ps {
		if _, ok := byTable[p.Table]; !ok {
			tables = append(tables, p.Table)
		}
		byTable[p.Table] = append(byTable[p.Table], i)
	}
	for _, table := range tables {
		before, err := save(ns, f, table)
		if err != nil {
			return fmt.Errorf("rules: policies with %s: %w", Program(f), err)
		}
		set, back := &batch{table: table}, &batch{table: table}
		set.line(-1, "*"+table)
		back.line(-1, "*"+table)
		for _, i := range byTable[table] {
			p := ps[i]
			prev, ok := before.policies[p.Chain]
			if !ok {
				return fmt.Errorf("rules: policies: line %d: %s: %s has no built-in chain %s", p.Line, p, table, p.Chain)
			}
			set.line(i, "-P", p.Chain, p.Target)
			back.line(i, "-P", p.Chain, prev.target)
		}
		set.line(-1, "COMMIT")
		back.line(-1, "COMMIT")
		if err := set.restorePolicies(ns, f, ps); err != nil {
			return fmt.Errorf("rules: policies with %s-restore: %w", Program(f), err)
		}
		u := &undo{fn: func() error { return back.restorePolicies(ns, f, ps) }}
		l.DeferIn(ns, fmt.Sprintf("%s-restore: put back the %s policies in %s", Program(f), table, ns.Name), u.run)
	}
	return nil
}

func (b *batch) restorePolicies(ns *lab.Namespace, f Family, ps []Policy) error {
	_, err := iptablesRun(ns, f, "-restore", b.text.Bytes(), "--noflush")
	var re *restoreError
	if errors.As(err, &re) {
		if n := re.line(); n >= 1 && n <= len(b.from) && b.from[n-1] >= 0 {
			p := ps[b.from[n-1]]
			return fmt.Errorf("line %d: %s: %s", p.Line, p, re.reason())
		}
	}
	return err
}

// PolicyCounters returns, for each policy, the packets it decided: the
// chain's own counters (`iptables-save -c` prints them on the chain's
// line), i.e. the packets that fell off the end of the chain.
func PolicyCounters(ns *lab.Namespace, f Family, ps []Policy) ([]uint64, error) {
	return savedCounts(ns, f, "policy counters", len(ps), func(i int, s *saves) (uint64, error) {
		p := ps[i]
		t, err := s.table(p.Table)
		if err != nil {
			return 0, err
		}
		sp, ok := t.policies[p.Chain]
		if !ok {
			return 0, fmt.Errorf("line %d: %s: no policy line", p.Line, p)
		}
		return sp.packets, nil
	})
}
