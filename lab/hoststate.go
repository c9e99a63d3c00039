package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab/cost"
	"github.com/vishvananda/netlink"
)

// volatileSysctls change on their own (the host's own traffic moves them),
// so a before/after comparison skips them. Each one is a counter or gauge,
// not configuration.
var volatileSysctls = map[string]bool{
	"net.netfilter.nf_conntrack_count": true,
}

// HostState is a textual snapshot of the root namespace's network
// configuration: links, addresses, routes, rules, iptables (nft and legacy)
// and every net.* sysctl. Two snapshots taken before and after a run must be
// identical; the lab promises never to touch any of it.
type HostState struct {
	Sections map[string]string
}

// SnapshotHost reads the state of the namespace the calling process's main
// thread is in. Call it from the root namespace (the test process is there;
// it never switches its main thread).
func SnapshotHost(ctx context.Context) (HostState, error) {
	s := HostState{Sections: map[string]string{}}
	var errs []error
	add := func(name string, f func() (string, error)) {
		v, err := f()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		s.Sections[name] = v
	}
	add("links", hostLinks)
	add("addresses", hostAddrs)
	add("routes", hostRoutes)
	add("rules", hostRules)
	add("sysctl", hostSysctls)
	for _, tool := range []string{"iptables-save", "ip6tables-save", "iptables-legacy-save", "ip6tables-legacy-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			continue // the legacy tools are optional
		}
		add(tool, func() (string, error) { return saveRules(ctx, tool) })
	}
	return s, errors.Join(errs...)
}

// Diff returns a readable list of the sections that differ, or "".
func (s HostState) Diff(after HostState) string {
	var b strings.Builder
	names := map[string]string{}
	maps.Copy(names, s.Sections)
	maps.Copy(names, after.Sections)
	for _, k := range slices.Sorted(maps.Keys(names)) {
		if s.Sections[k] == after.Sections[k] {
			continue
		}
		fmt.Fprintf(&b, "== %s changed:\n", k)
		before := lineSet(s.Sections[k])
		now := lineSet(after.Sections[k])
		for _, l := range slices.Sorted(maps.Keys(before)) {
			if !now[l] {
				fmt.Fprintf(&b, "  - %s\n", l)
			}
		}
		for _, l := range slices.Sorted(maps.Keys(now)) {
			if !before[l] {
				fmt.Fprintf(&b, "  + %s\n", l)
			}
		}
	}
	return b.String()
}

// String renders the snapshot, one section after another.
func (s HostState) String() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(s.Sections)) {
		fmt.Fprintf(&b, "== %s\n%s\n", k, s.Sections[k])
	}
	return b.String()
}

func hostLinks() (string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return "", err
	}
	var lines []string
	for _, l := range links {
		a := l.Attrs()
		// Flags and MTU, not counters or oper state (a host link may flap).
		lines = append(lines, fmt.Sprintf("%d %s %s mtu %d flags %s master %d", a.Index, a.Name, l.Type(), a.MTU, a.Flags, a.MasterIndex))
	}
	return joinSorted(lines), nil
}

func hostAddrs() (string, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return "", err
	}
	var lines []string
	for _, a := range addrs {
		lines = append(lines, fmt.Sprintf("%d %s", a.LinkIndex, a.IPNet))
	}
	return joinSorted(lines), nil
}

func hostRoutes() (string, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return "", err
	}
	var lines []string
	for _, r := range routes {
		lines = append(lines, fmt.Sprintf("table %d dst %v gw %v dev %d src %v proto %d scope %d type %d", r.Table, r.Dst, r.Gw, r.LinkIndex, r.Src, r.Protocol, r.Scope, r.Type))
	}
	return joinSorted(lines), nil
}

func hostRules() (string, error) {
	rules, err := netlink.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return "", err
	}
	var lines []string
	for _, r := range rules {
		lines = append(lines, fmt.Sprintf("%d: from %v to %v table %d mark %v", r.Priority, r.Src, r.Dst, r.Table, r.Mark))
	}
	return joinSorted(lines), nil
}

func hostSysctls() (string, error) {
	var lines []string
	err := filepath.WalkDir("/proc/sys/net", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil // unreadable directory: nothing to compare
		}
		key := strings.ReplaceAll(strings.TrimPrefix(path, "/proc/sys/"), "/", ".")
		if volatileSysctls[key] {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // write-only entries such as net.ipv4.route.flush
		}
		lines = append(lines, key+" = "+strings.Join(strings.Fields(string(b)), " "))
		return nil
	})
	return joinSorted(lines), err
}

var chainCounters = regexp.MustCompile(`\[\d+:\d+\]`)

// NormalizeRuleDump drops the comment lines (they carry a timestamp) and the
// packet/byte counters of chain policies, which the host's own traffic moves.
func NormalizeRuleDump(out []byte) string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
			continue
		}
		lines = append(lines, chainCounters.ReplaceAllString(l, "[-:-]"))
	}
	return strings.Join(lines, "\n")
}

func saveRules(ctx context.Context, tool string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tool)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	cost.Record(ctx, tool, cmd.ProcessState)
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return NormalizeRuleDump(out), nil
}

func joinSorted(lines []string) string {
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func lineSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(s, "\n") {
		m[l] = true
	}
	return m
}
