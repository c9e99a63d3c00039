package netnsx

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// mount is one line of /proc/self/mountinfo (proc(5)).
type mount struct {
	ID, Parent int
	Dev        uint64 // st_dev of the files in it, from major:minor
	Root       string // the path inside its filesystem that is mounted; "net:[4026532179]" for nsfs
	Point      string // where it is mounted, relative to the process's root
	Shared     bool   // "shared:N" among the optional fields: mounts and unmounts propagate to its peers
	FSType     string
}

func (m mount) String() string {
	s := fmt.Sprintf("mount %d (%s %s on %s, parent %d", m.ID, m.FSType, m.Root, m.Point, m.Parent)
	if m.Shared {
		s += ", shared"
	}
	return s + ")"
}

// readMountinfo parses the calling process's mount table.
func readMountinfo() ([]mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return parseMountinfo(b)
}

// parseMountinfo parses mountinfo text:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	ID parent major:minor root point options [optional fields...] - fstype source super-options
func parseMountinfo(b []byte) ([]mount, error) {
	var mounts []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 7 || sep < 0 || sep+1 >= len(f) {
			return nil, fmt.Errorf("mountinfo line %d: malformed: %q", n, sc.Text())
		}
		var m mount
		var err error
		if m.ID, err = strconv.Atoi(f[0]); err != nil {
			return nil, fmt.Errorf("mountinfo line %d: mount ID: %w", n, err)
		}
		if m.Parent, err = strconv.Atoi(f[1]); err != nil {
			return nil, fmt.Errorf("mountinfo line %d: parent ID: %w", n, err)
		}
		maj, min, ok := strings.Cut(f[2], ":")
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("mountinfo line %d: device %q", n, f[2])
		}
		m.Dev = mkdev(ma, mi)
		m.Root = unescapeMountinfo(f[3])
		m.Point = unescapeMountinfo(f[4])
		for _, opt := range f[6:sep] {
			if strings.HasPrefix(opt, "shared:") {
				m.Shared = true
			}
		}
		m.FSType = f[sep+1]
		mounts = append(mounts, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return mounts, nil
}

// mkdev packs a device number the way glibc's makedev (and so st_dev) does.
func mkdev(major, minor uint64) uint64 {
	return (major&0xfffff000)<<32 | (major&0xfff)<<8 | (minor&0xffffff00)<<12 | minor&0xff
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountTable answers "what is mounted where" the way path lookup sees it.
type mountTable struct {
	byID     map[int]mount
	children map[int][]mount // by parent ID
}

func newMountTable(mounts []mount) mountTable {
	t := mountTable{byID: map[int]mount{}, children: map[int][]mount{}}
	for _, m := range mounts {
		t.byID[m.ID] = m
		t.children[m.Parent] = append(t.children[m.Parent], m)
	}
	return t
}

// on returns the mount attached to parent at point, if any.
func (t mountTable) on(parent int, point string) (mount, bool) {
	for _, c := range t.children[parent] {
		if c.Point == point && c.ID != parent {
			return c, true
		}
	}
	return mount{}, false
}

// stack follows mounts stacked at point starting from base (a mount at
// point, or the mount containing it) and returns them bottom to top.
func (t mountTable) stack(base int, point string) []mount {
	var s []mount
	for cur, i := base, 0; i <= len(t.byID); i++ {
		m, ok := t.on(cur, point)
		if !ok {
			break
		}
		s = append(s, m)
		cur = m.ID
	}
	return s
}

// root returns the mount at "/" that path lookup starts from.
func (t mountTable) root() (mount, bool) {
	for _, m := range t.byID {
		if m.Point != "/" {
			continue
		}
		if p, ok := t.byID[m.Parent]; ok && p.ID != m.ID && p.Point == "/" {
			continue // stacked on another "/" mount
		}
		if s := t.stack(m.ID, "/"); len(s) > 0 {
			return s[len(s)-1], true
		}
		return m, true
	}
	return mount{}, false
}

// walk resolves an absolute, clean directory path component by component
// and returns the mount that contains its last component's dentry (the
// mount a new mount at path would get as its parent) and the stack of
// mounts already at path, bottom to top.
func (t mountTable) walk(path string) (container mount, stack []mount, err error) {
	cur, ok := t.root()
	if !ok {
		return mount{}, nil, fmt.Errorf("mount table has no root mount")
	}
	prefix := ""
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, part := range parts {
		prefix += "/" + part
		s := t.stack(cur.ID, prefix)
		if i == len(parts)-1 {
			return cur, s, nil
		}
		if len(s) > 0 {
			cur = s[len(s)-1]
		}
	}
	return cur, nil, nil
}

// fileLayers describes the namespace bind mounts at dir/name.
type fileLayers struct {
	container mount   // the mount holding dir's own dentry
	dirStack  []mount // mounts of dir over itself, bottom to top ("ip netns add" makes one)
	visible   []mount // binds reached by looking up dir/name, bottom to top
	hidden    []mount // binds attached to a covered layer of dir: unreachable by path, yet they keep dir/name busy
}

// layersAt finds what is mounted at dir/name. A bind made while dir was
// not yet a mount point hangs off the container; once something is
// mounted over dir, path lookup never reaches it again.
func layersAt(mounts []mount, dir, name string) (fileLayers, error) {
	t := newMountTable(mounts)
	c, dirStack, err := t.walk(dir)
	if err != nil {
		return fileLayers{}, err
	}
	l := fileLayers{container: c, dirStack: dirStack}
	file := strings.TrimSuffix(dir, "/") + "/" + name
	top := c
	if len(dirStack) > 0 {
		top = dirStack[len(dirStack)-1]
	}
	l.visible = t.stack(top.ID, file)
	for _, layer := range append([]mount{c}, dirStack...) {
		if layer.ID == top.ID {
			break
		}
		l.hidden = append(l.hidden, t.stack(layer.ID, file)...)
	}
	return l, nil
}
