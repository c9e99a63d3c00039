package firewall

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/scenarios"
	"github.com/tfolab/tfolab/topology"
)

// Phase is when the ruleset appears, as far as the client is concerned.
type Phase int

const (
	// FirstContact: the ruleset is in place before the client has a
	// cookie: its cookie request goes through it.
	FirstContact Phase = iota
	// FirewallChange: the ruleset is installed after the client learned a
	// cookie on an open path, as after a firewall change; the SYNs that
	// carry the cookie and data go through it (the case that hurts
	// SYN-data drops).
	FirewallChange
)

// Phases are the phases, in report order.
var Phases = []Phase{FirstContact, FirewallChange}

// Slug is the phase's name in artefact paths and expectation files.
func (p Phase) Slug() string {
	if p == FirewallChange {
		return "firewall-change"
	}
	return "first-contact"
}

func (p Phase) String() string { return strings.ReplaceAll(p.Slug(), "-", " ") }

// Modes are the client modes every family is tried in.
var Modes = []tfo.Mode{tfo.ModeSendto, tfo.ModeConnect}

// Variant is one tested path: family × client mode × phase, with the
// client's blackhole detection off (the default) or on.
type Variant struct {
	Family lab.Family
	Mode   tfo.Mode
	Phase  Phase
	// Detection sets net.ipv4.tcp_fastopen_blackhole_timeout_sec on the
	// client to DetectionTimeout (off: 0, the default since Linux 5.14).
	Detection bool
}

// Slug is the variant's path-safe name: ipv4/sendto/first-contact/detection-off.
func (v Variant) Slug() string {
	return fmt.Sprintf("%s/%s/%s/%s", strings.ToLower(v.Family.String()), v.Mode, v.Phase.Slug(), v.detectionSlug())
}

func (v Variant) detectionSlug() string {
	if v.Detection {
		return "detection-on"
	}
	return "detection-off"
}

func (v Variant) String() string {
	return fmt.Sprintf("%s %s, %s, detection %s", v.Family, v.Mode, v.Phase, onOff(v.Detection))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// Variants are every variant of the families the check covers, in report
// order.
func (c *Check) Variants() []Variant {
	var out []Variant
	for _, f := range c.Families() {
		for _, m := range Modes {
			for _, p := range Phases {
				for _, d := range []bool{false, true} {
					out = append(out, Variant{Family: f, Mode: m, Phase: p, Detection: d})
				}
			}
		}
	}
	return out
}

// Connection labels of the check's timelines.
const (
	// LabelOpen is the connection that learns a cookie on the open path
	// before a firewall change.
	LabelOpen = "open"
	// LabelThrough are connections through the ruleset (Round 1, 2, ...).
	LabelThrough = "through"
	// LabelDetect is, with detection on, the connection given time to run
	// into the kernel's blackhole detection.
	LabelDetect = "detect"
	// LabelAfter is, with detection on, the connection after it: it tells
	// whether TFO was paused for the whole host.
	LabelAfter = "after"
)

// ChangeMoment is the timeline's moment the ruleset is installed at in the
// FirewallChange phase.
const ChangeMoment = "firewall change"

// DetectionTimeout is the blackhole timeout the detection-on variants set:
// an hour, the default before Linux 5.14, so a pause outlasts the check.
const DetectionTimeout = "3600"

// TFO sysctl values (net.ipv4.tcp_fastopen bits, ip-sysctl.rst).
const (
	tfoClient = "1" // 0x1: client
	tfoServer = "2" // 0x2: server
	// serverQueue is the listener's TCP_FASTOPEN backlog.
	serverQueue = 16
)

// maxDetectionAt bounds when a TFO SYN trips detection on any kernel: the
// 3rd SYN retransmission, at 3 s with linear timeouts (6.5+) and at 7 s
// with exponential backoff from 1 s. The timeline's own bound for the
// detecting connection comes from the client namespace's schedule.
const maxDetectionAt = 7 * time.Second

// throughConns is how many connections go through the ruleset with
// detection off: in the first contact a cookie request and two that would
// carry data; after a firewall change two that carry data ("every
// connection" needs more than one).
func throughConns(p Phase) int {
	if p == FirewallChange {
		return 2
	}
	return 3
}

// Scenario is the scenario of variant v: the Routed topology, the lab's
// TFO listener on the input's port, the lab's client in v's mode, every
// file that filters v's family placed as the input says, installed at the
// start or at ChangeMoment. expect, if set, are its expectations.
func (c *Check) Scenario(v Variant, expect ...types.GomegaMatcher) scenarios.Scenario {
	when := scenarios.AtStart
	if v.Phase == FirewallChange {
		when = ChangeMoment
	}
	var boxes []scenarios.MiddleboxSpec
	for _, b := range c.boxes(v.Family) {
		boxes = append(boxes, scenarios.MiddleboxSpec{Box: b, Placement: c.Input.Place, When: when})
	}
	timeout := "0"
	if v.Detection {
		timeout = DetectionTimeout
	}
	return scenarios.Scenario{
		Name:        "firewall/" + v.Slug(),
		Description: fmt.Sprintf("%s behind %s", v, c.Describe()),
		Labels:      []string{"firewall", strings.ToLower(v.Family.String())},
		Topology:    topology.Routed(),
		Family:      v.Family,
		Sysctls: map[string]map[string]string{
			topology.Client: {"net.ipv4.tcp_fastopen": tfoClient, "net.ipv4.tcp_fastopen_blackhole_timeout_sec": timeout},
			topology.Server: {"net.ipv4.tcp_fastopen": tfoServer},
		},
		Services:    []scenarios.Service{{Port: c.Input.Port, Kind: scenarios.Listener{Queue: serverQueue}}},
		Clients:     []scenarios.Client{{Kind: scenarios.LabClient{Mode: v.Mode}, ConnTimeout: scenarios.StallBound}},
		Middleboxes: boxes,
		Timeline:    timeline(v),
		Timeout:     timelineBound(v),
		Expect:      expect,
	}
}

// timelineBound is the sum of the bounds of the timeline's connections.
func timelineBound(v Variant) time.Duration {
	n := throughConns(v.Phase)
	var d time.Duration
	if v.Phase == FirewallChange {
		d += scenarios.StallBound // the open path
	}
	if v.Detection {
		n = 2 // a through connection (first contact) or none, then after
		if v.Phase == FirewallChange {
			n = 1
		}
		d += maxDetectionAt + detectMargin
	}
	return d + time.Duration(n)*scenarios.StallBound + time.Second
}

// detectMargin is how long the detecting connection lives past the SYN
// timeout that trips detection: an RTO and a half, room for timers that
// fire late on a loaded machine (lab.SynSchedule.Late) before the bound
// ends the connection.
const detectMargin = 3 * lab.InitialRTO / 2

// timeline is the variant's sequence of connections. Every connection is
// bounded (a stall costs scenarios.StallBound); the detecting one lives
// until detection is due by the client's own SYN schedule.
func timeline(v Variant) scenarios.Timeline {
	return func(ctx context.Context, env *scenarios.Env) error {
		bound := scenarios.StallBound
		if v.Phase == FirewallChange {
			env.Dial(ctx, scenarios.Dial{Label: LabelOpen, Timeout: bound})
			if err := env.Moment(ChangeMoment); err != nil {
				return err
			}
		}
		if !v.Detection {
			for k := 1; k <= throughConns(v.Phase) && ctx.Err() == nil; k++ {
				env.Dial(ctx, scenarios.Dial{Label: LabelThrough, Round: k, Timeout: bound})
			}
			return ctx.Err()
		}
		if v.Phase == FirstContact {
			env.Dial(ctx, scenarios.Dial{Label: LabelThrough, Round: 1, Timeout: bound})
		}
		detectAt := env.Obs.SynSchedule.DetectionAt()
		if detectAt <= 0 || detectAt > maxDetectionAt {
			detectAt = maxDetectionAt
		}
		if ctx.Err() == nil {
			env.Dial(ctx, scenarios.Dial{Label: LabelDetect, Timeout: detectAt + detectMargin})
		}
		if ctx.Err() == nil {
			env.Dial(ctx, scenarios.Dial{Label: LabelAfter, Timeout: bound})
		}
		return ctx.Err()
	}
}
