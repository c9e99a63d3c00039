package labfile

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/tfolab/tfolab/scenarios"
)

// timelineSlack is what a scripted timeline's bound adds to its
// connections' and waits' own: the moments' middleboxes and sysctl writes.
const timelineSlack = 5 * time.Second

// step is one decoded timeline step.
type step struct {
	connect      int
	client       string
	dial         scenarios.Dial
	moment       string
	wait         time.Duration
	sysctl       *SysctlWrite
	rounds       int
	repeat       int
	steps        []step
	untilCounter string
	timeout      time.Duration // a connection's bound, resolved
	script       scenarios.Timeline
}

// timeline turns the file's steps into a scripted timeline and its bound,
// and lists the moments it names. A timeline that is one call of a
// catalogue timeline is that timeline, with the call that built it.
func (b *builder) timeline(fs []Step, s scenarios.Scenario, moments map[string]bool) (scenarios.Scripted, time.Duration, error) {
	if len(fs) == 1 && fs[0].Call != nil && onlyCall(fs[0]) {
		sc, err := callTimeline(fs[0].Call)
		if err != nil {
			return sc, 0, b.errAt(at("timeline", 0, "call"), "call: %v", err)
		}
		return sc, 0, nil
	}
	steps, bound, err := b.steps(at("timeline"), fs, s, moments)
	if err != nil {
		return scenarios.Scripted{}, 0, err
	}
	tl := func(ctx context.Context, env *scenarios.Env) error { return run(ctx, env, steps, 0) }
	return scenarios.Scripted{Run: tl}, bound + timelineSlack, nil
}

func (b *builder) steps(base []pathElem, fs []Step, s scenarios.Scenario, moments map[string]bool) ([]step, time.Duration, error) {
	var out []step
	var bound time.Duration
	for i, f := range fs {
		p := func(k ...pathElem) []pathElem { return append(append(slices.Clone(base), i), k...) }
		var what []string
		for k, set := range map[string]bool{"connect": f.Connect != 0, "moment": f.Moment != "", "wait": f.Wait != 0, "call": f.Call != nil, "sysctl": f.Sysctl != nil, "rounds": f.Rounds != 0, "repeat": f.Repeat != 0} {
			if set {
				what = append(what, k)
			}
		}
		if len(what) != 1 {
			return nil, 0, b.errAt(p(), "a timeline step is exactly one of connect, moment, wait, call, sysctl, rounds or repeat (got %s)", cmp.Or(strings.Join(what, ", "), "none"))
		}
		connOnly := f.Client != "" || f.Service != "" || f.Port != 0 || f.Label != "" || f.Plain || f.Abort || f.UserTimeout != 0 || f.Payload != "" || f.Timeout != 0 || f.UntilCounter != ""
		if connOnly && what[0] != "connect" {
			return nil, 0, b.errAt(p(), "client, service, port, label, plain, abort, user-timeout, payload, timeout and until-counter belong to a connect step")
		}
		if len(f.Steps) > 0 && what[0] != "rounds" && what[0] != "repeat" {
			return nil, 0, b.errAt(p("steps"), "steps belong to a rounds or repeat step")
		}
		st := step{}
		switch what[0] {
		case "connect":
			if f.Connect < 0 {
				return nil, 0, b.errAt(p("connect"), "connect %d: want a count of connections", f.Connect)
			}
			var c *scenarios.Client
			for k := range s.Clients {
				if f.Client == "" || cmp.Or(s.Clients[k].Name, "client") == f.Client {
					c = &s.Clients[k]
					break
				}
			}
			if c == nil {
				return nil, 0, b.errAt(p("client"), "client %q does not exist", f.Client)
			}
			if f.Service != "" && !slices.ContainsFunc(s.Services, func(v scenarios.Service) bool { return cmp.Or(v.Name, "service") == f.Service }) {
				return nil, 0, b.errAt(p("service"), "service %q does not exist", f.Service)
			}
			st.connect, st.client = f.Connect, f.Client
			st.timeout = durationOr(f.Timeout, durationOr(c.ConnTimeout, scenarios.DefaultConnTimeout))
			st.dial = scenarios.Dial{Label: f.Label, Service: f.Service, Port: f.Port, Timeout: st.timeout,
				Plain: f.Plain, Abort: f.Abort, UserTimeout: f.UserTimeout}
			if f.Payload != "" {
				st.dial.Payload = []byte(f.Payload)
			}
			if f.UntilCounter != "" {
				if f.Client != "" && f.Client != cmp.Or(s.Clients[0].Name, "client") {
					return nil, 0, b.errAt(p("until-counter"), "until-counter watches the first client's node: the connections come from the first client")
				}
				st.untilCounter = f.UntilCounter
			}
			bound += time.Duration(f.Connect) * st.timeout
		case "moment":
			moments[f.Moment] = true
			st.moment = f.Moment
		case "wait":
			if f.Wait < 0 {
				return nil, 0, b.errAt(p("wait"), "wait %v: want a positive duration", f.Wait)
			}
			st.wait = f.Wait
			bound += f.Wait
		case "call":
			sc, err := callTimeline(f.Call)
			if err != nil {
				return nil, 0, b.errAt(p("call"), "call: %v", err)
			}
			st.script = sc.Run
		case "sysctl":
			w := f.Sysctl
			if err := b.node(p("sysctl", "node"), "sysctl", w.Node); err != nil {
				return nil, 0, err
			}
			if !strings.HasPrefix(w.Key, "net.") {
				return nil, 0, b.errAt(p("sysctl", "key"), "sysctl %q: only net.* keys are per network namespace", w.Key)
			}
			st.sysctl = w
		case "rounds", "repeat":
			n := max(f.Rounds, f.Repeat)
			if n < 1 || len(f.Steps) == 0 {
				return nil, 0, b.errAt(p(what[0]), "%s: want a count of 1 or more and steps", what[0])
			}
			inner, ib, err := b.steps(p("steps"), f.Steps, s, moments)
			if err != nil {
				return nil, 0, err
			}
			st.rounds, st.repeat, st.steps = f.Rounds, f.Repeat, inner
			bound += time.Duration(n) * ib
		}
		out = append(out, st)
	}
	return out, bound, nil
}

// run plays steps; round numbers the connections of a rounds step.
func run(ctx context.Context, env *scenarios.Env, steps []step, round int) error {
	for _, st := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case st.connect > 0:
			d := st.dial
			d.Round = round
			for range st.connect {
				if st.untilCounter != "" {
					if err := dialUntilCounter(ctx, env, d, st.untilCounter); err != nil {
						return err
					}
				} else {
					env.DialFrom(ctx, st.client, d)
				}
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		case st.moment != "":
			if err := env.Moment(st.moment); err != nil {
				return fmt.Errorf("moment %q: %w", st.moment, err)
			}
		case st.wait > 0:
			t := time.NewTimer(st.wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		case st.script != nil:
			if err := st.script(ctx, env); err != nil {
				return fmt.Errorf("timeline: %w", err)
			}
		case st.sysctl != nil:
			if err := env.WriteSysctl(st.sysctl.Node, st.sysctl.Key, st.sysctl.Value); err != nil {
				return fmt.Errorf("timeline: sysctl %s on %s: %w", st.sysctl.Key, st.sysctl.Node, err)
			}
		case st.rounds > 0:
			for r := 1; r <= st.rounds; r++ {
				if err := run(ctx, env, st.steps, r); err != nil {
					return err
				}
			}
		case st.repeat > 0:
			for range st.repeat {
				if err := run(ctx, env, st.steps, round); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// counterPoll is how often until-counter reads the client's counter.
const counterPoll = 5 * time.Millisecond

// dialUntilCounter makes one connection and ends it as soon as the first
// client's node has counted name once more than before it.
func dialUntilCounter(ctx context.Context, env *scenarios.Env, d scenarios.Dial, name string) error {
	before, err := env.ClientCounter(name)
	if err != nil {
		return fmt.Errorf("timeline: counter %s: %w", name, err)
	}
	_, _, err = env.DialUntil(ctx, d, counterPoll, func() (bool, error) {
		n, err := env.ClientCounter(name)
		return n > before, err
	})
	if err != nil {
		return fmt.Errorf("timeline: counter %s: %w", name, err)
	}
	return nil
}

// onlyCall reports whether f is a call step and nothing else.
func onlyCall(f Step) bool {
	f.Call = nil
	return reflect.ValueOf(f).IsZero()
}

// hasCall reports whether a timeline calls a catalogue timeline, whose
// moments the file cannot list.
func hasCall(fs []Step) bool {
	return slices.ContainsFunc(fs, func(f Step) bool { return f.Call != nil || hasCall(f.Steps) })
}
