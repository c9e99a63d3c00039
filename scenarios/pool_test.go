package scenarios

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/topology"
)

// TestPoolKeys: the lab's keys parse and differ, and every plan of the
// pool catalogue names only keys it has.
func TestPoolKeys(t *testing.T) {
	seen := map[[16]byte]string{}
	for name, k := range poolKeys {
		if k.Primary == ([16]byte{}) {
			t.Errorf("key %s does not parse", name)
		}
		if other, dup := seen[k.Primary]; dup {
			t.Errorf("keys %s and %s are the same", name, other)
		}
		seen[k.Primary] = name
	}
	plans := []KeyPlan{}
	for r := rotationRight; r <= rollingStaged; r++ {
		plans = append(plans, rotationPlan(r, poolServers(3)))
	}
	for n := 2; n <= 4; n++ {
		plans = append(plans, poolPlan(poolServers(n), func(s string) string { return "S" + strings.TrimPrefix(s, "server") }))
	}
	for _, p := range plans {
		if err := p.Validate(); err != nil {
			t.Error(err)
		}
	}
	for _, s := range Pools() {
		for node, kv := range s.Sysctls {
			if v, ok := kv[keySysctl]; ok {
				if _, err := tfo.ParseKey(v); err != nil {
					t.Errorf("%s: %s's key %q: %v", s.Name, node, v, err)
				}
			}
		}
	}
}

// TestPoolMutantsNameTheirExpectations: every expectation a pool mutant
// names exists in its scenario, so a renamed matcher fails here, not in a
// root-only run.
func TestPoolMutantsNameTheirExpectations(t *testing.T) {
	for _, m := range poolMutants() {
		names := map[string]bool{}
		for _, e := range m.Scenario.Expect {
			names[assertions.NameOf(e)] = true
		}
		for _, want := range m.RejectedBy {
			if !names[want] {
				t.Errorf("mutant %q names expectation %q, which %s lacks (has %v)", m.Breakage, want, m.Scenario.Name, names)
			}
		}
	}
}

// TestRotationPlans: a rotation is safe when, at every step, every server
// accepts every key a server issues now or issued just before (the cookies
// clients hold). The one done right and the staged one are; the others are
// not.
func TestRotationPlans(t *testing.T) {
	servers := poolServers(3)
	primaries := func(lists map[string]string) []string {
		var out []string
		for _, s := range servers {
			out = append(out, strings.Split(lists[s], ",")[0])
		}
		return out
	}
	for r := rotationRight; r <= rollingStaged; r++ {
		p := rotationPlan(r, servers)
		lists := map[string]string{}
		for n, l := range p.Start {
			lists[n] = l
		}
		safe := true
		for _, c := range p.Changes {
			held := primaries(lists)
			for n, l := range c.Set {
				lists[n] = l
			}
			for _, k := range append(held, primaries(lists)...) {
				for _, s := range servers {
					if !strings.Contains(","+lists[s]+",", ","+k+",") {
						safe = false
					}
				}
			}
		}
		wantSafe := r == rotationRight || r == rollingStaged
		if safe != wantSafe {
			t.Errorf("rotation %s: safe = %t, want %t", r, safe, wantSafe)
		}
	}
}

// TestPoolCatalogue: the pool scenarios are bounded, labelled, and keep
// their expectations apart by name.
func TestPoolCatalogue(t *testing.T) {
	for _, s := range Pools() {
		if !s.HasLabel("pool") {
			t.Errorf("%s: no pool label", s.Name)
		}
		if s.Timeline == nil || s.Timeout <= 0 || s.Timeout > 30*time.Second {
			t.Errorf("%s: timeline bound %v", s.Name, s.Timeout)
		}
		if s.Topology.Name == topology.Routed().Name {
			t.Errorf("%s: not a pool topology", s.Name)
		}
		names := map[string]bool{}
		for _, e := range s.Expect {
			n := assertions.NameOf(e)
			if names[n] {
				t.Errorf("%s: two expectations named %q", s.Name, n)
			}
			names[n] = true
		}
	}
	router, _ := topology.Pool(2).Node(topology.Router)
	if router.Sysctls["net.ipv4.fib_multipath_hash_policy"] != "3" || router.Sysctls["net.ipv4.fib_multipath_hash_fields"] != "55" {
		t.Error("the pool router's ECMP hash must cover the 5-tuple (policy 3, fields 0x37)")
	}
}

// TestPoolFigures measures what docs/pools.md reports: run as root with
// TFOLAB_POOL_FIGURES=<runs> (go test ./scenarios -run TestPoolFigures -v).
// Every run must pass its own expectations; the tables add them up.
func TestPoolFigures(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("TFOLAB_POOL_FIGURES"))
	if runs <= 0 {
		t.Skip("set TFOLAB_POOL_FIGURES=<runs> to measure the pool figures (root)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	run := func(s Scenario) *observation.Observation {
		t.Helper()
		l := lab.New()
		defer func() {
			if err := l.Close(); err != nil {
				t.Errorf("%s: teardown: %v", s.Name, err)
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), s.ConnBudget()+15*time.Second)
		defer cancel()
		o, err := Run(ctx, l, s)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		for _, v := range assertions.Failed(assertions.Judge(o, s.Expect)) {
			t.Errorf("%s: %s failed:\n%s", s.Name, v.Name, v.Evidence)
		}
		return o
	}
	var b strings.Builder
	b.WriteString("\n| scenario | accepted in the SYN, each run | mean | model |\n| --- | --- | --- | --- |\n")
	share := func(s Scenario, model string) {
		var parts []string
		acc, all := 0, 0
		for range runs {
			o := run(s)
			sh := assertions.PoolShares(o, assertions.CarriedCookie(o))
			if sh.Conns == 0 { // no-cookie modes: every data SYN counts
				sh = assertions.PoolShares(o, nil)
			}
			parts = append(parts, fmt.Sprintf("%d/%d", sh.Accepted, sh.Conns))
			acc, all = acc+sh.Accepted, all+sh.Conns
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f%% | %s |\n", s.Name, strings.Join(parts, " "), 100*float64(acc)/float64(max(all, 1)), model)
	}
	for _, fam := range []topology.Family{topology.IPv4, topology.IPv6} {
		for n := 2; n <= 4; n++ {
			share(PoolUnsyncKeys(n, fam), fmt.Sprintf("1/%d = %.0f%%", n, 100/float64(n)))
		}
		share(PoolSyncKeys(fam, false), "100%")
		share(PoolSyncKeys(fam, true), "100%")
		share(PoolNoCookie(fam), "100%")
	}
	share(PoolNoCookieClientOnly(), "0%")

	for r := rotationRight; r <= rollingStaged; r++ {
		s := PoolRotation(r)
		plan := rotationPlan(r, poolServers(3))
		type row struct{ conns, accepted, alt, refused int }
		rows := map[string]*row{}
		var order []string
		for range runs {
			o := run(s)
			for _, pc := range assertions.PoolModel(o, plan.Schedule()) {
				label := o.Conns[pc.Index].Label
				if label == "learn" {
					continue
				}
				if rows[label] == nil {
					rows[label] = &row{}
					order = append(order, label)
				}
				w := rows[label]
				w.conns++
				switch pc.Predicted {
				case assertions.OutcomeAcceptedPrimary:
					w.accepted++
				case assertions.OutcomeAcceptedBackup:
					w.accepted++
					w.alt++
				case assertions.OutcomeRefused:
					w.refused++
				}
			}
		}
		fmt.Fprintf(&b, "\n%s (%d runs, %d connections per step per client)\n\n| step | keys (server1, server2, server3) | accepted | of which backup key | refused |\n| --- | --- | --- | --- | --- |\n", s.Name, runs, rotationPerStep)
		lists := map[string]string{}
		for k, v := range plan.Start {
			lists[k] = v
		}
		for _, label := range order {
			for _, c := range plan.Changes {
				if c.Mark == label {
					for k, v := range c.Set {
						lists[k] = v
					}
				}
			}
			w := rows[label]
			fmt.Fprintf(&b, "| %s | %s, %s, %s | %d/%d | %d | %d |\n", label, lists["server1"], lists["server2"], lists["server3"], w.accepted, w.conns, w.alt, w.refused)
		}
	}

	b.WriteString("\n| servers | TFO queue | burst | landed per server | ListenOverflow per server | accepted in the SYN | runs |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range []struct{ n, q, burst int }{{1, 1, 6}, {1, 2, 6}, {1, 4, 6}, {2, 2, 8}} {
		seen := map[string]int{}
		var order []string
		for range runs {
			o := run(PoolOverflow(c.n, c.q, c.burst))
			var landed, over []string
			sh := assertions.PoolShares(o, func(i int) bool { return o.Conns[i].Label == "burst" })
			for _, srv := range poolServers(c.n) {
				v, _ := o.Counters(srv).Get(lab.TCPFastOpenListenOverflow)
				landed = append(landed, strconv.Itoa(sh.Servers[srv].Landed))
				over = append(over, strconv.FormatInt(v, 10))
			}
			row := fmt.Sprintf("| %d | %d | %d | %s | %s | %d |", c.n, c.q, c.burst, strings.Join(landed, ", "), strings.Join(over, ", "), sh.Accepted)
			if seen[row] == 0 {
				order = append(order, row)
			}
			seen[row]++
		}
		for _, row := range order {
			fmt.Fprintf(&b, "%s %d |\n", row, seen[row])
		}
	}
	t.Log(b.String())
}
