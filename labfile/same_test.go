package labfile

import (
	"fmt"
	"net/netip"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

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
	}
	strip := func(s scenarios.Scenario) plain {
		return plain{s.Name, s.Description, s.Labels, s.Topology, s.Family, s.Sysctls, s.Services, s.Clients, s.Timeline != nil, s.Timeout}
	}
	pa, pb := strip(a), strip(b)
	opts := cmp.Options{cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{})}
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
	}
	return ""
}
