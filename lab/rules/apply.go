package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
	"github.com/tfolab/tfolab/lab"
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

func newIPTables(f Family) (*iptables.IPTables, error) {
	switch f {
	case lab.IPv4:
		return iptables.NewWithProtocol(iptables.ProtocolIPv4)
	case lab.IPv6:
		return iptables.NewWithProtocol(iptables.ProtocolIPv6)
	}
	return nil, fmt.Errorf("family %d: want 4 or 6", int(f))
}

func describe(i int, r Rule) string {
	s := fmt.Sprintf("rule %d (%s)", i+1, r.String())
	if r.Line > 0 {
		s = fmt.Sprintf("line %d: %s", r.Line, s)
	}
	return s
}

// undo runs its function at most once, so a rule removed by Apply's rollback
// is not removed again when the Lab closes.
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

// Apply installs rules in ns, in order, with iptables (IPv4) or ip6tables
// (IPv6) run inside the namespace. Each rule is appended (-A) with a
// `-m comment --comment tfolab:<hash>` tag before its target; a Rule with a
// nil Spec creates a user-defined chain (-N). The deletion of each rule or
// chain is pushed onto l's cleanup stack right after it exists, so Close
// removes rules before the chains they live in, in reverse order.
//
// If a rule fails, the rules and chains this call already added are removed
// before Apply returns an error that names the rule (and its source line).
func Apply(l *lab.Lab, ns *lab.Namespace, f Family, rules []Rule) error {
	if ns == nil {
		return errors.New("rules: apply: nil namespace")
	}
	var added []*undo
	err := ns.Do(func() error {
		ipt, err := newIPTables(f)
		if err != nil {
			return err
		}
		for i, r := range rules {
			var u *undo
			if r.IsChain() {
				if err := ipt.NewChain(r.Table, r.Chain); err != nil {
					return fmt.Errorf("%s: %w", describe(i, r), err)
				}
				u = &undo{fn: func() error { return ns.Do(func() error { return ipt.DeleteChain(r.Table, r.Chain) }) }}
			} else {
				spec := r.installed()
				if err := ipt.Append(r.Table, r.Chain, spec...); err != nil {
					return fmt.Errorf("%s: %w", describe(i, r), err)
				}
				u = &undo{fn: func() error { return ns.Do(func() error { return ipt.Delete(r.Table, r.Chain, spec...) }) }}
			}
			added = append(added, u)
			l.Defer(fmt.Sprintf("%s %s in %s", Program(f), r.String(), ns.Name), u.run)
		}
		return nil
	})
	if err == nil {
		return nil
	}
	err = fmt.Errorf("rules: apply with %s: %w", Program(f), err)
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

var countersRE = regexp.MustCompile(` -c (\d+) (\d+)`)

// Counters returns, for each rule, the number of packets it matched so far,
// read with `iptables -t TABLE -v -S CHAIN` (go-iptables ListWithCounters)
// inside ns and found by the rule's tag. Chain declarations count 0. A rule
// that is not installed (not by Apply, or already removed) is an error.
func Counters(ns *lab.Namespace, f Family, rules []Rule) ([]uint64, error) {
	if ns == nil {
		return nil, errors.New("rules: counters: nil namespace")
	}
	out := make([]uint64, len(rules))
	err := ns.Do(func() error {
		ipt, err := newIPTables(f)
		if err != nil {
			return err
		}
		listed := map[[2]string][]string{}
		for i, r := range rules {
			if r.IsChain() {
				continue
			}
			key := [2]string{r.Table, r.Chain}
			lines, ok := listed[key]
			if !ok {
				lines, err = ipt.ListWithCounters(r.Table, r.Chain)
				if err != nil {
					return fmt.Errorf("list %s %s: %w", r.Table, r.Chain, err)
				}
				listed[key] = lines
			}
			tag := r.Tag()
			found := false
			for _, line := range lines {
				if !strings.Contains(line, tag) {
					continue
				}
				m := countersRE.FindAllStringSubmatch(line, -1)
				if m == nil {
					return fmt.Errorf("%s: no counters in %q", describe(i, r), line)
				}
				out[i], err = strconv.ParseUint(m[len(m)-1][1], 10, 64)
				if err != nil {
					return fmt.Errorf("%s: counters in %q: %w", describe(i, r), line, err)
				}
				found = true
				break
			}
			if !found {
				return fmt.Errorf("%s: not installed", describe(i, r))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rules: counters: %w", err)
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

// ApplyPolicies sets each built-in chain's policy in ns (`iptables -t T -P
// CHAIN TARGET`) and pushes the restore of the policy it replaced onto l's
// cleanup stack right after, so Close puts it back before the rules are
// removed. The namespace is the lab's own: the host's policies are never
// touched.
func ApplyPolicies(l *lab.Lab, ns *lab.Namespace, f Family, ps []Policy) error {
	if ns == nil {
		return errors.New("rules: policies: nil namespace")
	}
	if len(ps) == 0 {
		return nil
	}
	err := ns.Do(func() error {
		ipt, err := newIPTables(f)
		if err != nil {
			return err
		}
		for _, p := range ps {
			prev, err := policyOf(ipt, p.Table, p.Chain)
			if err != nil {
				return fmt.Errorf("line %d: %s: %w", p.Line, p, err)
			}
			if err := ipt.ChangePolicy(p.Table, p.Chain, p.Target); err != nil {
				return fmt.Errorf("line %d: %s: %w", p.Line, p, err)
			}
			u := &undo{fn: func() error {
				return ns.Do(func() error { return ipt.ChangePolicy(p.Table, p.Chain, prev) })
			}}
			l.Defer(fmt.Sprintf("%s -t %s -P %s %s (restore) in %s", Program(f), p.Table, p.Chain, prev, ns.Name), u.run)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rules: policies with %s: %w", Program(f), err)
	}
	return nil
}

// policyOf reads a built-in chain's policy from `iptables -t T -S CHAIN`,
// whose first line is "-P CHAIN POLICY".
func policyOf(ipt *iptables.IPTables, table, chain string) (string, error) {
	lines, err := ipt.List(table, chain)
	if err != nil {
		return "", err
	}
	for _, line := range lines {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "-P" && f[1] == chain {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("no policy line in %q", strings.Join(lines, "; "))
}

// PolicyCounters returns, for each policy, the packets it decided: the
// chain's own counters (`iptables -t T -v -S CHAIN` prints them on its -P
// line), i.e. the packets that fell off the end of the chain.
func PolicyCounters(ns *lab.Namespace, f Family, ps []Policy) ([]uint64, error) {
	if ns == nil {
		return nil, errors.New("rules: policy counters: nil namespace")
	}
	out := make([]uint64, len(ps))
	if len(ps) == 0 {
		return out, nil
	}
	err := ns.Do(func() error {
		ipt, err := newIPTables(f)
		if err != nil {
			return err
		}
		for i, p := range ps {
			lines, err := ipt.ListWithCounters(p.Table, p.Chain)
			if err != nil {
				return fmt.Errorf("list %s %s: %w", p.Table, p.Chain, err)
			}
			found := false
			for _, line := range lines {
				if !strings.HasPrefix(line, "-P "+p.Chain+" ") {
					continue
				}
				m := countersRE.FindStringSubmatch(line)
				if m == nil {
					return fmt.Errorf("line %d: %s: no counters in %q", p.Line, p, line)
				}
				if out[i], err = strconv.ParseUint(m[1], 10, 64); err != nil {
					return fmt.Errorf("line %d: %s: counters in %q: %w", p.Line, p, line, err)
				}
				found = true
				break
			}
			if !found {
				return fmt.Errorf("line %d: %s: no policy line", p.Line, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rules: policy counters: %w", err)
	}
	return out, nil
}
