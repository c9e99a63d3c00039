package scenarios

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// TFO sysctl values (net.ipv4.tcp_fastopen bits, ip-sysctl.rst), in the
// decimal form /proc/sys accepts.
const (
	tfoClient         = "1"   // 0x1: client
	tfoServer         = "2"   // 0x2: server
	tfoClientNoCookie = "5"   // 0x1|0x4: client sends data in SYN without a cookie
	tfoServerNoCookie = "514" // 0x2|0x200: server accepts data in SYN without a cookie
)

// serverQueue is the listener's TCP_FASTOPEN backlog in every baseline.
const serverQueue = 16

// sets are the catalogue's parts, each a function that builds its
// scenarios afresh; a file adds its own with register in an init func.
var sets []func() []Scenario

func register(set func() []Scenario) { sets = append(sets, set) }

// The report's scenarios (AsConfigured) lead the catalogue.
func init() {
	register(AsConfigured)
	registerMutants(asConfiguredMutants)
	register(Blackhole)
	register(Baseline)
	register(Middleboxes)
}

// Catalogue returns every scenario the suite runs, freshly built.
func Catalogue() []Scenario {
	var out []Scenario
	for _, set := range sets {
		for _, s := range set() {
			out = append(out, s.withDiagnosis())
		}
	}
	return out
}

// withDiagnosis adds the scenario's diagnosis to its expectations and
// the label diagnose to its labels: the diagnoser is held to the
// behaviour every catalogue scenario was built for. Both ends are
// diagnosed together where one node serves everything; a pool's client
// side is diagnosed alone (each server has a capture of its own).
func (s Scenario) withDiagnosis() Scenario {
	d := s.Diagnosis
	if d.ClientSide == "" {
		return s
	}
	both := d.BothSides
	if both == "" && s.servedByOneNode() {
		both = d.ClientSide
	}
	client, server := s.Clients[0].node(), s.Services[0].node()
	clientLink := observation.LinkKey(client, s.Topology.Interfaces(client)[0])
	serverLink := observation.LinkKey(server, s.Topology.Interfaces(server)[0])
	diagnosis := DiagnosedAs(string(d.ClientSide), string(both), clientLink, serverLink)
	if d.RefusalsFrom != nil {
		diagnosis = PoolDiagnosedAs(d.RefusalsFrom, string(d.ClientSide), string(both), clientLink, serverLink)
	}
	s.Expect = append(slices.Clone(s.Expect), diagnosis)
	s.Labels = append(slices.Clone(s.Labels), "diagnose")
	return s
}

// servedByOneNode reports whether every service runs on one node.
func (s Scenario) servedByOneNode() bool {
	for _, svc := range s.Services {
		if svc.node() != s.Services[0].node() {
			return false
		}
	}
	return true
}

// Baseline is the foundation's matrix: Direct and Routed, IPv4 and IPv6,
// both client modes, for the three basic server/client configurations.
func Baseline() []Scenario {
	var out []Scenario
	for _, topo := range []topology.Spec{topology.Direct(), topology.Routed()} {
		for _, fam := range []topology.Family{topology.IPv4, topology.IPv6} {
			for _, mode := range []tfo.Mode{tfo.ModeSendto, tfo.ModeConnect} {
				out = append(out,
					CookieThenData(topo, fam, mode),
					ServerTFOOff(topo, fam, mode),
					NoCookieMode(topo, fam, mode),
				)
			}
		}
	}
	return out
}

// baseScenario is the baseline frame: topo and fam, the client's and the
// server's net.ipv4.tcp_fastopen, the lab's listener and two connections
// of the lab's client in mode.
func baseScenario(topo topology.Spec, fam topology.Family, mode tfo.Mode, what, desc, client, server string) Scenario {
	return Scenario{
		Name:        fmt.Sprintf("baseline/%s/%s/%s/%s", topo.Name, strings.ToLower(fam.String()), mode, what),
		Description: desc,
		Labels:      []string{"baseline", topo.Name, strings.ToLower(fam.String())},
		Topology:    topo,
		Family:      fam,
		Sysctls:     tfoSysctls(client, server),
		Services:    []Service{listener(serverQueue)},
		Clients:     []Client{labClient(mode, 2)},
	}
}

// tfoSysctls is net.ipv4.tcp_fastopen on the client and on the server
// node, in maps of their own (a catalogue entry or a mutant adds to them).
func tfoSysctls(client, server string) map[string]map[string]string {
	return map[string]map[string]string{
		topology.Client: {"net.ipv4.tcp_fastopen": client},
		topology.Server: {"net.ipv4.tcp_fastopen": server},
	}
}

var payloadLen = len(DefaultPayload)

// CookieThenData: the first connection asks for a cookie and the server
// hands one out; the second carries its request in the SYN and the server
// accepts it (RFC 7413 §3).
func CookieThenData(topo topology.Spec, fam topology.Family, mode tfo.Mode) Scenario {
	s := baseScenario(topo, fam, mode, "cookie-then-data",
		"first connection requests a cookie; second carries data in the SYN, accepted", tfoClient, tfoServer)
	s.Expect = cookieThenDataExpect()
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	return s
}

func cookieThenDataExpect() []types.GomegaMatcher { return labEndpoints.cookieThenData() }

// ServerTFOOff: the server's namespace has TFO off (sysctl 1, client only).
// The client keeps asking for a cookie and never gets one: plain handshakes,
// no passive TFO. After the first unanswered request the kernel retries with
// the experimental option form (254/0xF989), in case a server only knows that.
func ServerTFOOff(topo topology.Spec, fam topology.Family, mode tfo.Mode) Scenario {
	s := baseScenario(topo, fam, mode, "server-tfo-off",
		"server sysctl 1: cookie requests go unanswered, plain handshakes, no passive TFO", tfoClient, tfoClient)
	s.Expect = []types.GomegaMatcher{
		Conn(0, Dialogue(AtClient,
			ClientSYN().WithCookieRequest().Experimental(false).WithoutPayload(),
			ServerSYNACK().WithoutFastOpen().AckingSYNOnly())),
		Conn(1, Dialogue(AtClient,
			ClientSYN().WithCookieRequest().Experimental(true).WithoutPayload(),
			ServerSYNACK().WithoutFastOpen().AckingSYNOnly())),
		EveryConn(SynDataAcked(false), ServerAcceptedSynData(false), Responded()),
		// The server counts each cookie request even with its TFO off:
		// tcp_try_fastopen counts before it checks the sysctl.
		serverTFO(0, 2, Delta(lab.TCPFastOpenPassiveFail, 0)),
		CountersOf(topology.Client, HaveCounterDeltas(
			Delta(lab.TCPFastOpenActive, 0),
			Delta(lab.TCPFastOpenActiveFail, 0))),
		CookieCached(topology.Client, false),
	}
	s.Diagnosis = diagnosed(diagnose.ServerNoTFO)
	return s
}

// NoCookieMode: client 0x4 and server 0x200 skip the cookie exchange: the
// very first SYN carries data and no TFO option, and the server accepts it.
func NoCookieMode(topo topology.Spec, fam topology.Family, mode tfo.Mode) Scenario {
	s := baseScenario(topo, fam, mode, "no-cookie",
		"client 0x5, server 0x202: data in the very first SYN, no option 34", tfoClientNoCookie, tfoServerNoCookie)
	s.Expect = []types.GomegaMatcher{
		EveryConn(
			Dialogue(AtClient,
				ClientSYN().WithoutFastOpen().WithPayload(payloadLen),
				ServerSYNACK().AckingSYNData()),
			SynDataAcked(true),
			ServerAcceptedSynData(true),
			Responded()),
		serverTFO(2, 0),
		Counter(topology.Client, lab.TCPFastOpenActive, 2),
	}
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	return s
}

// Mutant is a scenario deliberately broken so that its expectations must
// reject it: proof that those expectations can fail. RejectedBy names the
// expectations (verdict names) that must fail; a mutant rejected only by
// "middlebox hits" would prove nothing about the behaviour checks.
type Mutant struct {
	Breakage   string
	Scenario   Scenario
	RejectedBy []string
}

// mutant labels s as a self-check of itself: it keeps its scenario's
// labels, so selecting a label runs the mutants that guard its checks.
func mutant(breakage string, s Scenario, rejectedBy ...string) Mutant {
	s.Labels = append(append([]string(nil), s.Labels...), "selfcheck")
	return Mutant{Breakage: breakage, Scenario: s, RejectedBy: rejectedBy}
}

// Mutants break CookieThenData (Routed, IPv4, sendto) the ways a real
// deployment gets it wrong, point every middlebox at the wrong port, and
// break the pause timing and the custom rules.
func Mutants() []Mutant {
	out := coreMutants()
	for _, set := range mutantSets {
		out = append(out, set()...)
	}
	for i := range out {
		out[i].Scenario = out[i].Scenario.withDiagnosis()
	}
	return out
}

// mutantSets are the self-checks other catalogue files add with
// registerMutants in an init func, beside their scenarios.
var mutantSets []func() []Mutant

func registerMutants(set func() []Mutant) { mutantSets = append(mutantSets, set) }

// coreMutants are the self-checks of the foundation's scenarios.
func coreMutants() []Mutant {
	base := func() Scenario { return CookieThenData(topology.Routed(), topology.IPv4, tfo.ModeSendto) }
	serverOff := base()
	serverOff.Sysctls[topology.Server]["net.ipv4.tcp_fastopen"] = tfoClient
	plain := base()
	plain.Client().Kind = LabClient{Mode: tfo.ModePlain}
	noQueue := base()
	noQueue.Service().Kind = Listener{}
	clientOff := base()
	clientOff.Client().Kind = LabClient{Mode: tfo.ModeConnect}
	clientOff.Sysctls[topology.Client]["net.ipv4.tcp_fastopen"] = "0"
	noRule := DropSynData(topology.IPv4, tfo.ModeSendto, middlebox.Router)
	noRule.Middlebox().Box = Emptied(middlebox.DropSynData.Name)
	out := []Mutant{
		mutant("drop-syn-data middlebox without its rule", noRule, "connection 1", "client counters"),
		mutant("server sysctl left at 1 (TFO server off)", serverOff, "connection 0", "connection 1", "server counters", "client cookie cache"),
		mutant("client sends no data in the SYN (plain connect)", plain, "connection 0", "connection 1", "client counters"),
		mutant("listener without TCP_FASTOPEN", noQueue, "connection 0", "connection 1", "server counters"),
		mutant("client sysctl 0 (TFO client off)", clientOff, "connection 0", "connection 1", "client counters"),
	}
	out = append(out, wrongPortMutants(Middleboxes())...)
	// The pause timing must be able to fail: without the exchange that
	// re-arms the backoff, the second pause is 2 s, not the 1 s expected.
	noRearm := BlackholeRearmBySuccess()
	noRearm.Script(PauseExchangePause(nil, BlackholeTimeout))
	out = append(out, mutant("blackhole re-arm scenario without its re-arming TFO exchange", noRearm, "pause 2"))
	custom := CustomRules(topology.IPv4, tfo.ModeSendto)
	custom.Middlebox().Box = middlebox.Custom(nil)
	return append(out, mutant("custom middlebox with an empty rules file", custom, "every connection"))
}

// wrongPortMutants: every middlebox scenario must depend on its firewall.
// Pointed at the wrong port its rules match nothing, and the behaviour
// checks of the connections the firewall should have hit must fail. One
// mutant per behaviour and placement among scens (the first scenario of
// each, so IPv4 sendto in catalogue order), for every middlebox whose
// rules guard the service port: a behaviour added to the catalogue gets
// its mutant here without a list to edit. Installers (nft, delay queues)
// are left out: nothing outside them says whether they read the port.
func wrongPortMutants(scens []Scenario) []Mutant {
	var out []Mutant
	seen := map[string]bool{}
	for _, s := range scens {
		if len(s.Middleboxes) != 1 || !guardsPort(s.Middleboxes[0], s.Family) {
			continue
		}
		key := s.Middlebox().Box.Name + "/" + s.Middlebox().Placement.String()
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, wrongPort(s, wrongPortRejectedBy(s)))
	}
	return out
}

// wrongPort points s's middlebox at ServicePort+1: a mutant that the
// expectations named rejectedBy must reject.
func wrongPort(s Scenario, rejectedBy ...string) Mutant {
	m := s.Middlebox()
	m.Port = ServicePort + 1
	where := ""
	if m.Placement != middlebox.Router {
		where = " (" + m.Placement.String() + ")"
	}
	if s.Diagnosis.ClientSide != "" {
		// With its firewall elsewhere the path is open: the diagnosis of
		// the captures must change too.
		rejectedBy = append(rejectedBy, "diagnosis")
	}
	return mutant(fmt.Sprintf("%s: %s middlebox%s pointed at port %d instead of %d", s.Name, m.Box.Name, where, ServicePort+1, ServicePort), s, rejectedBy...)
}

// guardsPort reports whether m's rules depend on the port it guards.
func guardsPort(m MiddleboxSpec, fam topology.Family) bool {
	if m.Box.Rules == nil {
		return false
	}
	rulesFor := func(port uint16) string {
		r, err := m.Box.Rules(fam, middlebox.Params{ServicePort: port, Placement: m.Placement})
		if err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprint(r)
	}
	return rulesFor(ServicePort) != rulesFor(ServicePort+1)
}

// wrongPortRejectedBy is the expectation a wrong-port mutant must fail:
// connection 1, the first the firewall changes, where the scenario checks
// it; else every connection.
func wrongPortRejectedBy(s Scenario) string {
	for _, m := range s.Expect {
		if NameOf(m) == "connection 1" {
			return "connection 1"
		}
	}
	return "every connection"
}

// Scenarios for the report (issue 14): a control that measures what TFO
// saves against a plain handshake over an emulated RTT, and a blackhole
// scenario that sets no blackhole sysctl of its own, so that it shows what
// the namespace's (or a profile's) setting does.

// ControlRTT is the control's emulated round trip: the delay middlebox
// holds each packet half of it on the router, each way. A report run with
// an RTT of its own replaces it (middlebox.DelayName).
const ControlRTT = 50 * time.Millisecond

// AsConfigured is the report's part of the catalogue.
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
