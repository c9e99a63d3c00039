package lab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The TFO counters of TcpExt (/proc/net/netstat), by the names the kernel
// prints. See the kernel's include/uapi/linux/snmp.h and net/ipv4/proc.c.
const (
	TCPFastOpenActive         = "TCPFastOpenActive"
	TCPFastOpenActiveFail     = "TCPFastOpenActiveFail"
	TCPFastOpenPassive        = "TCPFastOpenPassive"
	TCPFastOpenPassiveFail    = "TCPFastOpenPassiveFail"
	TCPFastOpenPassiveAltKey  = "TCPFastOpenPassiveAltKey"
	TCPFastOpenCookieReqd     = "TCPFastOpenCookieReqd"
	TCPFastOpenListenOverflow = "TCPFastOpenListenOverflow"
	TCPFastOpenBlackhole      = "TCPFastOpenBlackhole"
	TCPSynRetrans             = "TCPSynRetrans"
	TCPOrigDataSent           = "TCPOrigDataSent"
)

// FastOpenCounters lists the counters a TFO report shows by default.
var FastOpenCounters = []string{
	TCPFastOpenActive, TCPFastOpenActiveFail, TCPFastOpenPassive,
	TCPFastOpenPassiveFail, TCPFastOpenPassiveAltKey, TCPFastOpenCookieReqd,
	TCPFastOpenListenOverflow, TCPFastOpenBlackhole, TCPSynRetrans, TCPOrigDataSent,
}

// Counters is a snapshot (or a delta) of a namespace's SNMP counters, keyed
// "Group.Name" (e.g. "TcpExt.TCPFastOpenActive", "Tcp.RetransSegs").
type Counters map[string]int64

// Get returns a counter by "Group.Name" or by bare name; bare names are
// looked up in TcpExt first, then in every other group. ok is false when the
// kernel does not export it (an older kernel, a typo): callers must not read
// an absent counter as zero.
func (c Counters) Get(name string) (value int64, ok bool) {
	if v, ok := c[name]; ok {
		return v, true
	}
	if v, ok := c["TcpExt."+name]; ok {
		return v, true
	}
	for k, v := range c {
		if _, n, _ := strings.Cut(k, "."); n == name {
			return v, true
		}
	}
	return 0, false
}

// Sub returns c - before for every counter present in c.
func (c Counters) Sub(before Counters) Counters {
	d := make(Counters, len(c))
	for k, v := range c {
		d[k] = v - before[k]
	}
	return d
}

// NonZero returns the keys whose value is not zero, sorted: the lines worth
// printing of a delta.
func (c Counters) NonZero() []string {
	var keys []string
	for k, v := range c {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Table renders the named counters (bare or Group.Name) and every other
// non-zero one as an aligned two-column table, for failure messages.
func (c Counters) Table(names ...string) string { return c.table(true, names) }

// TableOf renders only the named counters.
func (c Counters) TableOf(names ...string) string { return c.table(false, names) }

func (c Counters) table(others bool, names []string) string {
	var b strings.Builder
	seen := map[string]bool{}
	row := func(k string, v int64, ok bool) {
		if !ok {
			fmt.Fprintf(&b, "  %-34s %s\n", k, "(absent)")
			return
		}
		fmt.Fprintf(&b, "  %-34s %d\n", k, v)
	}
	for _, n := range names {
		if seen[n] {
			continue
		}
		v, ok := c.Get(n)
		row(n, v, ok)
		seen[n] = true
		seen["TcpExt."+n] = true
	}
	if !others {
		return b.String()
	}
	for _, k := range c.NonZero() {
		if !seen[k] {
			row(k, c[k], true)
		}
	}
	return b.String()
}

// ParseSNMP parses the two-line-per-group format of /proc/net/netstat and
// /proc/net/snmp ("TcpExt: A B C" followed by "TcpExt: 1 2 3") into dst.
func ParseSNMP(data []byte, dst Counters) error {
	var keys []string // the header's "Group.Name" keys, awaiting values
	var group string
	line := 0
	for raw := range bytes.Lines(data) {
		line++
		fields := strings.Fields(string(raw))
		if len(fields) == 0 {
			continue
		}
		g, ok := strings.CutSuffix(fields[0], ":")
		if !ok {
			return fmt.Errorf("line %d: want \"Group:\" first, got %q", line, fields[0])
		}
		if keys == nil {
			group, keys = g, headerKeys(raw, g, fields[1:])
			continue
		}
		if g != group {
			return fmt.Errorf("line %d: values for group %q follow header of %q", line, g, group)
		}
		vals := fields[1:]
		if len(vals) != len(keys) {
			return fmt.Errorf("line %d: group %s has %d names but %d values", line, g, len(keys), len(vals))
		}
		for i, key := range keys {
			v, err := strconv.ParseInt(vals[i], 10, 64)
			if err != nil {
				return fmt.Errorf("line %d: %s: %w", line, key, err)
			}
			dst[key] = v
		}
		keys = nil
	}
	if keys != nil {
		return fmt.Errorf("group %s: header without values", group)
	}
	return nil
}

// headerKeysSeen holds each header line's "Group.Name" keys: a kernel's
// header lines never change, and every lab reads them a dozen times.
var headerKeysSeen sync.Map // header line -> []string

func headerKeys(raw []byte, group string, names []string) []string {
	if k, ok := headerKeysSeen.Load(string(raw)); ok {
		return k.([]string)
	}
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = group + "." + n
	}
	headerKeysSeen.Store(string(raw), keys)
	return keys
}

// Counter reads one counter now (bare TcpExt names, or Group.Name), cheaply
// enough to poll every few milliseconds: the namespace's netstat and snmp
// files are opened once from a thread inside it (a /proc/thread-self/net
// file keeps reading the namespace it was opened in, from any thread), and
// each read parses only the counter's own group.
func (n *Namespace) Counter(name string) (int64, error) {
	group, field, ok := strings.Cut(name, ".")
	if !ok {
		group, field = "TcpExt", name
	}
	file := "/proc/thread-self/net/netstat"
	if group != "TcpExt" && group != "IpExt" && group != "MPTcpExt" {
		file = "/proc/thread-self/net/snmp"
	}
	f, err := n.counterFile(file)
	if err != nil {
		return 0, err
	}
	// procfs regenerates the file at offset 0: one pread is a fresh
	// snapshot. 64 KiB holds both files many times over.
	buf := make([]byte, 64<<10)
	k, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read %s in %s: %w", file, n.Name, err)
	}
	v, ok := lookupSNMP(buf[:k], group, field)
	if !ok {
		return 0, fmt.Errorf("counter %s absent in %s", name, n.Name)
	}
	return v, nil
}

func (n *Namespace) counterFile(path string) (*os.File, error) {
	n.counterMu.Lock()
	defer n.counterMu.Unlock()
	if f := n.counterFiles[path]; f != nil {
		return f, nil
	}
	var f *os.File
	err := n.Do(func() (err error) {
		f, err = os.Open(path)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open counters: %w", err)
	}
	if n.counterFiles == nil {
		n.counterFiles = map[string]*os.File{}
	}
	n.counterFiles[path] = f
	return f, nil
}

func (n *Namespace) closeCounterFiles() {
	n.counterMu.Lock()
	defer n.counterMu.Unlock()
	for _, f := range n.counterFiles {
		f.Close()
	}
	n.counterFiles = nil
}

// lookupSNMP finds group.name in the two-line-per-group format without
// parsing the other groups.
func lookupSNMP(data []byte, group, name string) (int64, bool) {
	prefix := []byte(group + ":")
	for len(data) > 0 {
		header, rest, _ := bytes.Cut(data, []byte{'\n'})
		values, after, _ := bytes.Cut(rest, []byte{'\n'})
		if !bytes.HasPrefix(header, prefix) || !bytes.HasPrefix(values, prefix) {
			data = rest
			continue
		}
		names, vals := bytes.Fields(header[len(prefix):]), bytes.Fields(values[len(prefix):])
		for i, nm := range names {
			if string(nm) == name && i < len(vals) {
				v, err := strconv.ParseInt(string(vals[i]), 10, 64)
				return v, err == nil
			}
		}
		data = after
	}
	return 0, false
}

// Counters snapshots the namespace's TcpExt/IpExt (netstat) and Ip/Tcp/Udp
// (snmp) counters. It reads /proc/thread-self/net from a thread inside the
// namespace: /proc/self/net would follow the main thread instead.
func (n *Namespace) Counters() (Counters, error) {
	c := Counters{}
	err := n.Do(func() error {
		for _, f := range []string{"/proc/thread-self/net/netstat", "/proc/thread-self/net/snmp"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("read counters: %w", err)
			}
			if err := ParseSNMP(b, c); err != nil {
				return fmt.Errorf("parse %s: %w", f, err)
			}
		}
		return nil
	})
	return c, err
}
