package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/topology"

	. "github.com/tfolab/tfolab/assertions"
)

// The give-up paths of blackhole detection and the remaining blackhole
// paths (issue 15). The kernel detects not only at the third SYN timeout
// but when a TFO socket gives up earlier (tcp_syn_retries small, or
// TCP_USER_TIMEOUT short: tcp_write_timeout passes `expired`), and in any
// state, so a TFO socket whose data after the handshake goes unanswered
// detects at its third RTO too. Every timing expectation here derives from
// the client's SYN timer model (lab.SynSchedule), so a profile that changes
// these sysctls gets its own expectations.

func init() {
	register(BlackholePaths)
	registerMutants(blackholePathMutants)
}

// BlackholePaths is this part of the catalogue.
func BlackholePaths() []Scenario {
	return []Scenario{
		BlackholeNoRearmWithoutData(),
		BlackholeServerDataNoFIN(),
		BlackholeGiveUpSynRetries(),
		BlackholeCookieRequestToDeadServer(),
		BlackholeClientDataDropped(),
		BlackholeGiveUpUserTimeout(1500*time.Millisecond, 1500*time.Millisecond),
		BlackholeGiveUpUserTimeout(500*time.Millisecond, 500*time.Millisecond),
	}
}

// blackholePathMutants: every scenario here has a twin that breaks it the
// way a deployment or a wrong belief would, named by the expectation that
// must reject it.
func blackholePathMutants() []Mutant {
	wrongUT := BlackholeGiveUpUserTimeout(1500*time.Millisecond, 2500*time.Millisecond)
	// 1000 ms would not do: the first SYN timer is not clamped, so any user
	// timeout up to 1 s gives up at the first retransmission's next jiffy.
	wrongUT500 := BlackholeGiveUpUserTimeout(500*time.Millisecond, 1500*time.Millisecond)
	detectionOff := BlackholeGiveUpSynRetries()
	detectionOff.Sysctls[topology.Client]["net.ipv4.tcp_fastopen_blackhole_timeout_sec"] = "0"
	wrongPort := BlackholeClientDataDropped()
	wrongPort.Middlebox().Port = ServicePort + 1
	finPasses := BlackholeServerDataNoFIN()
	finPasses.Middlebox().Box = middlebox.BlackholeAfterHandshake
	deadOff := BlackholeCookieRequestToDeadServer()
	deadOff.Sysctls[topology.Client]["net.ipv4.tcp_fastopen_blackhole_timeout_sec"] = "0"
	rearms := BlackholeNoRearmWithoutData()
	echoed := silentExchange
	echoed.Service = "echo"
	rearms.Script(PauseExchangePause(&echoed, 2*BlackholeTimeout))
	return []Mutant{
		mutant("give-up scenario whose socket has TCP_USER_TIMEOUT 2500 ms where 1500 ms is expected", wrongUT,
			`"detect" connections`, "detection 1 at the give-up"),
		mutant("give-up scenario whose socket has TCP_USER_TIMEOUT 1500 ms where 500 ms is expected", wrongUT500,
			`"detect" connections`, "detection 1 at the give-up"),
		mutant("tcp_syn_retries 1 give-up with blackhole detection off", detectionOff,
			"detection 1 at the give-up", "client counters"),
		mutant("client-data blackhole with its firewall pointed at the wrong port", wrongPort,
			`"detect" connections`),
		mutant("server-data-and-FIN blackhole whose firewall lets the FIN through", finPasses,
			`"next" connections`, "client counters"),
		mutant("cookie request to a dead server with blackhole detection off", deadOff,
			`"after" connections`, "client counters"),
		mutant("no-rearm scenario whose exchange after the pause does get data back", rearms,
			"pause 2"),
	}
}

// giveUpBound is how long a detecting connection that gives up is kept:
// past the model's give-up by its lateness and two RTOs.
func giveUpBound(env *Env, userTimeout time.Duration) time.Duration {
	s := env.Obs.SynSchedule
	if userTimeout > 0 {
		if u, err := s.WithUserTimeout(userTimeout); err == nil {
			s = u
		}
	}
	return s.GiveUp + s.GiveUpLate + 2*lab.InitialRTO
}

// detectGivingUp makes the detecting connection of round 1 and waits for
// the client namespace's blackhole counter as detectOn does, but lets the
// socket run to its own give-up (the lab's bound lies past it).
func detectGivingUp(ctx context.Context, env *Env, d Dial) (bool, error) {
	d.Label, d.Round, d.Timeout, d.Watch = observation.RoleDetect, 1, giveUpBound(env, d.UserTimeout), true
	return awaitDetection(ctx, env, d)
}

// awaitDetection makes connection d and polls the client namespace's
// blackhole counter while it runs, for the first detection, which it
// marks. It reports whether that came before d's bound.
func awaitDetection(ctx context.Context, env *Env, d Dial) (bool, error) {
	_, seen, err := env.DialUntil(ctx, d, detectPoll, func() (bool, error) {
		v, err := env.ClientCounter(lab.TCPFastOpenBlackhole)
		return v >= 1, err
	})
	if err != nil || seen.IsZero() {
		return false, err
	}
	env.MarkAt(observation.MarkDetection, 1, seen)
	return true, nil
}

// giveUpChecks are what a detection at the give-up shows: the detecting
// connection's TFO SYN into the hole and its give-up where the model says,
// the detection at that moment, and the next connection plain although a
// cookie is cached.
func giveUpChecks(userTimeout time.Duration) []types.GomegaMatcher {
	return []types.GomegaMatcher{
		cookieLearned(),
		Labelled(observation.RoleDetect,
			Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(payloadLen)),
			NoPacket(AtClient, ServerSYNACK()),
			GaveUp(userTimeout)),
		DetectedAtGiveUp(1, userTimeout),
		servedPlainly("after"),
		blackholesCounted(1, Delta(lab.TCPFastOpenActiveFail, 1)),
	}
}

// giveUpScenario is the frame of the give-up paths: behind
// drop-tfo-replies, a cookie, then a detecting connection (with
// TCP_USER_TIMEOUT dial, 0 for none) that runs to its own give-up, then
// one more connection, made in the pause. expect is the user timeout the
// expectations predict (giveUpChecks).
func giveUpScenario(name, desc string, expect, dial time.Duration) Scenario {
	s := blackholeScenario(name, desc, seconds(HeldPause), middlebox.DropTFOReplies,
		GiveUpTimeline(dial), 8*time.Second)
	s.Expect = giveUpChecks(expect)
	s.Diagnosis = diagnosed(diagnose.BlackholePaused)
	return s
}

// GiveUpTimeline is giveUpScenario's: a cookie, a detecting connection
// (TCP_USER_TIMEOUT dial, 0 for none) run to its give-up, then one more.
func GiveUpTimeline(dial time.Duration) Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		learnCookie(ctx, env)
		ok, err := detectGivingUp(ctx, env, Dial{UserTimeout: dial})
		return thenDial(ctx, env, ok, err, "after")
	}, "GiveUpTimeline", dial)
}

// BlackholeGiveUpSynRetries: tcp_syn_retries 1 and no linear timeouts, so
// the TFO SYN's socket gives up at its second expiry (3 s: the count test,
// one retransmission) with icsk_retransmits 1: detection by `expired`,
// before any third timeout.
func BlackholeGiveUpSynRetries() Scenario {
	s := giveUpScenario("give-up/syn-retries-1",
		"tcp_syn_retries 1, tcp_syn_linear_timeouts 0: the TFO socket gives up at 3 s, before a third timeout, and detects there", 0, 0)
	s.Sysctls[topology.Client]["net.ipv4.tcp_syn_retries"] = "1"
	s.Sysctls[topology.Client]["net.ipv4.tcp_syn_linear_timeouts"] = "0"
	return s
}

// BlackholeGiveUpUserTimeout: a socket with TCP_USER_TIMEOUT shorter than
// the third SYN timeout gives up when it runs out (the RTO is clamped to
// what is left of it, tcp_clamp_rto_to_user_timeout) and detects there.
// expect is what the expectations predict, dial what the socket gets (the
// self-check makes them differ).
func BlackholeGiveUpUserTimeout(expect, dial time.Duration) Scenario {
	name := fmt.Sprintf("give-up/user-timeout-%dms", expect.Milliseconds())
	if dial != expect {
		name += fmt.Sprintf("-dialled-%dms", dial.Milliseconds())
	}
	return giveUpScenario(name,
		fmt.Sprintf("TCP_USER_TIMEOUT %v on the TFO socket: it gives up when that runs out, before a third SYN timeout, and detects there", expect),
		expect, dial)
}

// BlackholeClientDataDropped: the handshake of a TFO flow passes (the
// server acks the SYN's data), but the request's part that did not fit in
// the SYN is dropped after it. The client retransmits it, a tail-loss
// probe first and then on RTOs (TCP_RTO_MIN, 200 ms, doubling); at the
// third RTO (icsk_retransmits == 2) the ESTABLISHED TFO socket detects a
// blackhole, and the next connection goes out plain.
func BlackholeClientDataDropped() Scenario {
	s := blackholeScenario("client-data-dropped-after-handshake",
		"the TFO handshake passes, the client's data after it is dropped: detection at its third RTO, the next connection plain",
		seconds(HeldPause), middlebox.DropTFOClientData,
		ClientDataDroppedTimeline(3000), 8*time.Second)
	s.Expect = []types.GomegaMatcher{
		cookieLearned(),
		Labelled(observation.RoleDetect,
			Dialogue(AtClient,
				ClientSYN().WithCookie(),
				ServerSYNACK().AckingSYNData()),
			SynDataAcked(true),
			DataRetransmittedBeforeDetection(1, 3, 4),
			// The request never completes, so the server never answers.
			NoPacket(AtClient, ServerData())),
		Labelled("after",
			Dialogue(AtClient, ClientSYN().WithoutFastOpen().WithoutPayload()),
			Responded()),
		blackholesCounted(1),
	}
	s.Diagnosis = diagnosed(diagnose.BlackholePaused)
	return s
}

// ClientDataDroppedTimeline is BlackholeClientDataDropped's: a cookie, a
// connection whose request (size bytes of x and a newline: more than one
// MSS, so some of it follows the handshake) is dropped after the
// handshake, until detection, then the next one.
func ClientDataDroppedTimeline(size int) Scripted {
	big := []byte(strings.Repeat("x", size) + "\n")
	return scripted(func(ctx context.Context, env *Env) error {
		learnCookie(ctx, env)
		d := Dial{Label: observation.RoleDetect, Round: 1, Payload: big, Abort: true, Timeout: 3 * lab.InitialRTO}
		ok, err := awaitDetection(ctx, env, d)
		return thenDial(ctx, env, ok, err, "after")
	}, "ClientDataDroppedTimeline", size)
}

// BlackholeServerDataNoFIN: the server's data of a TFO flow is dropped and
// so is its FIN. The client has nothing outstanding, so no timer of its own
// runs, and no lone FIN reaches it: nothing detects, and the next
// connection tries TFO again (and stalls the same way). Contrast with the
// ofo-fin scenarios, where the FIN passes.
func BlackholeServerDataNoFIN() Scenario {
	s := blackholeScenario("server-data-and-fin-dropped",
		"the server's data and FIN of a TFO flow dropped: no detection at all, the next connection tries TFO again",
		seconds(BlackholeTimeout), middlebox.DropTFOServerDataAndFIN,
		StallThenNextTimeline(), StallBound+2*time.Second)
	s.Middlebox().When = cookieLearnedMoment
	s.Expect = []types.GomegaMatcher{
		cookieLearned(),
		Labelled("stall",
			Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(payloadLen), ServerSYNACK().AckingSYNData()),
			Dialogue(AtServer, ServerData().WithPayload(payloadLen)),
			NoPacket(AtClient, ServerData()),
			SynDataAcked(true),
			Stalled()),
		Labelled("next",
			Dialogue(AtClient, ClientSYN().WithCookie().WithPayload(payloadLen))),
		blackholesCounted(0),
	}
	s.Diagnosis = diagnosed(diagnose.DataBlackholed)
	return s
}

// StallThenNextTimeline is BlackholeServerDataNoFIN's: a cookie, the
// moment the box goes in, a connection that stalls, then the next one.
func StallThenNextTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		if err := learnCookieThenBox(ctx, env); err != nil {
			return err
		}
		env.Dial(ctx, Dial{Label: "stall", Abort: true, Timeout: StallBound})
		env.Dial(ctx, Dial{Label: "next", Abort: true, Timeout: lab.InitialRTO})
		return nil
	}, "StallThenNextTimeline")
}

// BlackholeCookieRequestToDeadServer: with no cookie cached, the first
// SYN only asks for one (an empty option 34), yet tcp_syn_options sets
// syn_fastopen for it, so three timeouts of a cookie request to a server
// that is down count as a blackhole too: TFO pauses before the client ever
// had a cookie, and the next connection carries no option 34 at all.
func BlackholeCookieRequestToDeadServer() Scenario {
	s := deadServerScenario("cookie-request-to-dead-server",
		"no cookie yet, a cookie request to a dead server times out three times: detected as a blackhole all the same",
		seconds(HeldPause), CookieRequestToDeadTimeline())
	s.Expect = []types.GomegaMatcher{
		Labelled(observation.RoleDetect,
			Dialogue(AtClient,
				ClientSYN().WithCookieRequest().WithoutPayload(),
				ClientSYN().WithoutFastOpen(),
				ClientSYN().WithoutFastOpen(),
				ClientSYN().WithoutFastOpen())),
		Labelled("after",
			Dialogue(AtClient, ClientSYN().WithoutFastOpen().WithoutPayload()),
			Responded()),
		blackholesCounted(1),
		CookieCached(topology.Client, false),
	}
	s.Diagnosis = diagnosed(diagnose.BlackholePaused)
	return s
}

// CookieRequestToDeadTimeline is BlackholeCookieRequestToDeadServer's: a
// cookie request to the dead port until detection, then one more
// connection.
func CookieRequestToDeadTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		_, ok, err := detectOn(ctx, env, Dial{Label: observation.RoleDetect, Round: 1, Port: DeadPort}, 1)
		return thenDial(ctx, env, ok, err, "after")
	}, "CookieRequestToDeadTimeline")
}

// BlackholeNoRearmWithoutData: after the first pause a TFO connection goes
// through (its SYN data is acked) but gets no data back (the silent
// server): that does not re-arm the backoff (tcp_fastopen_active_disable_
// ofo_check resets it only when data_segs_in > 0), so the second
// detection's pause is 2× the timeout. Stated explicitly rather than left
// to the backoff chain.
func BlackholeNoRearmWithoutData() Scenario {
	T := BlackholeTimeout
	return pauseScenario("no-rearm-without-data",
		"a TFO exchange after the pause that gets no data back does not reset the backoff: the second pause is 2 s",
		PauseExchangePause(&silentExchange, 2*T), 2*5*time.Second+3*T+4*time.Second,
		tfoUsedAgain("silent-exchange", Completed()),
		PauseLasted(1, T, MaxProbeGap),
		PauseLasted(2, 2*T, MaxProbeGap),
		blackholesCounted(2),
	)
}

// silentExchange is BlackholeNoRearmWithoutData's exchange after the
// first pause: the silent server accepts the SYN's data and answers
// nothing.
var silentExchange = Dial{Label: "silent-exchange", Service: "silent", Timeout: lab.InitialRTO}
