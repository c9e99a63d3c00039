package scenarios

import (
	"context"
	"fmt"
	"strconv"

	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/lab/tfocookie"
)

// KeyPlan is which TFO keys each server of a pool holds over a timeline,
// as a scenario states it; its fields are tfocookie.Schedule's:
//
//   - Keys are the named keys (only their Primary is used);
//   - Start is each server's key list at the start, by names: "A", or
//     "B,A" for primary B and backup A;
//   - Changes happen in order at named marks of the timeline, each in
//     force from its mark on (KeyChange).
//
// The scenario applies the plan (sysctls, listener keys, writes at its
// marks) and the expectations judge by the same plan (Schedule), so the
// two cannot drift; a deployment mistake (one server left with its own
// key) changes what is applied, not the plan, and the expectations catch
// it.
type KeyPlan tfocookie.Schedule

// KeyChange sets the key lists of some servers at the mark called Mark;
// the others keep theirs.
type KeyChange = tfocookie.Change

// Schedule is the plan as the pool model and matchers read it
// (assertions.PoolOutcomes, CookiesIssued, PoolCounters). It shares the
// plan's maps: change neither afterwards.
func (p KeyPlan) Schedule() *tfocookie.Schedule {
	s := tfocookie.Schedule(p)
	return &s
}

// Validate checks that every key list names known keys, one or two of
// them, and that every change has a mark.
func (p KeyPlan) Validate() error {
	if err := tfocookie.Schedule(p).Validate(); err != nil {
		return fmt.Errorf("key plan: %w", err)
	}
	return nil
}

// Key is the tfo.Key (primary and optional backup) a key list stands for.
func (p KeyPlan) Key(list string) (tfo.Key, error) {
	return tfocookie.Schedule(p).Key(list)
}

// Sysctl is the net.ipv4.tcp_fastopen_key value for a key list.
func (p KeyPlan) Sysctl(list string) (string, error) {
	k, err := p.Key(list)
	if err != nil {
		return "", err
	}
	return k.String(), nil
}

// planSysctl is the sysctl value of a key list; a list the plan cannot
// resolve (caught by TestPoolKeys) yields a value the kernel refuses, so
// the run fails loudly rather than with some other key.
func planSysctl(plan KeyPlan, list string) string {
	v, err := plan.Sysctl(list)
	if err != nil {
		return "invalid key list " + strconv.Quote(list)
	}
	return v
}

// poolPlan is a plan over the named keys where every server starts with
// list(server).
func poolPlan(servers []string, list func(server string) string) KeyPlan {
	p := KeyPlan{Keys: poolKeys, Start: map[string]string{}}
	for _, s := range servers {
		p.Start[s] = list(s)
	}
	return p
}

// rotation is one way of changing a pool's key from A to B.
type rotation int

const (
	rotationRight   rotation = iota // A → "B,A" on every server → "B"
	rotationWrong                   // A → B on every server at once
	rollingNoBackup                 // A → B one server at a time
	rollingNewFirst                 // "B,A" one server at a time, then B
	rollingStaged                   // "A,B" one at a time, then "B,A", then "B"
)

func (r rotation) String() string {
	return [...]string{"right", "wrong", "rolling-no-backup", "rolling-new-primary-first", "rolling-staged"}[r]
}

// rotationPlan is the key plan of rotation r over servers.
func rotationPlan(r rotation, servers []string) KeyPlan {
	p := poolPlan(servers, func(string) string { return "A" })
	every := func(mark, list string) KeyChange {
		c := KeyChange{Mark: mark, Set: map[string]string{}}
		for _, s := range servers {
			c.Set[s] = list
		}
		return c
	}
	oneByOne := func(list string) []KeyChange {
		var out []KeyChange
		for _, s := range servers {
			out = append(out, KeyChange{Mark: fmt.Sprintf("%s on %s", s, list), Set: map[string]string{s: list}})
		}
		return out
	}
	switch r {
	case rotationRight:
		p.Changes = []KeyChange{every(markOverlap, "B,A"), every(markNewOnly, "B")}
	case rotationWrong:
		p.Changes = []KeyChange{every(markSwitched, "B")}
	case rollingNoBackup:
		p.Changes = oneByOne("B")
	case rollingNewFirst:
		p.Changes = append(oneByOne("B,A"), every(markNewOnly, "B"))
	case rollingStaged:
		p.Changes = append(append(oneByOne("A,B"), oneByOne("B,A")...), oneByOne("B")...)
	}
	return p
}

// Marks of the rotations done at once.
const (
	markOverlap  = "every server on B,A"
	markNewOnly  = "every server on B"
	markSwitched = "every server switched to B"
)

// KeyTimeline runs a key plan: each client learns a cookie, then makes
// rotationPerStep connections under the start keys and under each change,
// the clients taking turns; a change writes net.ipv4.tcp_fastopen_key on
// the servers it names and then marks its moment.
func KeyTimeline(plan KeyPlan) Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		ctx, cancel := context.WithTimeout(ctx, poolTimeout)
		defer cancel()
		dialAll := func(label string) error {
			for _, c := range env.scen.Clients {
				env.DialFrom(ctx, c.name(), Dial{Label: label, Timeout: poolConnTimeout})
			}
			return ctx.Err()
		}
		if err := dialAll("learn"); err != nil {
			return err
		}
		for step := -1; step < len(plan.Changes); step++ {
			label := "start"
			if step >= 0 {
				ch := plan.Changes[step]
				for _, node := range sortedKeys(ch.Set) {
					v, err := plan.Sysctl(ch.Set[node])
					if err != nil {
						return err
					}
					if err := env.WriteSysctl(node, keySysctl, v); err != nil {
						return err
					}
				}
				env.Mark(ch.Mark, 0)
				label = ch.Mark
			}
			for range rotationPerStep {
				if err := dialAll(label); err != nil {
					return err
				}
			}
		}
		return nil
	}, "KeyTimeline", plan)
}
