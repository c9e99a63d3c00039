package tfolab_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/firewall"
	"github.com/tfolab/tfolab/harness"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/scenarios"
	"github.com/tfolab/tfolab/topology"
)

// ExamplesDir holds the firewall examples: one folder each, with an
// iptables-save file (v4.rules), an ip6tables-save file (v6.rules), an nft
// ruleset (ruleset.nft) where nft can express it, and the verdicts it must
// get (expect).
const ExamplesDir = "examples/firewalls"

// firewallExample is one example in one syntax.
type firewallExample struct {
	name, syntax string
	input        firewall.Input
	expect       firewall.Expectations
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// firewallExamples lists every example folder in both syntaxes it has.
func firewallExamples() ([]firewallExample, error) {
	dirs, err := os.ReadDir(ExamplesDir)
	if err != nil {
		return nil, fmt.Errorf("firewall examples: %w", err)
	}
	var out []firewallExample
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		dir := filepath.Join(ExamplesDir, d.Name())
		f, err := os.Open(filepath.Join(dir, "expect"))
		if err != nil {
			return nil, fmt.Errorf("firewall example %s: %w", dir, err)
		}
		e, err := firewall.ParseExpectations(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("firewall example %s/expect: %w", dir, err)
		}
		var ipt firewall.Input
		for file, dst := range map[string]*string{"v4.rules": &ipt.Rules, "v6.rules": &ipt.Rules6} {
			if p := filepath.Join(dir, file); exists(p) {
				*dst = p
			}
		}
		if ipt.Rules != "" || ipt.Rules6 != "" {
			out = append(out, firewallExample{d.Name(), "iptables", ipt, e})
		}
		if p := filepath.Join(dir, "ruleset.nft"); exists(p) {
			out = append(out, firewallExample{d.Name(), "nft", firewall.Input{NFT: p}, e})
		}
	}
	return out, nil
}

// summary is the expected verdicts in a few words, for the spec's name.
func (x firewallExample) summary() string {
	seen := map[string]bool{}
	var kinds []string
	for _, l := range x.expect.Lines {
		if !seen[string(l.Kind)] {
			seen[string(l.Kind)] = true
			kinds = append(kinds, string(l.Kind))
		}
	}
	sort.Strings(kinds)
	return strings.Join(kinds, "/")
}

// verdicts is the example's expectation for each variant, for the harness.
func (x firewallExample) verdicts(v firewall.Variant) []types.GomegaMatcher {
	if k, ok := x.expect.For(v); ok {
		return []types.GomegaMatcher{firewall.VerdictIs(v, k)}
	}
	return nil
}

// staggered spreads the firewall checks' priorities over the suite, the
// i-th of n at (n-i)/n of its budget: each check builds 16 labs at once,
// and with priorities equal to their budgets all of them started first,
// together, hundreds of lab builds queueing on the RTNL lock beside CPU
// hogs until some runs' budgets ran out. i is the check's rank by how long
// its paths wait (waitRanks), longest first: a check that waits out
// blackhole pauses or RTOs for seconds must not be the one that starts
// last and runs alone at the end of the suite.
func staggered(budget time.Duration, i, n int) int {
	return int(budget/time.Millisecond) * (n - i) / n
}

// waits is how long an example's paths wait, as its verdicts say: a
// blackhole pause or a stall waits seconds of timers, an RTO one second,
// the rest next to nothing.
func (x firewallExample) waits() int {
	w := 0
	for _, l := range x.expect.Lines {
		switch string(l.Kind) {
		case "paused", "stall":
			w = max(w, 3)
		case "rto":
			w = max(w, 2)
		default:
			w = max(w, 1)
		}
	}
	return w
}

// waitRanks is each example's rank by how long its paths wait, longest
// first (ties in their given order).
func waitRanks(examples []firewallExample) []int {
	order := make([]int, len(examples))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return examples[order[a]].waits() > examples[order[b]].waits() })
	rank := make([]int, len(examples))
	for r, i := range order {
		rank[i] = r
	}
	return rank
}

var _ = Describe("firewall check", Label("firewall"), func() {
	examples, eerr := firewallExamples()
	mutants, merr := firewallMutants()
	if err := errors.Join(eerr, merr); err != nil {
		It("finds its examples", func() { Fail(err.Error()) })
	}
	ranks := waitRanks(examples)
	for i, x := range examples {
		check, err := firewall.Load(x.input)
		if err != nil {
			It("loads "+x.name, func() { Fail(err.Error()) })
			continue
		}
		budget := check.Budget()
		It(fmt.Sprintf("gives examples/firewalls/%s (%s) its verdicts (%s) for every family × mode × phase", x.name, x.syntax, x.summary()), func(ctx SpecContext) {
			Expect(check.Validate(ctx)).To(Succeed(), "the example applies")
			out := filepath.Join(outDir(), "artifacts", "firewall-"+x.name+"-"+x.syntax)
			rep, err := check.Run(ctx, firewall.Options{Out: out, OnlyFailures: true, Expect: x.verdicts})
			Expect(err).NotTo(HaveOccurred())
			Expect(rep.Findings).To(HaveLen(len(check.Variants())))
			AddReportEntry("verdicts of "+x.name, rep.Table(), ReportEntryVisibilityFailureOrVerbose)
			var failures []string
			for i, res := range rep.Results {
				f := rep.Findings[i]
				if res.Err != nil || res.Teardown != nil {
					failures = append(failures, res.FailureReport())
					continue
				}
				want, ok := x.expect.For(f.Variant)
				Expect(ok).To(BeTrue(), "examples/firewalls/%s/expect says nothing of %s", x.name, f.Variant)
				v, found := assertions.Find(res.Verdicts, firewall.VerdictName)
				Expect(found).To(BeTrue())
				if !v.Pass {
					failures = append(failures, fmt.Sprintf("%s: want %s\n%s", f.Variant, want.Title(), v.Evidence))
				}
				if x.expect.Hint != "" && !strings.Contains(f.Hint, x.expect.Hint) {
					failures = append(failures, fmt.Sprintf("%s: hint %q, want it to say %q", f.Variant, f.Hint, x.expect.Hint))
				}
			}
			if len(failures) > 0 {
				if files, err := rep.Write(out); err == nil {
					AddReportEntry("firewall report", strings.Join(files, "\n"))
				}
				Fail(fmt.Sprintf("%d of %d paths of examples/firewalls/%s (%s) not as expected:\n%s\n%s", len(failures), len(rep.Findings), x.name, x.syntax, rep.Table(), strings.Join(failures, "\n")))
			}
		}, SpecTimeout(budget), SpecPriority(staggered(budget, ranks[i], len(examples))))
	}

	// The verdicts must be able to fail: each mutant breaks an example the
	// way a deployment (or a careless check) gets it wrong, and the
	// firewall verdict must reject it.
	for _, m := range mutants {
		budget := harness.Budget(m.Scenario)
		It("self-check: "+m.Breakage, Label("selfcheck"), func(ctx SpecContext) {
			selfCheck(ctx, m.Scenario, m.Breakage, m.RejectedBy)
		}, SpecTimeout(budget), SpecPriority(int(budget/time.Millisecond)))
	}

	It("refuses bad input in one line, before any namespace, and leaves nothing", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		put := func(name, content string) string {
			p := filepath.Join(dir, name)
			Expect(os.WriteFile(p, []byte(content), 0o644)).To(Succeed())
			return p
		}
		// Other processes build labs meanwhile: only this process's
		// namespaces count.
		mine := func() []string {
			names, err := lab.ListNamespaces()
			Expect(err).NotTo(HaveOccurred())
			var out []string
			for _, n := range names {
				if lab.OwnerPID(n) == os.Getpid() {
					out = append(out, n)
				}
			}
			return out
		}
		before := mine()
		for _, tc := range []struct {
			in   firewall.Input
			want string
		}{
			{firewall.Input{Rules: filepath.Join(dir, "missing.rules")}, "no such file"},
			{firewall.Input{Rules: put("empty.rules", "")}, "the file is empty"},
			{firewall.Input{Rules: put("none.rules", "# nothing\n*filter\nCOMMIT\n")}, "no rules"},
			{firewall.Input{Rules: filepath.Join(ExamplesDir, "stateful", "v6.rules")}, "line 5: written by ip6tables-save"},
			{firewall.Input{Rules: filepath.Join(ExamplesDir, "stateful", "ruleset.nft")}, "is nftables syntax"},
			{firewall.Input{NFT: filepath.Join(ExamplesDir, "stateful", "v4.rules")}, "is iptables-save syntax"},
			{firewall.Input{Rules6: put("v6.rules", "*filter\n-A FORWARD -s 10.0.0.1 -j DROP\nCOMMIT\n")}, "line 2: address 10.0.0.1"},
			{firewall.Input{Rules: put("bad.rules", "*filter\n:G - [0:0]\n-A FORWARD -j G\n-A G -j NO-SUCH-TARGET\nCOMMIT\n")}, "line 4: iptables refuses"},
		} {
			check, err := firewall.Load(tc.in)
			if err == nil {
				err = check.Validate(ctx)
			}
			Expect(firewall.IsBadInput(err)).To(BeTrue(), "%+v: %v", tc.in, err)
			Expect(err.Error()).To(ContainSubstring(tc.want))
			Expect(err.Error()).NotTo(ContainSubstring("\n"), "one line")
		}
		Expect(mine()).To(ConsistOf(before), "no namespace left behind")
	}, SpecTimeout(30*time.Second))
})

// exampleInput is an example's iptables files (or one of them) as a user
// would point the check at them.
func exampleInput(name string, files ...string) firewall.Input {
	var in firewall.Input
	for _, f := range files {
		p := filepath.Join(ExamplesDir, name, f)
		switch f {
		case "v4.rules":
			in.Rules = p
		case "v6.rules":
			in.Rules6 = p
		case "ruleset.nft":
			in.NFT = p
		}
	}
	return in
}

// editedExample is an example file with edit applied: the mutants parse
// it at once (Load), so it lives in memory, written to a temporary file
// only for as long as Load reads it.
func editedExample(name, file string, edit func(string) string) (string, func(), error) {
	b, err := os.ReadFile(filepath.Join(ExamplesDir, name, file))
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "tfolab-mutant-")
	if err != nil {
		return "", nil, err
	}
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte(edit(string(b))), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return p, func() { os.RemoveAll(dir) }, nil
}

// firewallMutants break examples; each runs one variant and names the
// expectation that must reject it.
func firewallMutants() ([]scenarios.Mutant, error) {
	v4change := firewall.Variant{Family: topology.IPv4, Mode: tfo.ModeSendto, Phase: firewall.FirewallChange}
	v6first := firewall.Variant{Family: topology.IPv6, Mode: tfo.ModeConnect, Phase: firewall.FirstContact}
	var out []scenarios.Mutant
	var errs []error
	mutant := func(breakage string, in firewall.Input, v firewall.Variant, want firewall.Kind, tweak func(*scenarios.Scenario)) {
		check, err := firewall.Load(in)
		if err != nil {
			errs = append(errs, fmt.Errorf("mutant %q: %w", breakage, err))
			return
		}
		s := check.Scenario(v, firewall.VerdictIs(v, want))
		s.Name = "selfcheck/" + s.Name
		s.Labels = append(s.Labels, "selfcheck")
		if tweak != nil {
			tweak(&s)
		}
		out = append(out, scenarios.Mutant{Breakage: breakage, Scenario: s, RejectedBy: []string{firewall.VerdictName}})
	}
	edited := func(name, file string, edit func(string) string, use func(path string)) {
		p, done, err := editedExample(name, file, edit)
		if err != nil {
			errs = append(errs, err)
			return
		}
		defer done()
		use(p)
	}

	wrongPort := exampleInput("reset-syn-data", "v4.rules")
	wrongPort.Port = scenarios.ServicePort + 1
	mutant(fmt.Sprintf("reset-syn-data (rules for port %d) checked with PORT=%d: its rules guard nothing the lab sends, so its refused verdict must not hold", scenarios.ServicePort, scenarios.ServicePort+1),
		wrongPort, v4change, firewall.Refused, nil)
	edited("stateful", "v6.rules", func(s string) string {
		return strings.Replace(s, "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n", "", 1)
	}, func(p string) {
		mutant("the stateful example without its ESTABLISHED,RELATED accept (the DROP policy eats the replies): not TFO-safe",
			firewall.Input{Rules6: p}, v6first, firewall.Safe, nil)
	})
	edited("exact-syn-data", "v4.rules", func(s string) string {
		return strings.ReplaceAll(s, "-A FORWARD", "-A OUTPUT")
	}, func(p string) {
		mutant("the exact SYN-data drop on the client's own OUTPUT chain: a local drop falls back to a cookie request at no cost, not an RTO",
			firewall.Input{Rules: p, Place: middlebox.ClientSide}, v4change, firewall.RTO, nil)
	})
	mutant("tfo-synack-drop with detection on, but the client's blackhole timeout left at 0: no pause",
		exampleInput("tfo-synack-drop", "v4.rules"), firewall.Variant{Family: topology.IPv4, Mode: tfo.ModeSendto, Phase: firewall.FirewallChange, Detection: true}, firewall.Paused,
		func(s *scenarios.Scenario) {
			s.Sysctls[topology.Client]["net.ipv4.tcp_fastopen_blackhole_timeout_sec"] = "0"
		})
	return out, errors.Join(errs...)
}

// What `tfolab diagnose` blames on a firewall it hands over as an
// iptables-save ruleset (diagnose.RulesetText), and the firewall check
// must find that ruleset doing what the diagnosis said: one path each
// (IPv4, sendto, the firewall appearing after a cookie was learned,
// detection off), the ruleset written to a file as the command writes it.
var _ = Describe("diagnose reproducers", Label("diagnose", "firewall"), func() {
	// The rulesets are kept with the run's artefacts, as the command's
	// --rules DIR writes them.
	dir := filepath.Join(outDir(), "diagnose-reproducers")
	// What the firewall check must find each ruleset doing: the verdict
	// diagnose names for that middlebox, on the path below.
	want := map[string]firewall.Kind{
		"drop-syn-data":             firewall.RTO,
		"reset-syn-data":            firewall.Refused,
		"reject-syn-data":           firewall.Refused,
		"drop-cookie-request":       firewall.RTO,
		"strip-tfo-option":          firewall.Lost,
		"drop-tfo-synack":           firewall.Stall,
		"blackhole-after-handshake": firewall.Stall,
	}
	for _, mb := range diagnose.FirewallMiddleboxes() {
		kind, text := want[mb], diagnose.RulesetText(mb, false, scenarios.ServicePort)
		path := filepath.Join(dir, mb+".rules")
		var check *firewall.Check
		err := fmt.Errorf("diagnose hands over a %s ruleset: add the firewall verdict it must get", mb)
		if kind != "" {
			err = writeAtomically(path, text)
		}
		if err == nil {
			check, err = firewall.Load(firewall.Input{Rules: path})
		}
		if err != nil {
			It("loads diagnose's "+mb+" ruleset", func() { Fail(fmt.Sprintf("%v\n%s", err, text)) })
			continue
		}
		v := firewall.Variant{Family: lab.IPv4, Mode: tfo.ModeSendto, Phase: firewall.FirewallChange}
		budget := harness.Budget(check.Scenario(v))
		It(fmt.Sprintf("the %s ruleset diagnose writes gets the firewall verdict %s", mb, kind), func(ctx SpecContext) {
			Expect(check.Validate(ctx)).To(Succeed())
			rep, err := check.Run(ctx, firewall.Options{Variants: []firewall.Variant{v}})
			Expect(err).NotTo(HaveOccurred())
			Expect(rep.Findings).To(HaveLen(1))
			if res := rep.Results[0]; res.Err != nil || res.Teardown != nil {
				Fail(res.FailureReport())
			}
			Expect(rep.Findings[0].Kind).To(Equal(kind), "diagnose's %s ruleset:\n%s\nfirewall check:\n%s", mb, text, rep.Table())
		}, SpecTimeout(budget), SpecPriority(int(budget/time.Millisecond)))
	}
})

// writeAtomically writes text to path through a rename, so that the
// parallel processes building the same tree never read half a file.
func writeAtomically(path, text string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
