package scenarios

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/topology"

	. "github.com/tfolab/tfolab/assertions"
)

// Scenarios for the report (issue 14): a control that measures what TFO
// saves against a plain handshake over an emulated RTT, and a blackhole
// scenario that sets no blackhole sysctl of its own, so that it shows what
// the namespace's (or a profile's) setting does.

func init() { register(AsConfigured); registerMutants(asConfiguredMutants) }

// ControlRTT is the control's emulated round trip: the delay middlebox
// holds each packet half of it on the router, each way. A report run with
// an RTT of its own replaces it (middlebox.DelayName).
const ControlRTT = 50 * time.Millisecond

// AsConfigured is this file's part of the catalogue.
func AsConfigured() []Scenario {
	return []Scenario{BlackholeAsConfigured(), PlainVsTFO()}
}

// PlainVsTFO is the control: over a 50 ms RTT, a plain connect() (request
// after the handshake), then a cookie request, then a connection with its
// request in the SYN. TFO's first byte comes one RTT before the plain
// one's (RFC 7413 §1: the saving is the handshake's round trip).
func PlainVsTFO() Scenario {
	return Scenario{
		Name:        "control/routed/ipv4/plain-vs-tfo",
		Description: fmt.Sprintf("over a %v RTT: a plain handshake, a cookie request, then TFO: data in the SYN saves one RTT in time to first byte", ControlRTT),
		Labels:      []string{"baseline", "control", "rtt", "routed", "ipv4"},
		Topology:    topology.Routed(),
		Family:      topology.IPv4,
		Sysctls:     tfoSysctls(tfoClient, tfoServer),
		Services:    []Service{listener(serverQueue)},
		Diagnosis:   diagnosed(diagnose.TFOWorks),
		Clients: []Client{
			{Name: "plain", Kind: LabClient{Mode: tfo.ModePlain}, Connections: 1},
			{Name: "tfo", Kind: LabClient{Mode: tfo.ModeSendto}, Connections: 2},
		},
		Middleboxes: []MiddleboxSpec{{Box: middlebox.Delay(ControlRTT / 2)}},
		Expect: []types.GomegaMatcher{
			Conn(0,
				Dialogue(AtClient,
					ClientSYN().WithoutFastOpen().WithoutPayload(),
					ServerSYNACK().WithoutFastOpen().AckingSYNOnly(),
					ClientData().WithPayload(payloadLen)),
				SynDataAcked(false),
				Responded()),
			Conn(1,
				Dialogue(AtClient,
					ClientSYN().WithCookieRequest().WithoutPayload(),
					ServerSYNACK().WithCookie().AckingSYNOnly(),
					ClientData().WithPayload(payloadLen)),
				Responded()),
			Conn(2,
				Dialogue(AtClient,
					ClientSYN().WithCookie().WithPayload(payloadLen),
					ServerSYNACK().AckingSYNData()),
				NoPacket(AtClient, ClientData()),
				SynDataAcked(true),
				Responded()),
			SavesOneRTT(0, 2),
		},
	}
}

// asConfiguredBudget bounds BlackholeAsConfigured's timeline: three
// detections (3 s each) with pauses of 1, 2 and 4 s and their probing fit;
// a pause that would outlast it is noted, not waited for.
const asConfiguredBudget = 26 * time.Second

// BlackholeAsConfigured: behind drop-tfo-replies, with whatever
// tcp_fastopen_blackhole_timeout_sec the client namespace has (the
// scenario sets none): at 0 (the default) every connection tries TFO and
// stalls, nothing is paused; at T each detection (the 3rd SYN timeout)
// pauses active TFO for T, 2T, 4T, probed as far as the budget allows.
func BlackholeAsConfigured() Scenario {
	s := blackholeScenario("as-configured/drop-tfo-replies",
		"behind drop-tfo-replies with the client's own blackhole timeout (none set here: a profile's, or the default 0): "+
			"off, every connection stalls; T, TFO pauses T, 2T, 4T",
		"0", middlebox.DropTFOReplies, AsConfiguredTimeline(false), asConfiguredBudget)
	delete(s.Sysctls[topology.Client], BlackholeTimeoutKey)
	s.Labels = append(s.Labels, "profile")
	s.Expect = []types.GomegaMatcher{
		cookieLearned(),
		Labelled(observation.RoleDetect,
			unansweredTFOSyn(3),
			NoPacket(AtClient, ServerSYNACK())),
		PausesFollowSysctl(topology.Client, MaxProbeGap),
	}
	s.Diagnosis = diagnosed(diagnose.SynackLost)
	return s
}

// AsConfiguredTimeline is BlackholeAsConfigured's. rewrite writes the
// sysctl again right after each detection (the self-check's break: that
// ends the pause at once).
func AsConfiguredTimeline(rewrite bool) Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		start := time.Now()
		learnCookie(ctx, env)
		v, err := env.Client().Sysctl(BlackholeTimeoutKey)
		if err != nil {
			return err
		}
		secs, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s is %q: %w", BlackholeTimeoutKey, v, err)
		}
		T := time.Duration(secs) * time.Second
		if T == 0 {
			// Nothing to detect: two connections into the hole show that
			// every one stalls (each bounded past where detection would be).
			for k := 1; k <= 2; k++ {
				if _, _, err := detect(ctx, env, k); err != nil {
					return err
				}
			}
			return nil
		}
		for k := 1; k <= 3; k++ {
			at, ok, err := detect(ctx, env, k)
			if err != nil || !ok {
				return err
			}
			if rewrite {
				if err := env.Client().SetSysctl(BlackholeTimeoutKey, v); err != nil {
					return err
				}
				env.Mark("sysctl written", k)
			}
			env.Dial(ctx, Dial{Label: "during", Round: k, Timeout: lab.InitialRTO})
			want := T << (k - 1)
			// The pause, its probing past the end, and the next detection
			// must fit; otherwise say so rather than overrun the budget.
			need := want + 2*time.Second
			if k < 3 {
				need += env.Obs.SynSchedule.DetectionAt() + 2*lab.InitialRTO
			}
			if time.Since(start)+need > asConfiguredBudget {
				env.Mark(fmt.Sprintf("pause %d (%v) not probed: it outlasts the run", k, want), k)
				return nil
			}
			if err := watchPause(ctx, env, k, at, want); err != nil {
				return err
			}
		}
		return nil
	}, "AsConfiguredTimeline", rewrite)
}

func asConfiguredMutants() []Mutant {
	wrongPort := BlackholeAsConfigured()
	wrongPort.Middlebox().Port = ServicePort + 9
	rewrite := BlackholeAsConfigured()
	rewrite.Sysctls[topology.Client][BlackholeTimeoutKey] = seconds(BlackholeTimeout)
	rewrite.Script(AsConfiguredTimeline(true))
	noDelay := PlainVsTFO()
	noDelay.Middleboxes = nil
	serverOff := PlainVsTFO()
	serverOff.Sysctls[topology.Server]["net.ipv4.tcp_fastopen"] = tfoClient
	return []Mutant{
		mutant(fmt.Sprintf("as-configured blackhole: drop-tfo-replies pointed at port %d", ServicePort+9), wrongPort, `"detect" connections`, "pauses as configured"),
		mutant("as-configured blackhole, timeout 1 s: the sysctl written again after each detection (ends the pause)", rewrite, "pauses as configured"),
		mutant("plain-vs-tfo control without its delay middlebox", noDelay, "TFO saving"),
		mutant("plain-vs-tfo control with the server's TFO off", serverOff, "connection 2", "TFO saving"),
	}
}
