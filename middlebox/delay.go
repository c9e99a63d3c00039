package middlebox

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/delay"
	"github.com/tfolab/tfolab/lab/rules"
)

// DelayName is the name of every Delay middlebox, whatever its delay: a
// front end that sets the lab's RTT finds (and replaces) it by this name.
const DelayName = "delay"

// delayQueues numbers the queues of this process: a number is per network
// namespace, so uniqueness here only keeps two delays in one namespace apart.
var delayQueues atomic.Uint32

// Delay holds every TCP packet leaving the node for oneWay before it goes
// on: on the router of Routed, both directions are delayed, so the round
// trip between client and server grows by 2 × oneWay. It stands in for
// netem, which this kernel lacks (lab/delay: NFQUEUE with --queue-bypass,
// so traffic passes if the reader dies). The rule sits in mangle
// PREROUTING (lab/delay.Rule): an accepted packet goes on through every
// FORWARD chain, so a firewall installed beside it, before or after, still
// sees and drops packets as it would without it.
func Delay(oneWay time.Duration) Middlebox {
	return Middlebox{
		Name: DelayName,
		Description: fmt.Sprintf("holds every TCP packet leaving the node %v (NFQUEUE, --queue-bypass): on a router, an RTT of %v between client and server",
			oneWay, 2*oneWay),
		Check: func(f lab.Family, p Params) error {
			if oneWay < 0 || oneWay > 10*time.Second {
				return fmt.Errorf("delay %v: want 0 to 10 s each way", oneWay)
			}
			return validate(f, p)
		},
		Install: func(l *lab.Lab, ns *lab.Namespace, f lab.Family, p Params) (Installed, error) {
			n := uint16(delayQueues.Add(1)%65535 + 1)
			// The reader first, a process of its own at a real-time
			// priority (see lab/delay): a packet the rule queued before
			// anyone read would pass undelayed (--queue-bypass), never be
			// lost, but the delay must hold from the first packet on.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := delay.Spawn(ctx, delay.Options{Queue: n, Delay: oneWay, Family: f, Run: ns.Runner()})
			if err != nil {
				return nil, err
			}
			l.Defer(fmt.Sprintf("delay reader %d in %s", n, ns.Name), func() error {
				_, err := r.Stop()
				return err
			})
			if err := rules.Apply(l, ns, f, []rules.Rule{delay.Rule(n)}); err != nil {
				return nil, err
			}
			return installedDelay{}, nil
		},
		Made: &Made{Fn: "Delay", Args: []any{oneWay}},
	}
}

// installedDelay reports no hits: the delay is no firewall, and its
// packet count would only blur a firewall's (MiddleboxMatched adds every
// installed rule's hits). Its effect is on the wire: every round trip.
type installedDelay struct{}

func (installedDelay) Hits() ([]Hit, error) { return nil, nil }
