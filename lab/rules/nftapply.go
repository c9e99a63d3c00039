package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab/cost"

	"github.com/tfolab/tfolab/lab"
)

// NFTError is a ruleset nft refuses: the line (0 if nft named none) and
// nft's own message.
type NFTError struct {
	Line int
	Msg  string
}

func (e *NFTError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: nft refuses it: %s", e.Line, e.Msg)
	}
	return "nft refuses it: " + e.Msg
}

var nftErrorRE = regexp.MustCompile(`(?m)^/dev/stdin:(\d+):[\d-]+: Error: (.*)$`)

// nftRefusal condenses nft's error output to its first error and line.
func nftRefusal(out []byte) *NFTError {
	if m := nftErrorRE.FindSubmatch(out); m != nil {
		line, _ := strconv.Atoi(string(m[1]))
		return &NFTError{Line: line, Msg: strings.TrimSpace(string(m[2]))}
	}
	msg := strings.TrimSpace(string(out))
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return &NFTError{Msg: strings.TrimPrefix(msg, "Error: ")}
}

// NFTCommandTimeout bounds each nft invocation.
const NFTCommandTimeout = 10 * time.Second

// NFTAvailable reports whether the nft program is installed.
func NFTAvailable() error {
	if _, err := exec.LookPath("nft"); err != nil {
		return errors.New("nft is not installed (Debian: apt-get install nftables, or `make deps`)")
	}
	return nil
}

// runNFT runs nft inside ns with stdin, returning its stdout; stderr goes
// into the error.
func runNFT(ctx context.Context, ns *lab.Namespace, stdin []byte, args ...string) ([]byte, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, NFTCommandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "nft", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Started on the namespace's locked thread, the child lands in it.
	err := ns.Do(cmd.Run)
	cost.Record(ctx, "nft", cmd.ProcessState)
	if err != nil {
		return stdout.Bytes(), stderr.Bytes(), fmt.Errorf("nft %s in %s: %w: %s", strings.Join(args, " "), ns.Name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), stderr.Bytes(), nil
}

// NFTInstalled is a ruleset ApplyNFT put in place, with a counter on every
// rule and one at the end of every base chain whose policy drops.
type NFTInstalled struct {
	ns *lab.Namespace
	rs NFTRuleset
}

// policyComment marks the counter-only rule ApplyNFT appends to a base
// chain whose policy drops: what reaches it is what the policy drops.
const policyComment = "tfolab:policy"

// ApplyNFT loads rs into ns with `nft -f`, atomically, after checking that
// none of its tables exists there yet; pushes the deletion of each table it
// created onto l's cleanup stack right away (and nothing else: other
// tables, the lab's iptables rules among them, stay); then adds an
// anonymous counter to every rule that has none (before its verdict, so it
// counts what the rule matched) and a counter-only rule at the end of every
// base chain whose policy drops, so Counters can say how many packets each
// rule, and each policy, saw. A ruleset nft refuses is an *NFTError naming
// the line.
func ApplyNFT(ctx context.Context, l *lab.Lab, ns *lab.Namespace, rs NFTRuleset) (*NFTInstalled, error) {
	if ns == nil {
		return nil, errors.New("rules: nft: nil namespace")
	}
	if err := NFTAvailable(); err != nil {
		return nil, err
	}
	existing, err := nftTables(ctx, ns)
	if err != nil {
		return nil, err
	}
	for _, t := range rs.Tables {
		if existing[t.Family+" "+t.Name] {
			return nil, fmt.Errorf("rules: nft: line %d: table %s %s already exists in %s: the lab would not know which rules to remove", t.Line, t.Family, t.Name, ns.Name)
		}
	}
	if _, stderr, err := runNFT(ctx, ns, []byte(rs.Text), "-f", "-"); err != nil {
		if len(stderr) > 0 {
			return nil, nftRefusal(stderr)
		}
		return nil, err
	}
	for _, t := range rs.Tables {
		l.DeferIn(ns, fmt.Sprintf("nft table %s %s in %s", t.Family, t.Name, ns.Name), func() error {
			_, _, err := runNFT(context.Background(), ns, nil, "delete", "table", t.Family, t.Name)
			return err
		})
	}
	in := &NFTInstalled{ns: ns, rs: rs}
	if err := in.addCounters(ctx); err != nil {
		return nil, fmt.Errorf("rules: nft: add counters: %w", err)
	}
	return in, nil
}

func nftTables(ctx context.Context, ns *lab.Namespace) (map[string]bool, error) {
	out, _, err := runNFT(ctx, ns, nil, "-j", "list", "tables")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []struct {
			Table *struct{ Family, Name string } `json:"table"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("nft -j list tables: %w", err)
	}
	m := map[string]bool{}
	for _, e := range doc.Nftables {
		if e.Table != nil {
			m[e.Table.Family+" "+e.Table.Name] = true
		}
	}
	return m, nil
}

// nftRuleJSON is a rule of `nft -j list ruleset`; Expr is kept raw, so a
// replace sends back exactly what nft listed.
type nftRuleJSON struct {
	Family  string            `json:"family"`
	Table   string            `json:"table"`
	Chain   string            `json:"chain"`
	Handle  int               `json:"handle,omitempty"`
	Comment string            `json:"comment,omitempty"`
	Expr    []json.RawMessage `json:"expr"`
}

func (r nftRuleJSON) chainKey() string { return r.Family + " " + r.Table + " " + r.Chain }

func (r NFTRule) chainKey() string { return r.Family + " " + r.Table + " " + r.Chain }

func (c NFTChain) key() string { return c.Family + " " + c.Table + " " + c.Name }

// listRules returns the rules of rs's tables as nft lists them, by chain.
func (in *NFTInstalled) listRules(ctx context.Context) (map[string][]nftRuleJSON, error) {
	out, _, err := runNFT(ctx, in.ns, nil, "-j", "list", "ruleset")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []struct {
			Rule *nftRuleJSON `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("nft -j list ruleset: %w", err)
	}
	ours := map[string]bool{}
	for _, t := range in.rs.Tables {
		ours[t.Family+" "+t.Name] = true
	}
	byChain := map[string][]nftRuleJSON{}
	for _, e := range doc.Nftables {
		if e.Rule != nil && ours[e.Rule.Family+" "+e.Rule.Table] {
			byChain[e.Rule.chainKey()] = append(byChain[e.Rule.chainKey()], *e.Rule)
		}
	}
	return byChain, nil
}

// exprKey is the one key of an nft JSON expression ("match", "counter",
// "accept", ...), and its value.
func exprKey(raw json.RawMessage) (string, json.RawMessage) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || len(m) != 1 {
		return "", nil
	}
	for k, v := range m {
		return k, v
	}
	return "", nil
}

// nftVerdicts are the statements that end a rule: nothing may follow
// them ("Statement after terminal statement has no effect"), so the
// lab's counter goes before them. NAT and redirection are terminal too.
var nftVerdicts = map[string]bool{
	"accept": true, "drop": true, "reject": true, "jump": true, "goto": true, "return": true, "continue": true, "queue": true,
	"snat": true, "dnat": true, "masquerade": true, "redirect": true, "tproxy": true, "synproxy": true, "fwd": true,
}

// anonymousCounter returns the packets of a rule's own counter
// ({"counter": {"packets": N, ...}}); a named counter does not count.
func anonymousCounter(r nftRuleJSON) (uint64, bool) {
	for _, e := range r.Expr {
		k, v := exprKey(e)
		if k != "counter" {
			continue
		}
		var c struct {
			Packets *uint64 `json:"packets"`
		}
		if json.Unmarshal(v, &c) == nil && c.Packets != nil {
			return *c.Packets, true
		}
	}
	return 0, false
}

// withCounter is r's expressions with an anonymous counter before the
// final verdict, or at the end when there is none.
func withCounter(r nftRuleJSON) []json.RawMessage {
	counter := json.RawMessage(`{"counter":null}`)
	out := append([]json.RawMessage(nil), r.Expr...)
	if n := len(out); n > 0 {
		if k, _ := exprKey(out[n-1]); nftVerdicts[k] {
			return append(out[:n-1], counter, out[n-1])
		}
	}
	return append(out, counter)
}

// userRules splits a chain's listed rules into the user's, in order, and
// the policy counter ApplyNFT appended.
func userRules(listed []nftRuleJSON) (user []nftRuleJSON, policy *nftRuleJSON) {
	for i := range listed {
		if listed[i].Comment == policyComment {
			policy = &listed[i]
			continue
		}
		user = append(user, listed[i])
	}
	return user, policy
}

func (in *NFTInstalled) addCounters(ctx context.Context) error {
	byChain, err := in.listRules(ctx)
	if err != nil {
		return err
	}
	var cmds []any
	for key, listed := range byChain {
		user, _ := userRules(listed)
		if want := in.rulesOf(key); len(user) != len(want) {
			return fmt.Errorf("chain %s: nft lists %d rules, the file has %d: cannot tell which rule is which line", key, len(user), len(want))
		}
		for _, r := range user {
			if _, ok := anonymousCounter(r); ok {
				continue
			}
			r.Expr = withCounter(r)
			cmds = append(cmds, map[string]any{"replace": map[string]any{"rule": r}})
		}
	}
	for _, c := range in.rs.DropPolicies() {
		cmds = append(cmds, map[string]any{"add": map[string]any{"rule": nftRuleJSON{
			Family: c.Family, Table: c.Table, Chain: c.Name, Comment: policyComment,
			Expr: []json.RawMessage{json.RawMessage(`{"counter":null}`)},
		}}})
	}
	if len(cmds) == 0 {
		return nil
	}
	batch, err := json.Marshal(map[string]any{"nftables": cmds})
	if err != nil {
		return err
	}
	_, _, err = runNFT(ctx, in.ns, batch, "-j", "-f", "-")
	return err
}

// rulesOf are the ruleset's rules of a chain, in order.
func (in *NFTInstalled) rulesOf(chainKey string) []NFTRule {
	var out []NFTRule
	for _, r := range in.rs.Rules {
		if r.chainKey() == chainKey {
			out = append(out, r)
		}
	}
	return out
}

// Counters returns the packets each rule of the ruleset matched (in
// Rules order) and each DROP policy decided (in DropPolicies order).
func (in *NFTInstalled) Counters(ctx context.Context) (rules, policies []uint64, err error) {
	byChain, err := in.listRules(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("rules: nft counters: %w", err)
	}
	seen := map[string]int{}
	rules = make([]uint64, len(in.rs.Rules))
	for i, r := range in.rs.Rules {
		key := r.chainKey()
		user, _ := userRules(byChain[key])
		k := seen[key]
		seen[key]++
		if k >= len(user) {
			return nil, nil, fmt.Errorf("rules: nft counters: line %d: rule %d of chain %s is not installed", r.Line, k+1, key)
		}
		n, ok := anonymousCounter(user[k])
		if !ok {
			return nil, nil, fmt.Errorf("rules: nft counters: line %d: rule has no counter", r.Line)
		}
		rules[i] = n
	}
	for _, c := range in.rs.DropPolicies() {
		_, pol := userRules(byChain[c.key()])
		if pol == nil {
			return nil, nil, fmt.Errorf("rules: nft counters: line %d: no policy counter in chain %s", c.PolicyLine, c.key())
		}
		n, _ := anonymousCounter(*pol)
		policies = append(policies, n)
	}
	return rules, policies, nil
}
