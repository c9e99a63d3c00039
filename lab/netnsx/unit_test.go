package netnsx

import (
	"strings"
	"testing"
	"time"
)

// Mount tables seen on this kernel in a private mount namespace with a
// tmpfs on /run (see the comment in uncover.go). The first lines are the
// host's, copied into the namespace: the host's own /run/netns self-bind
// (58) sits under the tmpfs and must not be mistaken for ours.
const (
	hostLines = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
58 27 254:0 /run/netns /run/netns rw,relatime - ext4 /dev/vda rw,discard
`
	coveredPrivate = hostLines + `63 27 0:39 / /run rw,relatime - tmpfs tmpfs rw
64 63 0:4 net:[4026532179] /run/netns/tfo-a rw - nsfs nsfs rw
65 63 0:39 /netns /run/netns rw,relatime shared:1 - tmpfs tmpfs rw
66 65 0:4 net:[4026532179] /run/netns/tfo-a rw shared:2 - nsfs nsfs rw
67 65 0:4 net:[4026532248] /run/netns/X rw shared:3 - nsfs nsfs rw
`
	preparedShared = hostLines + `63 27 0:39 / /run rw,relatime shared:1 - tmpfs tmpfs rw
65 63 0:39 /netns /run/netns rw,relatime shared:3 - tmpfs tmpfs rw
66 65 0:4 net:[4026532179] /run/netns/tfo-a rw shared:4 - nsfs nsfs rw
`
	plainDir = hostLines + `63 27 0:39 / /run rw,relatime - tmpfs tmpfs rw
64 63 0:4 net:[4026532179] /run/netns/tfo\040a rw - nsfs nsfs rw
`
)

func mustParse(t *testing.T, s string) []mount {
	t.Helper()
	m, err := parseMountinfo([]byte(s))
	if err != nil {
		t.Fatalf("parseMountinfo: %v", err)
	}
	return m
}

func ids(ms []mount) []int {
	var out []int
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestParseMountinfo(t *testing.T) {
	ms := mustParse(t, coveredPrivate)
	if len(ms) != 8 {
		t.Fatalf("parsed %d mounts, want 8", len(ms))
	}
	m := ms[4] // 64
	if m.ID != 64 || m.Parent != 63 || m.Root != "net:[4026532179]" || m.Point != "/run/netns/tfo-a" || m.FSType != "nsfs" || m.Shared || m.Dev != 4 {
		t.Errorf("mount 64 parsed as %+v", m)
	}
	if !ms[5].Shared {
		t.Errorf("mount 65 not seen as shared: %+v", ms[5])
	}
	if got := mustParse(t, plainDir)[4].Point; got != "/run/netns/tfo a" {
		t.Errorf("escaped mount point parsed as %q", got)
	}
	if mkdev(254, 0) != 0xfe00 {
		t.Errorf("mkdev(254, 0) = %#x", mkdev(254, 0))
	}
	for _, bad := range []string{"1 2 0:1 / /x rw\n", "x 2 0:1 / /x rw - tmpfs t rw\n", "1 2 01 / /x rw - tmpfs t rw\n"} {
		if _, err := parseMountinfo([]byte(bad)); err == nil {
			t.Errorf("parseMountinfo(%q) succeeded", bad)
		}
	}
}

func TestLayersAt(t *testing.T) {
	for _, tt := range []struct {
		name, table, file              string
		container                      int
		dirStack, visible, hidden      []int
		uncoverable, uncoverableReason string
	}{
		{name: "covered by ip netns add, private parent", table: coveredPrivate, file: "tfo-a",
			container: 63, dirStack: []int{65}, visible: []int{66}, hidden: []int{64}},
		{name: "prepared first, shared parent", table: preparedShared, file: "tfo-a",
			container: 63, dirStack: []int{65}, visible: []int{66}},
		{name: "plain directory", table: plainDir, file: "tfo a",
			container: 63, visible: []int{64}},
		{name: "not bound", table: coveredPrivate, file: "tfo-b",
			container: 63, dirStack: []int{65}},
		{name: "covered, shared parent", file: "tfo-a", table: strings.Replace(coveredPrivate, "/ /run rw,relatime -", "/ /run rw,relatime shared:9 -", 1),
			container: 63, dirStack: []int{65}, visible: []int{66}, hidden: []int{64}, uncoverableReason: "is shared"},
		{name: "two self-binds", file: "tfo-a", table: coveredPrivate + "70 65 0:39 /netns /run/netns rw shared:1 - tmpfs tmpfs rw\n",
			container: 63, dirStack: []int{65, 70}, hidden: []int{64, 66}, uncoverableReason: "2 mounts"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := layersAt(mustParse(t, tt.table), "/run/netns", tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if l.container.ID != tt.container {
				t.Errorf("container %v, want %d", l.container, tt.container)
			}
			for _, c := range []struct {
				what      string
				got, want []int
			}{{"dir stack", ids(l.dirStack), tt.dirStack}, {"visible", ids(l.visible), tt.visible}, {"hidden", ids(l.hidden), tt.hidden}} {
				if !equalInts(c.got, c.want) {
					t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
				}
			}
			if len(l.hidden) == 0 {
				return
			}
			reason := uncoverable(l)
			if tt.uncoverableReason == "" && reason != "" {
				t.Errorf("uncoverable: %q, want it reachable", reason)
			}
			if tt.uncoverableReason != "" && !strings.Contains(reason, tt.uncoverableReason) {
				t.Errorf("uncoverable: %q, want it to mention %q", reason, tt.uncoverableReason)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseProcStat(t *testing.T) {
	// Field 22 (start time) is 8811; field 9 (flags) 4194560; field 20
	// (threads) 7.
	tail := " 1 2 3 4 -1 4194560 11633 462226 0 571 23 46 1848 519 20 0 7 0 8811 12345 678"
	for _, tt := range []struct {
		line  string
		want  ProcStat
		fails bool
	}{
		{line: "1234 (tfolab.test) S" + tail, want: ProcStat{PID: 1234, Comm: "tfolab.test", State: 'S', PPID: 1, PGID: 2, Session: 3, Flags: 4194560, NumThreads: 7, StartTime: 8811, CPU: 690 * time.Millisecond}},
		{line: "77 (a (b) c) d) Z" + tail + "\n", want: ProcStat{PID: 77, Comm: "a (b) c) d", State: 'Z', PPID: 1, PGID: 2, Session: 3, Flags: 4194560, NumThreads: 7, StartTime: 8811, CPU: 690 * time.Millisecond}},
		{line: "5 () R" + tail, want: ProcStat{PID: 5, Comm: "", State: 'R', PPID: 1, PGID: 2, Session: 3, Flags: 4194560, NumThreads: 7, StartTime: 8811, CPU: 690 * time.Millisecond}},
		{line: "9 (x) S 1 2 3", fails: true},
		{line: "9 (x) SS" + tail, fails: true},
		{line: "9 (x) S one" + tail[2:], fails: true},
		{line: "9 x) S" + tail, fails: true},
		{line: "(x) S" + tail, fails: true},
		{line: "9 (x) S 1 2 3 4 -1 4194560 11633 462226 0 571 23 46 1848 519 20 0 7 0 notanumber", fails: true},
	} {
		got, err := ParseProcStat([]byte(tt.line))
		if tt.fails {
			if err == nil {
				t.Errorf("ParseProcStat(%q) = %+v, want an error", tt.line, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseProcStat(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
	}
}

func TestProcStatExiting(t *testing.T) {
	for _, tt := range []struct {
		st   ProcStat
		want bool
	}{
		{ProcStat{State: 'S'}, false},
		{ProcStat{State: 'Z'}, true},
		{ProcStat{State: 'X'}, true},
		{ProcStat{State: 'D', Flags: pfExiting}, true},
		{ProcStat{State: 'R', Flags: 0x400000}, false}, // PF_FORKNOEXEC only
	} {
		if got := tt.st.Exiting(); got != tt.want {
			t.Errorf("%+v.Exiting() = %v, want %v", tt.st, got, tt.want)
		}
	}
}

func TestReadProcStatSelf(t *testing.T) {
	st, err := ReadProcStat(1)
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != 1 || st.State == 0 {
		t.Errorf("pid 1: %+v", st)
	}
	if _, err := ReadProcStat(1 << 30); err == nil {
		t.Error("ReadProcStat of a PID beyond pid_max succeeded")
	}
}

func TestCheckName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "a\x00b"} {
		if checkName(bad) == nil {
			t.Errorf("checkName(%q) accepted", bad)
		}
	}
	if err := checkName("tfo-1-abcd-1-client"); err != nil {
		t.Error(err)
	}
}
