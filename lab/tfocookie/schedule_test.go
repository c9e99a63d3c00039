package tfocookie

import (
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tfolab/tfolab/lab/tfo"
)

func mustKey(t *testing.T, s string) tfo.Key {
	t.Helper()
	k, err := tfo.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rotation is A → "B,A" on both servers at "overlap" → "B" at "new only".
func rotation(t *testing.T) Schedule {
	return Schedule{
		Keys: map[string]tfo.Key{
			"A": mustKey(t, "f810ff35-138056f4-7fad6a0f-89fb726f"),
			"B": mustKey(t, "1f1f8436-6388c88e-b7be6dbd-8436b666"),
			"X": mustKey(t, "7674871b-c7f70d05-d3796da7-e7b47034"),
		},
		Start: map[string]string{"server1": "A", "server2": "A"},
		Changes: []Change{
			{Mark: "overlap", Set: map[string]string{"server1": "B,A", "server2": "B,A"}},
			{Mark: "new only", Set: map[string]string{"server1": "B", "server2": "B"}},
		},
	}
}

func TestKeyLists(t *testing.T) {
	s := rotation(t)
	k, err := s.Key("B, A")
	if err != nil {
		t.Fatal(err)
	}
	if k.Primary != s.Keys["B"].Primary || k.Backup == nil || *k.Backup != s.Keys["A"].Primary {
		t.Errorf("\"B, A\" = %s, want B's key with A's as backup", k)
	}
	if k, err := s.Key("A"); err != nil || k.Backup != nil || k.Primary != s.Keys["A"].Primary {
		t.Errorf("\"A\" = %s, %v", k, err)
	}
	for list, want := range map[string]string{
		"":      `no key ""`,
		"A,Z":   `no key "Z"`,
		"A,B,X": "want \"primary\" or \"primary,backup\"",
	} {
		if _, err := s.Key(list); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("key list %q: error %v, want %q", list, err, want)
		}
	}
	if got := Names(" B , A"); len(got) != 2 || got[0] != "B" || got[1] != "A" {
		t.Errorf("Names = %q", got)
	}
}

func TestSlotOf(t *testing.T) {
	for _, c := range []struct {
		list, name string
		want       Slot
	}{
		{"A", "A", Primary},
		{"B,A", "B", Primary},
		{"B,A", "A", Backup},
		{"B", "A", NotHeld},
		{"A,B", "", NotHeld},
		{"", "", NotHeld},
	} {
		if got := SlotOf(c.list, c.name); got != c.want {
			t.Errorf("SlotOf(%q, %q) = %s, want %s", c.list, c.name, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := rotation(t).Validate(); err != nil {
		t.Errorf("rotation: %v", err)
	}
	for _, c := range []struct {
		name   string
		break_ func(s *Schedule)
		want   string
	}{
		{"unknown start key", func(s *Schedule) { s.Start["server2"] = "Z" }, `start: server2: key list "Z": no key "Z"`},
		{"three keys", func(s *Schedule) { s.Changes[1].Set["server1"] = "A,B,X" }, "new only: server1: key list"},
		{"no mark", func(s *Schedule) { s.Changes[0].Mark = "" }, "a change without a mark"},
	} {
		s := rotation(t)
		c.break_(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestListsAt: a change is in force from its mark on; a mark that did not
// happen (yet) stops the walk, later marks or not.
func TestListsAt(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s := rotation(t)
	marks := map[string]time.Time{"overlap": t0.Add(time.Second), "new only": t0.Add(2 * time.Second)}
	markAt := func(m string) (time.Time, bool) { at, ok := marks[m]; return at, ok }
	for _, c := range []struct {
		at   time.Duration
		want string
	}{
		{0, "A"},
		{time.Second - 1, "A"},
		{time.Second, "B,A"},
		{2*time.Second - 1, "B,A"},
		{2 * time.Second, "B"},
		{time.Hour, "B"},
	} {
		got := s.ListsAt(t0.Add(c.at), markAt)
		if len(got) != 2 || got["server1"] != c.want || got["server2"] != c.want {
			t.Errorf("at +%v: %v, want both on %q", c.at, got, c.want)
		}
	}
	delete(marks, "overlap")
	if got := s.ListsAt(t0.Add(time.Hour), markAt); got["server1"] != "A" {
		t.Errorf("without the overlap mark: %v, want the start lists", got)
	}
	if s.Start["server1"] != "A" {
		t.Error("ListsAt changed the schedule's start")
	}
	if got := (Schedule{}).ListsAt(t0, markAt); got == nil || len(got) != 0 {
		t.Errorf("empty schedule: %v", got)
	}
}

// TestIssuer names the key that made a cookie for the addresses it was
// made for, and none for other addresses or keys.
func TestIssuer(t *testing.T) {
	s := rotation(t)
	cli, svc := netip.MustParseAddr("10.34.1.2"), netip.MustParseAddr("10.34.0.34")
	for _, n := range []string{"A", "B", "X"} {
		if got := s.Issuer(Make(s.Keys[n].Primary, cli, svc), cli, svc); got != n {
			t.Errorf("cookie of %s: issuer %q", n, got)
		}
	}
	c := Make(s.Keys["A"].Primary, cli, svc)
	if got := s.Issuer(c, svc, cli); got != "" {
		t.Errorf("A's cookie for other addresses: issuer %q", got)
	}
	keys := maps.Clone(s.Keys)
	delete(keys, "A")
	if got := (Schedule{Keys: keys}).Issuer(c, cli, svc); got != "" {
		t.Errorf("A's cookie without A: issuer %q", got)
	}
}
