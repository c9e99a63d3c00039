package profile

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tfolab/tfolab/lab"
)

// Keys is a set of normalized sysctl keys ("net/ipv4/tcp_fastopen").
type Keys map[string]bool

// Refusal is one line the lab cannot apply.
type Refusal struct {
	Setting Setting
	Why     string
}

func (r Refusal) String() string {
	return fmt.Sprintf("%s: %s: %s", r.Setting.Where(), r.Setting, r.Why)
}

// RefusedError lists every line of a profile the lab cannot apply. It is
// returned before any scenario namespace exists: nothing was changed.
type RefusedError struct{ Refusals []Refusal }

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "profile refused: %d line(s) the lab cannot apply (nothing was changed):", len(e.Refusals))
	for _, r := range e.Refusals {
		b.WriteString("\n  " + r.String())
	}
	return b.String()
}

// Note is a line that applies to nothing in the lab, or only in part.
type Note struct {
	Setting Setting
	Text    string
}

func (n Note) String() string { return fmt.Sprintf("%s: %s: %s", n.Setting.Where(), n.Setting, n.Text) }

// Why a key is refused.
const (
	whyNotNet = "not a network sysctl: the lab applies only net.* keys that every network namespace has its own copy of, " +
		"inside its own namespaces; applying this one would change the host"
	whyHostGlobal = "a host-wide network sysctl (the kernel registers it only in the initial network namespace, " +
		"so a lab namespace has no copy of it): applying it would change the host"
)

// CheckStatic refuses, without root and before anything is created, every
// key outside net.*.
func (p *Profile) CheckStatic() error {
	var refused []Refusal
	for _, s := range p.Settings {
		if s.Value != nil && !isNet(s.Key) {
			refused = append(refused, Refusal{s, whyNotNet})
		}
	}
	if len(refused) > 0 {
		return &RefusedError{refused}
	}
	return nil
}

// isNet reports whether a key or pattern lies under net/.
func isNet(key string) bool {
	first, _, _ := strings.Cut(key, "/")
	return first == "net"
}

// Plan is a resolved profile: the settings that apply in a lab namespace,
// checked against this kernel.
type Plan struct {
	Profile *Profile
	// Explicit are the keys to write with their values, in profile order.
	Explicit []Setting
	// Globs are the patterns to expand over a node's keys, in order.
	Globs []Setting
	// Notes are lines that apply to nothing in the lab, or only in part.
	Notes []Note
	// Namespace are the keys of a fresh lab namespace.
	Namespace Keys
	excluded  Keys
}

// Writer writes key (normalized) in a scratch lab namespace: Resolve's
// proof that the kernel takes each value before any scenario runs.
type Writer func(key, value string) error

// Resolve checks p against this kernel: it creates a scratch lab namespace
// (never the host's), lists the keys a fresh non-initial network namespace
// has, writes each of the profile's values there to see the kernel take
// it, and closes it again. It needs root. Any line the lab cannot apply
// makes it return a *RefusedError naming every such line (the scratch
// namespace is gone by then, and no scenario namespace was ever made).
func Resolve(p *Profile) (*Plan, error) {
	host, err := listKeys()
	if err != nil {
		return nil, fmt.Errorf("list the host's network sysctls (read only): %w", err)
	}
	l := lab.New()
	defer l.Close()
	ns, err := l.AddNamespace("sysctlprobe")
	if err != nil {
		return nil, fmt.Errorf("scratch namespace for the profile's keys: %w", err)
	}
	var keys Keys
	if err := ns.Do(func() (err error) { keys, err = listKeys(); return err }); err != nil {
		return nil, fmt.Errorf("list a lab namespace's network sysctls: %w", err)
	}
	write := func(key, value string) error {
		return ns.Do(func() error { return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0) })
	}
	plan, err := ResolveWith(p, keys, host, write)
	if cerr := l.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close the scratch namespace: %w", cerr)
	}
	return plan, err
}

// listKeys lists every sysctl under /proc/sys/net as this thread's network
// namespace sees it.
func listKeys() (Keys, error) {
	keys := Keys{}
	err := filepath.WalkDir("/proc/sys/net", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			keys[strings.TrimPrefix(p, "/proc/sys/")] = true
		}
		return nil
	})
	return keys, err
}

// deviceKey splits net/ipv4/conf/DEV/rest (and ipv6, and neigh) into its
// parts: the keys systemd also applies per interface as each appears.
func deviceKey(key string) (prefix, dev, rest string, ok bool) {
	parts := strings.SplitN(key, "/", 5)
	if len(parts) != 5 || parts[0] != "net" || (parts[1] != "ipv4" && parts[1] != "ipv6") || (parts[2] != "conf" && parts[2] != "neigh") {
		return "", "", "", false
	}
	return strings.Join(parts[:3], "/"), parts[3], parts[4], true
}

// onDevice is key with its device replaced.
func onDevice(prefix, dev, rest string) string { return prefix + "/" + dev + "/" + rest }

// ResolveWith is Resolve with the key sets and the scratch writer given:
// ns are the keys of a fresh non-initial namespace, host those of the
// initial one (listed, never written).
func ResolveWith(p *Profile, ns, host Keys, write Writer) (*Plan, error) {
	plan := &Plan{Profile: p, Namespace: ns, excluded: Keys{}}
	var refused []Refusal
	// Every line the lab cannot apply is listed at once: the non-network
	// keys first, then what this kernel says of the rest.
	if err := p.CheckStatic(); err != nil {
		refused = append(refused, err.(*RefusedError).Refusals...)
	}
	refuse := func(s Setting, why string) { refused = append(refused, Refusal{s, why}) }
	note := func(s Setting, text string) { plan.Notes = append(plan.Notes, Note{s, text}) }
	// inNamespace: the key itself, or the same knob on the namespace's lo
	// (a device the lab may have, such as to-router, or may not).
	inNamespace := func(key string) (string, bool) {
		if ns[key] {
			return key, true
		}
		if prefix, _, rest, ok := deviceKey(key); ok && ns[onDevice(prefix, "lo", rest)] {
			return onDevice(prefix, "lo", rest), true
		}
		return "", false
	}
	for _, s := range p.Settings {
		if s.Value == nil {
			plan.excluded[s.Key] = true
			if !isNet(s.Key) {
				note(s, "excludes a key outside net.* from globs: nothing the lab applies")
			}
			continue
		}
		plan.excluded[s.Key] = true // an explicit key is never set by a glob
	}
	for _, s := range p.Settings {
		if s.Value == nil || !isNet(s.Key) {
			continue
		}
		if s.Glob() {
			var hostOnly []string
			n := 0
			for _, k := range slices.Sorted(maps.Keys(host)) {
				if matchGlob(s.Key, k) && !ns[k] && !deviceOfHost(k, ns) {
					hostOnly = append(hostOnly, Dotted(k))
				}
			}
			for _, k := range slices.Sorted(maps.Keys(ns)) {
				if !matchGlob(s.Key, k) || plan.excluded[k] {
					continue
				}
				n++
				if err := write(k, *s.Value); err != nil {
					if s.IgnoreFailure {
						note(s, fmt.Sprintf("the kernel refuses it for %s (%v): skipped there, as '-' asks", Dotted(k), err))
						continue
					}
					refuse(s, fmt.Sprintf("the kernel refuses it for %s in a network namespace: %v", Dotted(k), err))
				}
			}
			if len(hostOnly) > 0 {
				note(s, fmt.Sprintf("also matches %d host-wide key(s) no namespace has (%s): not applied", len(hostOnly), abbreviate(hostOnly, 3)))
			}
			if n == 0 {
				note(s, "matches no key of a lab namespace (systemd-sysctl: \"No match for glob\")")
			}
			plan.Globs = append(plan.Globs, s)
			continue
		}
		target, ok := inNamespace(s.Key)
		switch {
		case !ok && host[s.Key]:
			refuse(s, whyHostGlobal)
			continue
		case !ok && s.IgnoreFailure:
			note(s, "no such key on this kernel: skipped, as '-' asks")
			continue
		case !ok:
			refuse(s, "no such key on this kernel, in a network namespace or on the host (a typo, or a module not loaded?); "+
				"prefix the line with '-' to skip it, as systemd-sysctl would")
			continue
		}
		if err := write(target, *s.Value); err != nil {
			if s.IgnoreFailure {
				note(s, fmt.Sprintf("the kernel refuses it (%v): skipped, as '-' asks", err))
				continue
			}
			refuse(s, fmt.Sprintf("the kernel refuses it in a network namespace: %v", err))
			continue
		}
		if strings.Contains(s.Key, ".") {
			note(s, "a device whose name has a dot: no lab node has one")
		}
		plan.Explicit = append(plan.Explicit, s)
	}
	if len(refused) > 0 {
		return nil, &RefusedError{refused}
	}
	return plan, nil
}

// deviceOfHost reports whether a host key is a device key whose knob a
// namespace has too (a host interface's conf entry, not a global key).
func deviceOfHost(key string, ns Keys) bool {
	prefix, _, rest, ok := deviceKey(key)
	return ok && ns[onDevice(prefix, "lo", rest)]
}

func abbreviate(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(", … %d more", len(items)-n)
}

// Applied is one sysctl a node gets from the profile.
type Applied struct {
	// Key is in the dotted form the lab writes ("net.ipv4.conf.to-router.rp_filter").
	Key, Value string
	// From is the setting that set it (a glob, for an expanded key).
	From Setting
}

// For returns what a node with the given link interfaces gets: every
// explicit key it has (a device key only if it has that device, lo, all
// or default), then every glob expanded over the node's keys (a fresh
// namespace's, plus each conf/neigh knob of lo on each of its interfaces),
// excluding explicit and excluded keys; where globs overlap, the later
// wins, as it is written later.
func (pl *Plan) For(ifnames []string) []Applied {
	if pl == nil {
		return nil
	}
	node := Keys{}
	for k := range pl.Namespace {
		node[k] = true
		if prefix, dev, rest, ok := deviceKey(k); ok && dev == "lo" {
			for _, ifname := range ifnames {
				node[onDevice(prefix, ifname, rest)] = true
			}
		}
	}
	var out []Applied
	index := map[string]int{}
	set := func(key string, value string, from Setting) {
		d := Dotted(key)
		if i, ok := index[d]; ok {
			out[i] = Applied{d, value, from}
			return
		}
		index[d] = len(out)
		out = append(out, Applied{d, value, from})
	}
	// systemd applies in the settings' order; so does this, explicit keys
	// and globs interleaved.
	globAt := map[string]bool{}
	for _, g := range pl.Globs {
		globAt[g.Where()] = true
	}
	for _, s := range pl.Profile.Settings {
		if s.Value == nil {
			continue
		}
		if s.Glob() {
			if !globAt[s.Where()] {
				continue
			}
			for _, k := range slices.Sorted(maps.Keys(node)) {
				if matchGlob(s.Key, k) && !pl.excluded[k] && !strings.Contains(k, ".") {
					set(k, *s.Value, s)
				}
			}
			continue
		}
		if !pl.explicit(s) || !node[s.Key] || strings.Contains(s.Key, ".") {
			continue
		}
		set(s.Key, *s.Value, s)
	}
	return out
}

func (pl *Plan) explicit(s Setting) bool {
	for _, e := range pl.Explicit {
		if e.Where() == s.Where() {
			return true
		}
	}
	return false
}

// Map turns applied settings into the lab's form: dotted key -> value.
func Map(as []Applied) map[string]string {
	out := make(map[string]string, len(as))
	for _, a := range as {
		out[a.Key] = a.Value
	}
	return out
}
