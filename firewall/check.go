package firewall

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/harness"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"
)

// Options configure Run.
type Options struct {
	// Out is the folder for each variant's artefacts (observation.json,
	// verdicts.json, pcaps); "" writes none.
	Out string
	// OnlyFailures writes a variant's artefacts only when one of its
	// expectations failed or its lab did (a spec's way); otherwise every
	// variant's are written (the command's way).
	OnlyFailures bool
	// Expect, if set, gives each variant expectations the harness judges
	// (the examples' specs: VerdictIs).
	Expect func(Variant) []types.GomegaMatcher
	// Variants to run; nil runs c.Variants().
	Variants []Variant
}

// Budget bounds a whole check, Validate and Run: the variants run at once,
// each within its own harness budget, so the longest of those, plus the
// scratch validation.
func (c *Check) Budget() time.Duration {
	var d time.Duration
	for _, v := range c.Variants() {
		d = max(d, harness.Budget(c.Scenario(v)))
	}
	return d + 10*time.Second
}

// Run runs every variant at once, each in a lab of its own through package
// harness, and classifies each observation. An error is a failure to run
// at all; a variant whose lab failed gets a RunFailed finding.
func (c *Check) Run(ctx context.Context, opts Options) (*Report, error) {
	variants := opts.Variants
	if variants == nil {
		variants = c.Variants()
	}
	r := &Report{Input: c.Input, Place: PlaceName(c.Input.Place), Described: c.Describe(), Started: time.Now()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Kernel = strings.TrimSpace(string(b))
	}
	for _, f := range c.NoRules() {
		r.NoRules = append(r.NoRules, f.String())
	}
	artefacts := harness.Never
	switch {
	case opts.Out != "" && opts.OnlyFailures:
		artefacts = harness.OnFailure
	case opts.Out != "":
		artefacts = harness.Always
	}
	results := make([]harness.Result, len(variants))
	var wg sync.WaitGroup
	for i, v := range variants {
		var expect []types.GomegaMatcher
		if opts.Expect != nil {
			expect = opts.Expect(v)
		}
		s := c.Scenario(v, expect...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = harness.Run(ctx, s, harness.Options{Out: opts.Out, Artefacts: artefacts})
		}()
	}
	wg.Wait()
	r.Elapsed = time.Since(r.Started)
	r.Results = results
	for i, res := range results {
		var f Finding
		if res.Obs != nil && res.Err == nil {
			f = Classify(res.Obs, variants[i])
		} else {
			f = Finding{Variant: variants[i], Kind: RunFailed, Err: fmt.Sprint(res.Err)}
			if res.Obs != nil {
				f.Evidence = res.Obs.Short()
			}
		}
		if res.Teardown != nil {
			f.Kind, f.Err = RunFailed, strings.TrimSpace(f.Err+" teardown: "+res.Teardown.Error())
		}
		if f.NoMatch {
			f.Hint = c.hint(variants[i].Family)
		}
		f.Dir = res.Dir
		r.Findings = append(r.Findings, f)
	}
	r.fillBaselines()
	return r, ctx.Err()
}

// fillBaselines gives first-contact findings the open-path first byte a
// firewall-change run of the same family measured.
func (r *Report) fillBaselines() {
	base := map[lab.Family][]time.Duration{}
	for _, f := range r.Findings {
		if f.Baseline > 0 {
			base[f.Variant.Family] = append(base[f.Variant.Family], f.Baseline)
		}
	}
	for i := range r.Findings {
		if b := base[r.Findings[i].Variant.Family]; len(b) > 0 {
			r.Findings[i].SetBaseline(medianOf(b))
		}
	}
}

var (
	nftIfaceRE = regexp.MustCompile(`\b[io]if(?:name)?\s+"?([^"\s;]+)`)
	nftAddrRE  = regexp.MustCompile(`\bip6?\s+[sd]addr\s+([0-9a-fA-F:.]+(?:/\d+)?)`)
	// seeing are the built-in chains (and nft hooks) that see the traffic
	// of each placement.
	seeing = map[middlebox.Placement][]string{
		middlebox.Router:     {"FORWARD", "PREROUTING", "POSTROUTING", "forward", "prerouting", "postrouting", "ingress"},
		middlebox.ServerSide: {"INPUT", "OUTPUT", "PREROUTING", "POSTROUTING", "input", "output", "prerouting", "postrouting", "ingress"},
		middlebox.ClientSide: {"INPUT", "OUTPUT", "PREROUTING", "POSTROUTING", "input", "output", "prerouting", "postrouting", "ingress"},
	}
)

// hint is the advice for rules that saw none of the lab's traffic of
// family f: the port first, then whatever else in the rules points
// elsewhere (chains the placement never traverses, interfaces, addresses).
func (c *Check) hint(f lab.Family) string {
	parts := []string{fmt.Sprintf("none of your rules matched traffic to port %d: is PORT right?", c.Input.Port)}
	chains, ifaces, addrs := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, s := range c.sources(f) {
		if s.ipt != nil {
			for _, r := range s.ipt.Rules {
				if isBuiltinChain(r.Chain) {
					chains[r.Chain] = true
				}
				for k := 0; k+1 < len(r.Spec); k++ {
					switch r.Spec[k] {
					case "-i", "--in-interface", "-o", "--out-interface":
						ifaces[r.Spec[k+1]] = true
					case "-s", "--source", "-d", "--destination":
						addrs[r.Spec[k+1]] = true
					}
				}
			}
			for _, p := range s.ipt.Policies {
				chains[p.Chain] = true
			}
		}
		if s.nft != nil {
			for _, ch := range s.nft.Chains {
				if ch.Hook != "" {
					chains[ch.Hook] = true
				}
			}
			for _, r := range s.nft.Rules {
				for _, m := range nftIfaceRE.FindAllStringSubmatch(r.Text, -1) {
					ifaces[m[1]] = true
				}
				for _, m := range nftAddrRE.FindAllStringSubmatch(r.Text, -1) {
					addrs[m[1]] = true
				}
			}
		}
	}
	sees := false
	for _, ch := range seeing[c.Input.Place] {
		sees = sees || chains[ch]
	}
	if !sees && len(chains) > 0 {
		parts = append(parts, fmt.Sprintf("and PLACE=%s: your rules hook %s, which never see the lab's traffic there", PlaceName(c.Input.Place), strings.Join(slices.Sorted(maps.Keys(chains)), ", ")))
	}
	if len(ifaces) > 0 {
		parts = append(parts, fmt.Sprintf("your rules name interfaces %s; the lab's are %s", strings.Join(slices.Sorted(maps.Keys(ifaces)), ", "), strings.Join(labInterfaces(), ", ")))
	}
	if len(addrs) > 0 {
		parts = append(parts, fmt.Sprintf("your rules name addresses %s; the lab's client and server are in 10.34.0.0/16 and fd34::/16", strings.Join(slices.Sorted(maps.Keys(addrs)), ", ")))
	}
	return strings.Join(parts, "; ")
}

func isBuiltinChain(c string) bool {
	switch c {
	case "INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING":
		return true
	}
	return false
}

// labInterfaces are the interfaces of the check's topology (Scenario's),
// sorted: the names a user's rules would have to use.
func labInterfaces() []string {
	spec := topology.Routed()
	var out []string
	for _, n := range spec.NodeNames() {
		out = append(out, spec.Interfaces(n)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// MarshalJSON writes the variant as its four coordinates.
func (v Variant) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Family    string `json:"family"`
		Mode      string `json:"mode"`
		Phase     string `json:"phase"`
		Detection bool   `json:"detection"`
	}{v.Family.String(), v.Mode.String(), v.Phase.Slug(), v.Detection})
}
