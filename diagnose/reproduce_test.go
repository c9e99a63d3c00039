package diagnose

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/rules"
	"github.com/tfolab/tfolab/middlebox"
)

// The rulesets are the lab middleboxes' own rules, byte for byte, and
// parse as the firewall check reads them.
func TestRulesetsAreTheMiddleboxes(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(mapValues(firewallOf))) {
		box, ok := middlebox.ByName(name)
		if !ok {
			t.Fatalf("no middlebox %q", name)
		}
		for _, v6 := range []bool{false, true} {
			fam := lab.IPv4
			if v6 {
				fam = lab.IPv6
			}
			for _, port := range []uint16{80, 7000, 65535} {
				want, err := box.Rules(fam, middlebox.Params{ServicePort: port, Placement: middlebox.Router})
				if err != nil {
					t.Fatal(err)
				}
				text := RulesetText(name, v6, port)
				rs, err := rules.ParseRuleset(strings.NewReader(text), fam)
				if err != nil {
					t.Fatalf("%s %v %d: parse: %v\n%s", name, fam, port, err, text)
				}
				if len(rs.Policies) != 0 {
					t.Errorf("%s: policies %v", name, rs.Policies)
				}
				// iptables-save lists mangle before filter; the middlebox
				// builds them in install order. Compare as sets of rules.
				key := func(r rules.Rule) string { return r.Table + " " + r.Chain + " " + strings.Join(r.Spec, "\x00") }
				var got, exp []string
				for _, r := range rs.Rules {
					got = append(got, key(r))
				}
				for _, r := range want {
					exp = append(exp, key(r))
				}
				slices.Sort(got)
				slices.Sort(exp)
				if !slices.Equal(got, exp) {
					t.Errorf("%s %v port %d:\n got %q\nwant %q", name, fam, port, got, exp)
				}
			}
		}
	}
}

func mapValues[K comparable, V comparable](m map[K]V) map[V]bool {
	out := map[V]bool{}
	for _, v := range m {
		out[v] = true
	}
	return out
}

func TestRulesFileName(t *testing.T) {
	for _, c := range []struct {
		s    ServerReport
		want string
	}{
		{ServerReport{Server: "10.0.0.2:80", Verdict: SynDataDropped, Reproduce: &Reproducer{Family: "ipv4"}}, "10.0.0.2_80-syn-data-dropped.rules"},
		{ServerReport{Server: "[fd00::2]:443", Verdict: OptionStripped, Reproduce: &Reproducer{Family: "ipv6"}}, "fd00__2_443-option-stripped.rules6"},
	} {
		if got := RulesFileName(c.s); got != c.want {
			t.Errorf("%s: %q, want %q", c.s.Server, got, c.want)
		}
	}
}

func TestEveryVerdictHasAReproducer(t *testing.T) {
	for _, v := range Precedence {
		if v == Inconclusive {
			continue
		}
		if _, ok := Scenarios[string(v)]; !ok {
			t.Errorf("no scenario for %s", v)
		}
	}
	for k := range firewallOf {
		if _, ok := Scenarios[k]; !ok {
			t.Errorf("firewall case %s has no scenario", k)
		}
	}
}
