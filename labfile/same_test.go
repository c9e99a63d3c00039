package labfile

import (
	"fmt"
	"net/netip"
	"reflect"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/scenarios"
)

// sameLab compares what a file carries as data: everything but the Go
// values (timeline, expectations, middlebox closures), which are compared
// by presence and name.
func sameLab(a, b scenarios.Scenario) string {
	type plain struct {
		Name, Description string
		Labels            []string
		Topology          any
		Family            any
		Sysctls           any
		Services          []scenarios.Service
		Clients           []scenarios.Client
		Timeline          bool
		Timeout           any
		KernelNeeds       []string
	}
	strip := func(s scenarios.Scenario) plain {
		return plain{s.Name, s.Description, s.Labels, s.Topology, s.Family, s.Sysctls, s.Services, s.Clients, s.Timeline != nil, s.Timeout,
			s.KernelNeeds}
	}
	pa, pb := strip(a), strip(b)
	opts := cmp.Options{cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{}),
		// Its state is shared with its own build's timeline, which comes with it.
		cmpopts.IgnoreUnexported(scenarios.ScriptedListener{})}
	if d := cmp.Diff(pa, pb, opts); d != "" {
		return fmt.Sprintf("the loaded lab differs (-want +got):\n%s", d)
	}
	if len(a.Middleboxes) != len(b.Middleboxes) {
		return fmt.Sprintf("%d middleboxes, want %d", len(b.Middleboxes), len(a.Middleboxes))
	}
	for i := range a.Middleboxes {
		ma, mb := a.Middleboxes[i], b.Middleboxes[i]
		if ma.Box.Name != mb.Box.Name || ma.Box.Description != mb.Box.Description || ma.Placement != mb.Placement || ma.Node != mb.Node || ma.Port != mb.Port || ma.When != mb.When {
			return fmt.Sprintf("middlebox %d: got %s %v %q %d %q, want %s %v %q %d %q", i, mb.Box.Name, mb.Placement, mb.Node, mb.Port, mb.When, ma.Box.Name, ma.Placement, ma.Node, ma.Port, ma.When)
		}
		// What the box does, not only its name: the rules it builds.
		if (ma.Box.Rules == nil) != (mb.Box.Rules == nil) || (ma.Box.Install == nil) != (mb.Box.Install == nil) {
			return fmt.Sprintf("middlebox %d (%s): rules or installer lost", i, ma.Box.Name)
		}
		if ma.Box.Rules != nil {
			p := middlebox.Params{ServicePort: 7000, Placement: ma.Placement}
			ra, erra := ma.Box.Rules(a.Family, p)
			rb, errb := mb.Box.Rules(b.Family, p)
			if !reflect.DeepEqual(ra, rb) || (erra == nil) != (errb == nil) {
				return fmt.Sprintf("middlebox %d (%s): its rules differ:\n got %v\nwant %v", i, ma.Box.Name, rb, ra)
			}
		}
	}
	return ""
}
