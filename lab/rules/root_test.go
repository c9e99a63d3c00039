package rules

// The tests that install rules in a lab namespace (root): iptables rule
// lists, an iptables-save file with policies, an nft ruleset.

import (
	"context"
	"errors"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/labtest"
)

// pokeDiscard sends, from inside ns, one connect to the closed discard
// port of 127.0.0.1 (a SYN out and the RST the kernel sends back to
// itself) and one UDP datagram to it.
func pokeDiscard(t *testing.T, ns *lab.Namespace) {
	t.Helper()
	err := ns.Do(func() error {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:9", time.Second); err == nil {
			c.Close()
		}
		if u, err := net.Dial("udp", "127.0.0.1:9"); err == nil {
			u.Write([]byte("x"))
			u.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestApplyIsWhatIptablesSeesRoot cross-checks the restore transactions
// with go-iptables, which asks iptables itself (-C) rule by rule: every
// rule Apply installed exists as written, a refused batch leaves none of
// its rules, and teardown removes them all and the chain.
func TestApplyIsWhatIptablesSeesRoot(t *testing.T) {
	labtest.NeedRoot(t, "creates a network namespace and applies iptables rules in it")
	for _, f := range []Family{lab.IPv4, lab.IPv6} {
		owner, ns := labtest.Namespace(t, "restore")
		rs := []Rule{
			{Table: "filter", Chain: "TFO-G"},
			{Table: "filter", Chain: "FORWARD", Spec: []string{"-p", "tcp", "--dport", "7000", "-j", "TFO-G"}},
			{Table: "filter", Chain: "TFO-G", Spec: []string{"-m", "comment", "--comment", "two words", "-j", "DROP"}},
			{Table: "mangle", Chain: "POSTROUTING", Spec: []string{"-p", "tcp", "-j", "TCPOPTSTRIP", "--strip-options", "34"}},
		}
		proto := iptables.ProtocolIPv4
		if f == lab.IPv6 {
			proto = iptables.ProtocolIPv6
		}
		exists := func() []bool {
			var got []bool
			_ = ns.Do(func() error {
				ipt, err := iptables.NewWithProtocol(proto)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rs[1:] {
					ok, err := ipt.Exists(r.Table, r.Chain, r.installed()...)
					if err != nil {
						ok = false // the chain itself is gone
					}
					got = append(got, ok)
				}
				chain, _ := ipt.ChainExists("filter", "TFO-G")
				got = append(got, chain)
				return nil
			})
			return got
		}
		rules := lab.New()
		if err := Apply(rules, ns, f, rs); err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		if got := exists(); !slices.Equal(got, []bool{true, true, true, true}) {
			t.Errorf("%v: after Apply, iptables -C finds %v (last: the chain), want all", f, got)
		}
		bad := append(slices.Clone(rs[1:2]), Rule{Table: "filter", Chain: "FORWARD", Spec: []string{"-j", "NO-SUCH-CHAIN"}})
		err := Apply(lab.New(), ns, f, bad)
		var re *RuleError
		if !errors.As(err, &re) || re.Index != 1 {
			t.Errorf("%v: a refused batch: %v, want a RuleError naming rule 2", f, err)
		}
		if err := rules.Close(); err != nil {
			t.Fatal(err)
		}
		if got := exists(); !slices.Equal(got, []bool{false, false, false, false}) {
			t.Errorf("%v: after teardown, iptables -C finds %v, want nothing", f, got)
		}
		owner.Close()
	}
}

// TestApplyRulesetPolicyRoot applies a file with a DROP policy in a lab
// namespace, reads the policy's counter, and checks teardown restores it.
func TestApplyRulesetPolicyRoot(t *testing.T) {
	labtest.NeedRoot(t, "creates a network namespace and applies iptables rules in it")
	_, ns := labtest.Namespace(t, "policy")
	rs, err := ParseRuleset(strings.NewReader("*filter\n:OUTPUT DROP [0:0]\n-A OUTPUT -o lo -p tcp --dport 9 -j ACCEPT\n-A OUTPUT -o lo -p tcp --tcp-flags RST RST -j ACCEPT\nCOMMIT\n"), lab.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	rules := lab.New()
	if err := ApplyRuleset(rules, ns, rs); err != nil {
		rules.Close()
		t.Fatal(err)
	}
	// The datagram: the policy drops it (EPERM), counted all the same.
	pokeDiscard(t, ns)
	counts, err := PolicyCounters(ns, lab.IPv4, rs.Policies)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(counts, []uint64{1}) {
		t.Errorf("policy counters %v, want [1]", counts)
	}
	hits, err := Counters(ns, lab.IPv4, rs.Rules)
	if err != nil || !reflect.DeepEqual(hits, []uint64{1, 1}) {
		t.Errorf("rule counters %v %v, want [1 1]", hits, err)
	}
	if err := rules.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := ns.Run(context.Background(), "iptables", "-S", "OUTPUT")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "-P OUTPUT ACCEPT" {
		t.Errorf("after teardown: %q, want the policy back at ACCEPT and no rule", got)
	}
}

func needRootNFT(t *testing.T) {
	t.Helper()
	labtest.NeedRoot(t, "creates a network namespace and loads nft rules in it")
	if err := NFTAvailable(); err != nil {
		t.Skip(err)
	}
}

// TestApplyNFTRoot loads a ruleset into a lab namespace beside a table of
// someone else's, counts a SYN by the rule's line and the drop policy,
// and checks that teardown removes exactly the ruleset's tables.
func TestApplyNFTRoot(t *testing.T) {
	needRootNFT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner, ns := labtest.Namespace(t, "nft")
	if _, _, err := runNFT(ctx, ns, []byte("table ip keep {\n}\n"), "-f", "-"); err != nil {
		t.Fatal(err)
	}
	file := "table inet tfotest {\n\tchain out {\n\t\ttype filter hook output priority 0; policy drop;\n" +
		"\t\tip daddr 127.0.0.1 tcp dport 9 tcp flags syn accept\n\t\tip daddr 127.0.0.1 tcp flags rst counter accept\n\t}\n}\n"
	rs, err := ParseNFT(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	rules := lab.New()
	in, err := ApplyNFT(ctx, rules, ns, rs)
	if err != nil {
		rules.Close()
		t.Fatal(err)
	}
	// One connect to a closed port: the SYN out matches line 4, the RST
	// the kernel sends back to itself line 5; a UDP datagram hits the policy.
	pokeDiscard(t, ns)
	got, pol, err := in.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []uint64{1, 1}) || !reflect.DeepEqual(pol, []uint64{1}) {
		t.Errorf("counters %v, policy %v; want [1 1] and [1]", got, pol)
	}
	// Applying again finds its table present and refuses, naming the line.
	if _, err := ApplyNFT(ctx, rules, ns, rs); err == nil || !strings.Contains(err.Error(), "line 1: table inet tfotest already exists") {
		t.Errorf("second apply: %v", err)
	}
	if err := rules.Close(); err != nil {
		t.Fatal(err)
	}
	tables, err := nftTables(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tables, map[string]bool{"ip keep": true}) {
		t.Errorf("after teardown: tables %v, want only ip keep", tables)
	}
	// A ruleset nft refuses names its line and leaves nothing.
	bad, err := ParseNFT(strings.NewReader("table ip tfobad {\n\tchain c {\n\t\ttype filter hook input priority 0;\n\t\tip6 saddr fd00::1 drop\n\t}\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ApplyNFT(ctx, owner, ns, bad)
	var ne *NFTError
	if !errors.As(err, &ne) || ne.Line != 4 || !strings.Contains(ne.Msg, "conflicting protocols") {
		t.Errorf("refused ruleset: %v", err)
	}
	if tables, _ := nftTables(ctx, ns); tables["ip tfobad"] {
		t.Error("a refused ruleset left its table")
	}
}
