package middlebox

import (
	"context"
	"fmt"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/rules"
)

// CustomRuleset wraps a user's iptables-save or ip6tables-save file, read
// with rules.ParseRuleset, as a Middlebox called name: its rules as written
// and its chain policies (`:FORWARD DROP`), which the lab may set because
// the rules live in its own namespace. It only goes in a lab of the file's
// family: Check refuses the other, so an ip6tables-save file is never
// applied to IPv4. Params are ignored (the file names its own chains and
// ports).
func CustomRuleset(rs rules.Ruleset, name string) Middlebox {
	return Middlebox{
		Name:        name,
		Description: fmt.Sprintf("%d rules and %d policies from an %s-save file", countRules(rs.Rules), len(rs.Policies), rules.Program(rs.Family)),
		Check: func(f lab.Family, _ Params) error {
			if f != rs.Family {
				return fmt.Errorf("%s: %s rules cannot filter %s traffic", name, rs.Family, f)
			}
			return nil
		},
		Install: func(l *lab.Lab, ns *lab.Namespace, f lab.Family, _ Params) (Installed, error) {
			if f != rs.Family {
				return nil, fmt.Errorf("%s: %s rules cannot filter %s traffic", name, rs.Family, f)
			}
			if err := rules.ApplyRuleset(l, ns, rs); err != nil {
				return nil, err
			}
			return installedRuleset{ns, rs}, nil
		},
	}
}

func countRules(rs []Rule) int {
	n := 0
	for _, r := range rs {
		if !r.IsChain() {
			n++
		}
	}
	return n
}

type installedRuleset struct {
	ns *lab.Namespace
	rs rules.Ruleset
}

// Hits lists the rules, then the policies (as "iptables -t filter -P
// FORWARD DROP", with the chain line's number).
func (r installedRuleset) Hits() ([]Hit, error) {
	out, err := installedRules{r.ns, r.rs.Family, r.rs.Rules}.Hits()
	if err != nil {
		return nil, err
	}
	counts, err := rules.PolicyCounters(r.ns, r.rs.Family, r.rs.Policies)
	if err != nil {
		return nil, err
	}
	for i, p := range r.rs.Policies {
		out = append(out, Hit{Rule: rules.Program(r.rs.Family) + " " + p.String(), Line: p.Line, Packets: counts[i]})
	}
	return out, nil
}

// CustomNFT wraps a user's nftables ruleset, read with rules.ParseNFT, as a
// Middlebox called name, installed with `nft -f` (rules.ApplyNFT). It goes
// only in a lab of a family its tables filter (ip: IPv4, ip6: IPv6, inet:
// both).
func CustomNFT(rs rules.NFTRuleset, name string) Middlebox {
	check := func(f lab.Family) error {
		if !rs.Covers(f) {
			return fmt.Errorf("%s: no table of the ruleset filters %s (want family ip, ip6 or inet)", name, f)
		}
		return nil
	}
	return Middlebox{
		Name:        name,
		Description: fmt.Sprintf("%d rules in %d tables from an nftables ruleset", len(rs.Rules), len(rs.Tables)),
		Check: func(f lab.Family, _ Params) error {
			if err := check(f); err != nil {
				return err
			}
			return rules.NFTAvailable()
		},
		Install: func(l *lab.Lab, ns *lab.Namespace, f lab.Family, _ Params) (Installed, error) {
			if err := check(f); err != nil {
				return nil, err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*rules.NFTCommandTimeout)
			defer cancel()
			in, err := rules.ApplyNFT(ctx, l, ns, rs)
			if err != nil {
				return nil, err
			}
			return installedNFT{in, rs}, nil
		},
	}
}

type installedNFT struct {
	in *rules.NFTInstalled
	rs rules.NFTRuleset
}

// Hits lists the rules, then the drop policies (with the line of their
// `policy drop`).
func (n installedNFT) Hits() ([]Hit, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rules.NFTCommandTimeout)
	defer cancel()
	counts, policies, err := n.in.Counters(ctx)
	if err != nil {
		return nil, err
	}
	var out []Hit
	for i, r := range n.rs.Rules {
		out = append(out, Hit{Rule: r.String(), Line: r.Line, Packets: counts[i]})
	}
	for i, c := range n.rs.DropPolicies() {
		out = append(out, Hit{Rule: fmt.Sprintf("nft chain %s %s %s: policy drop", c.Family, c.Table, c.Name), Line: c.PolicyLine, Packets: policies[i]})
	}
	return out, nil
}
