// Package profile reads sysctl.d profiles exactly as systemd-sysctl
// (src/sysctl/sysctl.c) reads them, and turns one into the per-namespace
// sysctls a lab node gets: the TFO report runs the whole catalogue under a
// user's profile without touching the host.
//
// The format (sysctl.d(5)):
//
//	# comment            ; comment too            (blank lines are ignored)
//	net.ipv4.tcp_fastopen = 3                      key = value, whitespace trimmed
//	net/ipv4/conf/eth0.100/rp_filter = 1           '/' first: dots stay dots
//	net.ipv4.conf.eth0/100.rp_filter = 1           '.' first: '.' and '/' swap
//	-net.ipv4.tcp_fastopen_key = ...               '-': a failure to set it is ignored
//	net.ipv4.conf.*.rp_filter = 2                  glob(7): every existing key it matches
//	-net.ipv4.conf.all.rp_filter                   '-' and no '=': excluded from globs
//
// A later assignment of a key replaces an earlier one (and moves to the end
// of the order); an explicit key is never set by a glob, wherever the glob
// stands; globs apply in order, so a later glob wins where two match.
// Several files are read in the order given, as `systemd-sysctl FILE...`
// does; a directory stands for a sysctl.d directory: its *.conf files, and
// those of every other directory given, are merged by file name (the
// directory given first wins, as /etc/sysctl.d wins over /usr/lib/sysctl.d;
// a symlink to /dev/null or an empty file masks the name) and read in the
// lexical order of their names.
//
// What the lab can apply is narrower than what systemd can: only net.* keys
// that every network namespace has its own copy of, written inside the lab's
// namespaces. Any other key (vm.*, kernel.*, or a net.* key the kernel
// registers only in the initial namespace, such as
// net.core.netdev_max_backlog) is refused, with its file and line, before
// any namespace exists: applying it would mean changing this machine.
package profile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Source is one profile file as read.
type Source struct {
	// Path is where it was read from ("" for the embedded default), Name
	// its base name (what sysctl.d orders and overrides by).
	Path, Name string
	// SHA256 is the hex digest of its bytes: the report's stamp.
	SHA256 string
	Data   []byte `json:"-"`
}

// NewSource wraps bytes read from path.
func NewSource(path string, data []byte) Source {
	sum := sha256.Sum256(data)
	return Source{Path: path, Name: filepath.Base(path), SHA256: hex.EncodeToString(sum[:]), Data: data}
}

// Setting is one assignment (or exclusion) that survived the overrides.
type Setting struct {
	// Key is normalized as systemd does: the path under /proc/sys, with
	// '/' separators ("net/ipv4/conf/eth0.100/rp_filter").
	Key string
	// Value is nil for an exclusion ("-key" with no '='): it keeps the
	// key from every glob and sets nothing.
	Value *string
	// IgnoreFailure is the leading '-': a failure to set it is ignored.
	IgnoreFailure bool
	// File and Line say where it was written.
	File string
	Line int
}

// Glob reports whether the key is a glob(7) pattern.
func (s Setting) Glob() bool { return IsGlob(s.Key) }

// Where is "file:line".
func (s Setting) Where() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

func (s Setting) String() string {
	dash := ""
	if s.IgnoreFailure || s.Value == nil {
		dash = "-"
	}
	if s.Value == nil {
		return dash + Dotted(s.Key)
	}
	return fmt.Sprintf("%s%s = %s", dash, Dotted(s.Key), *s.Value)
}

// Warning is a line systemd-sysctl would skip with a warning.
type Warning struct {
	File string
	Line int
	Text string
}

func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Text) }

// Profile is a parsed set of files.
type Profile struct {
	// Files are the sources in the order they were read.
	Files []Source
	// Settings are in systemd-sysctl's order: that of their last
	// assignment.
	Settings []Setting
	// Warnings are lines that are not assignments (skipped, as systemd
	// does, with a warning).
	Warnings []Warning
}

// IsGlob reports whether a key is a pattern (systemd's string_is_glob).
func IsGlob(key string) bool { return strings.ContainsAny(key, "*?[") }

// Normalize is systemd's sysctl_normalize: if the first separator is a
// '.', dots and slashes swap; then the path is simplified and loses its
// leading '/'. "net.ipv4.conf.eth0/100.rp_filter" becomes
// "net/ipv4/conf/eth0.100/rp_filter".
func Normalize(key string) string {
	if i := strings.IndexAny(key, "./"); i >= 0 && key[i] == '.' {
		b := []byte(key)
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '.':
				b[j] = '/'
			case '/':
				b[j] = '.'
			}
		}
		key = string(b)
	}
	// path_simplify: no empty or "." components, no trailing slash.
	var parts []string
	for _, p := range strings.Split(key, "/") {
		if p != "" && p != "." {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}

// Dotted is a normalized key as sysctl(8) prints it: components joined by
// '.', with a dot inside a component shown as '/'.
func Dotted(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, ".", "/")
	}
	return strings.Join(parts, ".")
}

// Parse reads files and directories as systemd-sysctl would (see the
// package comment) and returns the merged profile. A file that cannot be
// read is an error; lines that are not assignments are warnings.
func Parse(paths ...string) (*Profile, error) {
	srcs, err := readAll(paths)
	if err != nil {
		return nil, err
	}
	return FromSources(srcs...), nil
}

// FromSources parses sources already read, in order.
func FromSources(srcs ...Source) *Profile {
	p := &Profile{}
	order := map[string]int{} // key -> index in p.Settings
	for _, src := range srcs {
		p.Files = append(p.Files, src)
		sc := bufio.NewScanner(bytes.NewReader(src.Data))
		sc.Buffer(make([]byte, 64<<10), 1<<20) // LONG_LINE_MAX is 1 MiB
		for n := 1; sc.Scan(); n++ {
			s, w, ok := parseLine(src.Name, n, sc.Text())
			if w != "" {
				p.Warnings = append(p.Warnings, Warning{src.Name, n, w})
			}
			if !ok {
				continue
			}
			if i, dup := order[s.Key]; dup {
				old := p.Settings[i]
				if eqValue(old.Value, s.Value) {
					// Same value again: the first stays where it is, and
					// either '-' makes its failure ignorable.
					p.Settings[i].IgnoreFailure = old.IgnoreFailure || s.IgnoreFailure
					continue
				}
				// A new value replaces the old and goes to the end.
				p.Settings = append(p.Settings[:i], p.Settings[i+1:]...)
				for k, j := range order {
					if j > i {
						order[k] = j - 1
					}
				}
			}
			order[s.Key] = len(p.Settings)
			p.Settings = append(p.Settings, s)
		}
	}
	return p
}

func eqValue(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// parseLine is systemd's parse_line (plus the comment check of its line
// reader): it returns the setting, a warning, and whether the line set
// anything.
func parseLine(file string, n int, line string) (Setting, string, bool) {
	l := strings.TrimSpace(line)
	if l == "" || l[0] == '#' || l[0] == ';' {
		return Setting{}, "", false
	}
	s := Setting{File: file, Line: n}
	key, value, assign := strings.Cut(l, "=")
	switch {
	case assign:
		if strings.HasPrefix(key, "-") {
			s.IgnoreFailure, key = true, key[1:]
		}
		v := strings.TrimSpace(value)
		s.Value = &v
	case strings.HasPrefix(l, "-"):
		key = l[1:] // an exclusion: keeps the key from every glob
	default:
		return Setting{}, fmt.Sprintf("line is not an assignment, ignoring (as systemd-sysctl does): %s", l), false
	}
	s.Key = Normalize(strings.TrimSpace(key))
	if s.Key == "" {
		return Setting{}, fmt.Sprintf("no key before '=', ignoring: %s", l), false
	}
	return s, "", true
}

// readAll reads explicit files in order and splices the merged contents of
// every directory in where the first directory was named.
func readAll(paths []string) ([]Source, error) {
	if len(paths) == 0 {
		return nil, errors.New("profile: no file or directory given")
	}
	var out []Source
	var dirs []string
	dirAt := -1
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", p, err)
		}
		if st.IsDir() {
			if dirAt < 0 {
				dirAt = len(out)
			}
			dirs = append(dirs, p)
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", p, err)
		}
		out = append(out, NewSource(p, b))
	}
	if len(dirs) == 0 {
		return out, nil
	}
	merged, err := confFiles(dirs)
	if err != nil {
		return nil, err
	}
	return append(out[:dirAt], append(merged, out[dirAt:]...)...), nil
}

// confFiles is systemd's conf_files_list over dirs, highest priority first:
// *.conf by base name, the first directory's file winning, masked names
// (a symlink to /dev/null, or an empty file) dropped, sorted by name.
func confFiles(dirs []string) ([]Source, error) {
	chosen := map[string]string{}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("profile directory %s: %w", d, err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".conf") || e.IsDir() {
				continue
			}
			if _, seen := chosen[e.Name()]; !seen {
				chosen[e.Name()] = filepath.Join(d, e.Name())
			}
		}
	}
	var out []Source
	for _, n := range slices.Sorted(maps.Keys(chosen)) {
		p := chosen[n]
		if t, err := filepath.EvalSymlinks(p); err == nil && t == os.DevNull {
			continue // masked
		}
		b, err := os.ReadFile(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // a dangling link names nothing
			}
			return nil, fmt.Errorf("profile %s: %w", p, err)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue // an empty file masks the name too
		}
		out = append(out, NewSource(p, b))
	}
	return out, nil
}

//go:embed default.conf
var defaultConf []byte

// DefaultName names the embedded default profile in reports.
const DefaultName = "default.conf"

// Default is the embedded default profile (profile/default.conf): this
// kernel's own defaults for the keys TFO's timing depends on, written out.
func Default() Source {
	s := NewSource(DefaultName, defaultConf)
	s.Path = ""
	return s
}

// Names lists the files as "name (sha256 abcdef012345)".
func (p *Profile) Names() string {
	var parts []string
	for _, f := range p.Files {
		parts = append(parts, fmt.Sprintf("%s (sha256 %s)", f.Name, f.SHA256[:12]))
	}
	return strings.Join(parts, ", ")
}

// matchGlob is glob(3) on a normalized key: '*' and '?' never cross a '/'.
func matchGlob(pattern, key string) bool {
	ok, err := path.Match(pattern, key)
	return err == nil && ok
}
