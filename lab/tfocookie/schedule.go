package tfocookie

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab/tfo"
)

// Schedule is which TFO keys each server of a pool holds over a timeline:
// named keys, each server's key list at the start ("A", or "B,A" for
// primary B and backup A), and changes at named marks of the timeline.
// The marks are names only: whoever reads the schedule against a run says
// when each mark happened (ListsAt).
type Schedule struct {
	// Keys are the named keys; only their Primary is used.
	Keys map[string]tfo.Key
	// Start is each server's key list at the start, by names.
	Start map[string]string
	// Changes happen in order; each is in force from its mark on.
	Changes []Change
}

// Change sets the key lists of some servers at the mark called Mark; the
// others keep theirs.
type Change struct {
	Mark string
	Set  map[string]string
}

// Names are the key names of a key list, primary first.
func Names(list string) []string {
	names := strings.Split(list, ",")
	for i, n := range names {
		names[i] = strings.TrimSpace(n)
	}
	return names
}

// Slot is where a server's key list holds a key.
type Slot int

const (
	// NotHeld: the server has no such key; it refuses the key's cookies.
	NotHeld Slot = iota
	// Primary: the server makes its cookies with the key, and accepts them.
	Primary
	// Backup: the server accepts the key's cookies and answers them with
	// its primary key's cookie (TCPFastOpenPassiveAltKey).
	Backup
)

func (s Slot) String() string {
	return [...]string{"not held", "primary", "backup"}[s]
}

// SlotOf is where list holds the key called name (NotHeld for "").
func SlotOf(list, name string) Slot {
	if name == "" {
		return NotHeld
	}
	names := Names(list)
	switch {
	case names[0] == name:
		return Primary
	case len(names) == 2 && names[1] == name:
		return Backup
	}
	return NotHeld
}

// Key is the tfo.Key (primary and optional backup) a key list stands for.
func (s Schedule) Key(list string) (tfo.Key, error) {
	names := Names(list)
	if len(names) > 2 {
		return tfo.Key{}, fmt.Errorf("key list %q: want \"primary\" or \"primary,backup\"", list)
	}
	var out tfo.Key
	for i, n := range names {
		k, ok := s.Keys[n]
		if !ok {
			return tfo.Key{}, fmt.Errorf("key list %q: no key %q", list, n)
		}
		if i == 0 {
			out.Primary = k.Primary
		} else {
			b := k.Primary
			out.Backup = &b
		}
	}
	return out, nil
}

// Validate checks that every key list names known keys, one or two of
// them, and that every change has a mark.
func (s Schedule) Validate() error {
	check := func(where, node, list string) error {
		if _, err := s.Key(list); err != nil {
			return fmt.Errorf("%s: %s: %w", where, node, err)
		}
		return nil
	}
	for _, n := range slices.Sorted(maps.Keys(s.Start)) {
		if err := check("start", n, s.Start[n]); err != nil {
			return err
		}
	}
	for _, c := range s.Changes {
		if c.Mark == "" {
			return errors.New("a change without a mark")
		}
		for _, n := range slices.Sorted(maps.Keys(c.Set)) {
			if err := check(c.Mark, n, c.Set[n]); err != nil {
				return err
			}
		}
	}
	return nil
}

// ListsAt is each server's key list in force at t: the start, then every
// change whose mark happened at or before t. markAt says when a mark
// happened (false: it did not); the changes are in order, so one whose
// mark did not happen by t ends the walk.
func (s Schedule) ListsAt(t time.Time, markAt func(mark string) (time.Time, bool)) map[string]string {
	out := maps.Clone(s.Start)
	if out == nil {
		out = map[string]string{}
	}
	for _, c := range s.Changes {
		at, ok := markAt(c.Mark)
		if !ok || at.After(t) {
			break
		}
		maps.Copy(out, c.Set)
	}
	return out
}

// Issuer names the key of the schedule that makes cookie for (client,
// server), "" if none does. Names are tried in order, so of two equal
// keys the first name wins.
func (s Schedule) Issuer(cookie []byte, client, server netip.Addr) string {
	for _, n := range slices.Sorted(maps.Keys(s.Keys)) {
		if bytes.Equal(Make(s.Keys[n].Primary, client, server), cookie) {
			return n
		}
	}
	return ""
}
