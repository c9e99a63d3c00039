package profile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func parse(t *testing.T, files ...[2]string) *Profile {
	t.Helper()
	var srcs []Source
	for _, f := range files {
		srcs = append(srcs, NewSource(f[0], []byte(f[1])))
	}
	return FromSources(srcs...)
}

// settings renders a profile's settings as "key=value@file:line" for
// comparison, "-key@..." for an exclusion, "!" marking an ignored failure.
func settings(p *Profile) []string {
	var out []string
	for _, s := range p.Settings {
		v := "-" + s.Key
		if s.Value != nil {
			v = s.Key + "=" + *s.Value
			if s.IgnoreFailure {
				v = "!" + v
			}
		}
		out = append(out, v+"@"+s.Where())
	}
	return out
}

func TestParseLines(t *testing.T) {
	p := parse(t, [2]string{"a.conf", `
# comment
; comment too
   # indented comment

net.ipv4.tcp_fastopen = 3
net.ipv4.tcp_syn_retries=4
  net.core.somaxconn   =   512   
-net.ipv4.tcp_fastopen_key = 00000000-00000000-00000000-00000000
net/ipv4/conf/eth0.100/rp_filter = 1
net.ipv4.conf.eth1/200.rp_filter = 2
kernel.domainname = a value with spaces
-net.ipv4.conf.all.rp_filter
not an assignment
net.ipv4.tcp_ecn =
= 5
`})
	want := []string{
		"net/ipv4/tcp_fastopen=3@a.conf:6",
		"net/ipv4/tcp_syn_retries=4@a.conf:7",
		"net/core/somaxconn=512@a.conf:8",
		"!net/ipv4/tcp_fastopen_key=00000000-00000000-00000000-00000000@a.conf:9",
		"net/ipv4/conf/eth0.100/rp_filter=1@a.conf:10",
		"net/ipv4/conf/eth1.200/rp_filter=2@a.conf:11",
		"kernel/domainname=a value with spaces@a.conf:12",
		"-net/ipv4/conf/all/rp_filter@a.conf:13",
		"net/ipv4/tcp_ecn=@a.conf:15",
	}
	if diff := cmp.Diff(want, settings(p)); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
	if len(p.Warnings) != 2 || p.Warnings[0].Line != 14 || p.Warnings[1].Line != 16 {
		t.Errorf("warnings %v, want lines 14 (not an assignment) and 16 (no key)", p.Warnings)
	}
}

func TestNormalizeAndDotted(t *testing.T) {
	for _, c := range []struct{ in, norm, dotted string }{
		{"net.ipv4.tcp_fastopen", "net/ipv4/tcp_fastopen", "net.ipv4.tcp_fastopen"},
		{"net/ipv4/tcp_fastopen", "net/ipv4/tcp_fastopen", "net.ipv4.tcp_fastopen"},
		{"/net/ipv4//tcp_fastopen/", "net/ipv4/tcp_fastopen", "net.ipv4.tcp_fastopen"},
		{"net.ipv4.conf.enp3s0/200.forwarding", "net/ipv4/conf/enp3s0.200/forwarding", "net.ipv4.conf.enp3s0/200.forwarding"},
		{"net/ipv4/conf/enp3s0.200/forwarding", "net/ipv4/conf/enp3s0.200/forwarding", "net.ipv4.conf.enp3s0/200.forwarding"},
		{"net.ipv4.conf.*.rp_filter", "net/ipv4/conf/*/rp_filter", "net.ipv4.conf.*.rp_filter"},
	} {
		if got := Normalize(c.in); got != c.norm {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.norm)
		}
		if got := Dotted(c.norm); got != c.dotted {
			t.Errorf("Dotted(%q) = %q, want %q", c.norm, got, c.dotted)
		}
	}
}

// Later lines and later files override; a repeated identical value keeps
// its place and gains the '-'; a changed value moves to the end.
func TestOverrides(t *testing.T) {
	p := parse(t,
		[2]string{"10-a.conf", "net.ipv4.tcp_fastopen = 1\nnet.ipv4.tcp_syn_retries = 6\nnet.ipv4.tcp_timestamps = 1\n"},
		[2]string{"20-b.conf", "net.ipv4.tcp_fastopen = 3\n-net.ipv4.tcp_syn_retries = 6\nnet/ipv4/tcp_timestamps = 0\n-net.ipv4.tcp_timestamps\n"},
	)
	want := []string{
		"!net/ipv4/tcp_syn_retries=6@10-a.conf:2",
		"net/ipv4/tcp_fastopen=3@20-b.conf:1",
		"-net/ipv4/tcp_timestamps@20-b.conf:4", // an exclusion replaces the value: nothing is set
	}
	if diff := cmp.Diff(want, settings(p)); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
}

// Directories merge by file name, the first directory given winning;
// /dev/null links and empty files mask; names are read in lexical order;
// explicit files keep their place.
func TestDirectories(t *testing.T) {
	etc, lib := t.TempDir(), t.TempDir()
	write := func(dir, name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(lib, "10-tfo.conf", "net.ipv4.tcp_fastopen = 1\n")
	write(etc, "10-tfo.conf", "net.ipv4.tcp_fastopen = 3\n") // overrides lib's
	write(lib, "50-retries.conf", "net.ipv4.tcp_syn_retries = 3\n")
	write(lib, "90-masked.conf", "net.ipv4.tcp_ecn = 1\n")
	if err := os.Symlink(os.DevNull, filepath.Join(etc, "90-masked.conf")); err != nil {
		t.Fatal(err)
	}
	write(lib, "95-empty-masks.conf", "net.ipv4.tcp_sack = 0\n")
	write(etc, "95-empty-masks.conf", "\n")
	write(lib, "README", "net.ipv4.tcp_sack = 0\n") // not *.conf
	extra := filepath.Join(t.TempDir(), "00-extra.conf")
	if err := os.WriteFile(extra, []byte("net.ipv4.tcp_syn_retries = 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Parse(extra, etc, lib)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range p.Files {
		names = append(names, f.Name)
	}
	if diff := cmp.Diff([]string{"00-extra.conf", "10-tfo.conf", "50-retries.conf"}, names); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	want := []string{"net/ipv4/tcp_fastopen=3@10-tfo.conf:1", "net/ipv4/tcp_syn_retries=3@50-retries.conf:1"}
	if diff := cmp.Diff(want, settings(p)); diff != "" {
		t.Errorf("settings (-want +got):\n%s", diff)
	}
	if _, err := Parse(filepath.Join(etc, "missing.conf")); err == nil {
		t.Error("a missing file parsed")
	}
}

func TestDefaultProfileParses(t *testing.T) {
	d := Default()
	p := FromSources(d)
	if len(p.Warnings) > 0 || len(p.Settings) == 0 {
		t.Fatalf("default profile: %d settings, warnings %v", len(p.Settings), p.Warnings)
	}
	if err := p.CheckStatic(); err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Settings {
		if strings.Contains(s.Key, "tcp_fastopen") {
			t.Errorf("%s: the default profile must leave the keys scenarios set alone", s)
		}
	}
}

// A fake kernel: the keys of a fresh namespace, and of the host.
var (
	nsKeys = Keys{
		"net/ipv4/tcp_fastopen": true, "net/ipv4/tcp_syn_retries": true, "net/core/somaxconn": true,
		"net/ipv4/conf/all/rp_filter": true, "net/ipv4/conf/default/rp_filter": true, "net/ipv4/conf/lo/rp_filter": true,
		"net/ipv4/conf/lo/forwarding": true, "net/ipv6/conf/lo/forwarding": true,
	}
	hostKeys = func() Keys {
		k := Keys{"net/core/netdev_max_backlog": true, "net/ipv4/conf/eth0/rp_filter": true, "net/core/rmem_max": true}
		for key := range nsKeys {
			k[key] = true
		}
		return k
	}()
)

func okWriter(written *[]string) Writer {
	return func(key, value string) error {
		if written != nil {
			*written = append(*written, key+"="+value)
		}
		return nil
	}
}

func TestRefusals(t *testing.T) {
	p := parse(t, [2]string{"candidate.conf", `net.ipv4.tcp_fastopen = 3
vm.swappiness = 10
net.core.netdev_max_backlog = 5000
net.ipv4.tcp_fastopen_blackhole_timeout = 1
-net.ipv4.tcp_no_such_key = 1
-net.core.rmem_max = 1
kernel.* = 1
`})
	// The non-net keys are refused without any kernel at all.
	err := p.CheckStatic()
	var re *RefusedError
	if !errors.As(err, &re) || len(re.Refusals) != 2 {
		t.Fatalf("CheckStatic: %v, want 2 refusals (vm.swappiness, kernel.*)", err)
	}
	if !strings.Contains(err.Error(), "candidate.conf:2: vm.swappiness = 10: not a network sysctl") {
		t.Errorf("refusal does not name file, line and key:\n%v", err)
	}
	// Against the kernel's own key sets, every refusal at once: the
	// non-network keys, the host-wide key (with or without '-'), and a
	// missing key without '-'.
	p = parse(t, [2]string{"candidate.conf", `net.ipv4.tcp_fastopen = 3
net.core.netdev_max_backlog = 5000
net.ipv4.tcp_fastopen_blackhole_timeout = 1
-net.ipv4.tcp_no_such_key = 1
-net.core.rmem_max = 1
vm.swappiness = 10
`})
	_, err = ResolveWith(p, nsKeys, hostKeys, okWriter(nil))
	if !errors.As(err, &re) {
		t.Fatalf("ResolveWith: %v, want a *RefusedError", err)
	}
	var lines []int
	for _, r := range re.Refusals {
		lines = append(lines, r.Setting.Line)
	}
	if diff := cmp.Diff([]int{6, 2, 3, 5}, lines); diff != "" {
		t.Errorf("refused lines (-want +got):\n%s\n%v", diff, err)
	}
	for _, want := range []string{"candidate.conf:2: net.core.netdev_max_backlog = 5000: a host-wide", "candidate.conf:3: net.ipv4.tcp_fastopen_blackhole_timeout = 1: no such key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestWriteFailure(t *testing.T) {
	p := parse(t, [2]string{"p.conf", "net.ipv4.tcp_fastopen = lots\n-net.ipv4.tcp_syn_retries = 300\nnet.core.somaxconn = 4096\n"})
	einval := errors.New("invalid argument")
	write := func(key, value string) error {
		if value == "lots" || value == "300" {
			return einval
		}
		return nil
	}
	_, err := ResolveWith(p, nsKeys, hostKeys, write)
	var re *RefusedError
	if !errors.As(err, &re) || len(re.Refusals) != 1 || re.Refusals[0].Setting.Line != 1 {
		t.Fatalf("got %v, want line 1 refused (the kernel refuses the value), line 2 skipped ('-')", err)
	}
	p = parse(t, [2]string{"p.conf", "-net.ipv4.tcp_syn_retries = 300\nnet.core.somaxconn = 4096\n"})
	plan, err := ResolveWith(p, nsKeys, hostKeys, write)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Notes) != 1 || plan.Notes[0].Setting.Line != 1 {
		t.Errorf("notes %v, want the skipped line 1", plan.Notes)
	}
	if got := Map(plan.For(nil)); !cmp.Equal(got, map[string]string{"net.core.somaxconn": "4096"}) {
		t.Errorf("For: %v", got)
	}
}

// The sysctl.d(5) example: rp_filter 2 on every interface but hub0 (here
// to-router), all excluded, default set first.
func TestGlobs(t *testing.T) {
	p := parse(t, [2]string{"20-rp_filter.conf", `net.ipv4.conf.default.rp_filter = 2
net.ipv4.conf.*.rp_filter = 2
-net.ipv4.conf.all.rp_filter
net.ipv4.conf.to-router.rp_filter = 1
net.ipv4.conf.eth0.rp_filter = 0
net.*.conf.*.forwarding = 1
net.ipv6.conf.*.forwarding = 0
net.core.* = 100
`})
	var written []string
	plan, err := ResolveWith(p, nsKeys, hostKeys, okWriter(&written))
	if err != nil {
		t.Fatal(err)
	}
	got := Map(plan.For([]string{"to-router", "to-server"}))
	want := map[string]string{
		"net.ipv4.conf.default.rp_filter":    "2",
		"net.ipv4.conf.lo.rp_filter":         "2",
		"net.ipv4.conf.to-server.rp_filter":  "2",
		"net.ipv4.conf.to-router.rp_filter":  "1", // explicit beats the glob, wherever it stands
		"net.ipv4.conf.lo.forwarding":        "1",
		"net.ipv4.conf.to-router.forwarding": "1",
		"net.ipv4.conf.to-server.forwarding": "1",
		"net.ipv6.conf.lo.forwarding":        "0", // the later glob wins
		"net.ipv6.conf.to-router.forwarding": "0",
		"net.ipv6.conf.to-server.forwarding": "0",
		"net.core.somaxconn":                 "100", // per namespace; netdev_max_backlog is not
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("For (-want +got):\n%s", diff)
	}
	// eth0 is no lab device: nothing to apply on a node without it.
	if _, ok := got["net.ipv4.conf.eth0.rp_filter"]; ok {
		t.Error("a key of a device the node lacks was applied")
	}
	var hostNote bool
	for _, n := range plan.Notes {
		hostNote = hostNote || (n.Setting.Line == 8 && strings.Contains(n.Text, "net.core.netdev_max_backlog"))
	}
	if !hostNote {
		t.Errorf("no note that net.core.* also matches host-wide keys: %v", plan.Notes)
	}
	for _, w := range written {
		if strings.HasPrefix(w, "net/core/netdev_max_backlog") || strings.HasPrefix(w, "net/core/rmem_max") {
			t.Errorf("wrote a host-wide key in the scratch namespace: %s", w)
		}
	}
}
