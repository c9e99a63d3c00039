package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/probe"
	"github.com/tfolab/tfolab/lab/proc"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"

	. "github.com/tfolab/tfolab/assertions"
)

// Server pools behind ECMP (issue 11): N servers share one service address
// on lo, the router spreads flows over them by 5-tuple, and every server
// has a TFO key of its own unless the fleet synchronises them. The client
// caches one cookie per destination address (tcp_metrics), so which server
// a connection lands on decides whether its cookie is the right one. These
// scenarios measure that (observation.Conn.Served), and their expectations
// derive each connection's outcome from its own landing, its own cookie
// and the keys the landing server held then (KeyPlan), never
// from a count a different hash would break.

func init() { register(Pools); registerMutants(poolMutants) }

const (
	// PoolConns is M, the connections that carry a cookie in a share
	// scenario, after the one that asks for it.
	PoolConns = 30
	// poolConnTimeout bounds one pool connection: an exchange takes well
	// under a millisecond; a refused cookie costs one more round trip.
	poolConnTimeout = 2 * time.Second
	// poolTimeout bounds a pool timeline (each is < 1 s of work).
	poolTimeout = 10 * time.Second
	// rotationPerStep is how many connections each client makes under each
	// key configuration of a rotation.
	rotationPerStep = 8
	// keySysctl is the namespace's TFO key.
	keySysctl = "net.ipv4.tcp_fastopen_key"
)

// poolKeys are the lab's keys. They are public: never use them outside it
// (`tfolab key` makes a fresh one).
var poolKeys = map[string]tfo.Key{
	"A":  mustKey("f810ff35-138056f4-7fad6a0f-89fb726f"),
	"B":  mustKey("1f1f8436-6388c88e-b7be6dbd-8436b666"),
	"K":  mustKey("b669456a-62ba85b4-b1188704-86fbec01"),
	"S1": mustKey("fee67c23-e4456348-9f16fa88-0f249300"),
	"S2": mustKey("e65d0bd8-2f668844-7970aa48-ea5c55fc"),
	"S3": mustKey("d83a11c2-93b7f3bb-86183884-e44ad121"),
	"S4": mustKey("77b255e2-1b1ab9ea-04a26f58-e7ed9cd3"),
	"X":  mustKey("7674871b-c7f70d05-d3796da7-e7b47034"),
}

// mustKey parses a key of the table above; a typo there is caught by
// TestPoolKeys, and yields the zero key rather than a panic.
func mustKey(s string) tfo.Key {
	k, err := tfo.ParseKey(s)
	if err != nil {
		return tfo.Key{}
	}
	return k
}

// Pools is the pool catalogue.
func Pools() []Scenario {
	var out []Scenario
	for _, fam := range []topology.Family{topology.IPv4, topology.IPv6} {
		for n := 2; n <= 4; n++ {
			out = append(out, PoolUnsyncKeys(n, fam))
		}
		out = append(out, PoolSyncKeys(fam, false), PoolSyncKeys(fam, true), PoolNoCookie(fam))
	}
	out = append(out,
		PoolRotation(rotationRight), PoolRotation(rotationWrong),
		PoolRotation(rollingNoBackup), PoolRotation(rollingNewFirst), PoolRotation(rollingStaged),
		PoolOverflow(1, 1, 6), PoolOverflow(1, 2, 6), PoolOverflow(1, 4, 6), PoolOverflow(2, 2, 8),
		PoolNoCookieClientOnly(), PoolNoCookieServerOnly(),
		PoolProbe(topology.IPv4, probeTFO), PoolProbe(topology.IPv6, probeTFO),
		PoolProbe(topology.IPv4, probeServerOff), PoolProbe(topology.IPv4, probeStripped),
	)
	return out
}

// poolServers names the servers of topology.Pool(n).
func poolServers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("server%d", i+1)
	}
	return out
}

// poolSpec is topology.Pool(n) with clients client, client2, ... on the
// router.
func poolSpec(n, clients int) topology.Spec {
	s := topology.Pool(n)
	for i := 2; i <= clients; i++ {
		name := fmt.Sprintf("client%d", i)
		s.Nodes = append(s.Nodes, topology.Node{Name: name})
		s.Links = append(s.Links, topology.Link{A: name, B: topology.Router})
	}
	if clients > 1 {
		s.Name = fmt.Sprintf("%s-%dclients", s.Name, clients)
	}
	return s
}

func poolClients(n int, mode tfo.Mode) []Client {
	var out []Client
	for i := 1; i <= n; i++ {
		name := topology.Client
		if i > 1 {
			name = fmt.Sprintf("client%d", i)
		}
		out = append(out, Client{Name: name, Node: name, Kind: LabClient{Mode: mode}, ConnTimeout: poolConnTimeout})
	}
	return out
}

// poolScenario is the frame: Pool(n), one listener per server at the
// shared address (the first is the main service), TFO client and server
// sysctls, and each server's key from the plan (by sysctl unless the
// listeners carry keys of their own).
func poolScenario(name, desc string, n int, fam topology.Family, plan *KeyPlan, labels ...string) Scenario {
	s := Scenario{
		Name:        name,
		Description: desc,
		Labels:      append([]string{"pool", strings.ToLower(fam.String())}, labels...),
		Topology:    poolSpec(n, 1),
		Family:      fam,
		Sysctls:     map[string]map[string]string{topology.Client: {"net.ipv4.tcp_fastopen": tfoClient}},
		Clients:     poolClients(1, tfo.ModeSendto),
		Timeout:     poolTimeout,
	}
	for _, srv := range poolServers(n) {
		s.Sysctls[srv] = map[string]string{"net.ipv4.tcp_fastopen": tfoServer}
		if plan != nil {
			if list, ok := plan.Start[srv]; ok {
				s.Sysctls[srv][keySysctl] = planSysctl(*plan, list)
			}
		}
		s.Services = append(s.Services, Service{Name: srv, Node: srv, Kind: Listener{Queue: serverQueue}})
	}
	return s
}

func famName(fam topology.Family) string { return strings.ToLower(fam.String()) }

// learned is connection 0 of a pool timeline: it asks for a cookie, and
// whichever server it lands on hands one out.
func learned() types.GomegaMatcher {
	return Conn(0, Dialogue(AtClient,
		ClientSYN().WithCookieRequest().WithoutPayload(),
		ServerSYNACK().WithCookie().AckingSYNOnly()),
		Responded())
}

// acceptedInSYN is a connection whose cookie the server it landed on took.
func acceptedInSYN() []ConnCheck {
	return []ConnCheck{
		Dialogue(AtServer,
			ClientSYN().WithCookie().WithPayload(payloadLen),
			ServerSYNACK().AckingSYNData()),
		SynDataAcked(true),
		PoolServerAccepted(true),
		Responded(),
	}
}

// refusedWithNewCookie is a connection whose cookie the server refused:
// the SYN-ACK acks only the SYN and hands out the server's own cookie; the
// client sends its data after the handshake and is served all the same.
func refusedWithNewCookie() []ConnCheck {
	return append(dataAfterHandshake(ClientSYN().WithCookie(), ServerSYNACK().WithCookie()), Responded())
}

// dataAfterHandshake is a connection whose SYN (syn, with the request) the
// server it landed on answered with synack, acking only the SYN: the data
// was not accepted, and the client sends it after the handshake.
func dataAfterHandshake(syn, synack Step) []ConnCheck {
	return []ConnCheck{
		Dialogue(AtServer,
			syn.WithPayload(payloadLen),
			synack.AckingSYNOnly(),
			ClientData().WithPayload(payloadLen)),
		SynDataAcked(false),
		ClientFail(tfo.ClientFailDataNotAcked),
		PoolServerAccepted(false),
	}
}

// modelChecks are the expectations every keyed pool scenario shares: the
// per-connection model, the cookies, the client's cache and the counters.
func modelChecks(plan KeyPlan) []types.GomegaMatcher {
	return []types.GomegaMatcher{
		PoolOutcomes(plan.Schedule()),
		CookiesIssued(plan.Schedule()),
		CookieCachePerDestination(),
		PoolCounters(plan.Schedule()),
	}
}

// PoolUnsyncKeys: every server has a key of its own, as each host does
// when nobody sets one (a namespace draws a random key on first use). A
// client caches one cookie per destination address, and all servers share
// that address, so a connection is accepted only if it lands on the server
// that issued the cached cookie; any other server counts PassiveFail,
// acks only the SYN, and hands out its own cookie, which replaces the
// cached one. The issuer is always the previous connection's server, so
// with a uniform spread the share accepted is about 1/N.
func PoolUnsyncKeys(n int, fam topology.Family) Scenario {
	servers := poolServers(n)
	plan := poolPlan(servers, func(s string) string { return "S" + strings.TrimPrefix(s, "server") })
	s := poolScenario(fmt.Sprintf("pool/unsync-keys/n%d/%s", n, famName(fam)),
		fmt.Sprintf("%d servers, each with its own key: a cookie is accepted only by the server that issued it", n),
		n, fam, &plan, "keys")
	s.Script(PoolSequential(1 + PoolConns))
	s.Expect = append([]types.GomegaMatcher{
		learned(),
		LandedOn(2),
		AcceptedIffIssuer(),
	}, modelChecks(plan)...)
	s.Diagnosis = diagnosed(diagnose.CookieRejected)
	return s
}

// PoolSyncKeys: every server holds the same key, by sysctl or on its
// listener (TCP_FASTOPEN_KEY, which beats the namespace key: the servers'
// sysctl keys are left different to show it). The cookie depends only on
// the key and the two addresses, so every server issues and accepts the
// same cookie: every connection after the first carries its data in the
// SYN and is accepted wherever it lands.
func PoolSyncKeys(fam topology.Family, listenerKey bool) Scenario {
	const n = 3
	servers := poolServers(n)
	plan := poolPlan(servers, func(string) string { return "K" })
	how := "sysctl"
	if listenerKey {
		how = "listener"
	}
	s := poolScenario(fmt.Sprintf("pool/sync-keys/%s/n%d/%s", how, n, famName(fam)),
		fmt.Sprintf("%d servers with one key (%s): every connection after the first is accepted, whichever server it lands on", n, how),
		n, fam, &plan, "keys")
	if listenerKey {
		key := poolKeys["K"]
		for i, srv := range servers {
			s.Sysctls[srv][keySysctl] = planSysctl(plan, fmt.Sprintf("S%d", i+1))
			s.Services[i].Kind = Listener{Queue: serverQueue, Key: &key}
		}
	}
	s.Script(PoolSequential(1 + PoolConns))
	s.Expect = append([]types.GomegaMatcher{
		learned(),
		ConnsFrom(1, acceptedInSYN()...),
		LandedOn(2),
		PoolCounterTotal(servers, lab.TCPFastOpenPassiveFail, 0),
		CountersOf(topology.Client, HaveCounterDeltas(
			Delta(lab.TCPFastOpenActive, PoolConns),
			Delta(lab.TCPFastOpenActiveFail, 0))),
	}, modelChecks(plan)...)
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	return s
}

// PoolRotation: a key rotation from A to B on a pool of 3, with the
// connections each client makes under each configuration.
//
//   - right: A → "B,A" on every server → "B". A cookie made with A is
//     accepted during the overlap (PassiveAltKey +1, and the SYN-ACK hands
//     out B's cookie), so the client holds B's cookie before A goes: no
//     PassiveFail, nothing lost.
//   - wrong: A → B at once. Each client's first connection afterwards is
//     refused (PassiveFail +1, data after the handshake) and gets B's
//     cookie; the rest are accepted. Two clients: one failure each.
//   - rolling-no-backup: servers switch to B one by one; while the pool is
//     mixed it behaves like unsynchronised keys.
//   - rolling-new-primary-first: servers go to "B,A" one by one; an updated
//     server hands out B's cookie, which servers still on A refuse.
//   - rolling-staged: "A,B" one by one (every server accepts B before any
//     issues it), then "B,A" one by one, then "B" one by one: no refusal
//     at any step.
func PoolRotation(r rotation) Scenario {
	const n = 3
	servers := poolServers(n)
	plan := rotationPlan(r, servers)
	clients := 1
	if r == rotationWrong {
		clients = 2
	}
	s := poolScenario(fmt.Sprintf("pool/rotation/%s/n%d/ipv4", r, n), rotationDesc[r], n, topology.IPv4, &plan, "keys", "rotation")
	s.Topology = poolSpec(n, clients)
	s.Clients = poolClients(clients, tfo.ModeSendto)
	for _, c := range s.Clients[1:] {
		s.Sysctls[c.Node] = map[string]string{"net.ipv4.tcp_fastopen": tfoClient}
	}
	s.Script(KeyTimeline(plan))
	s.Expect = append([]types.GomegaMatcher{learned(), EveryConn(Responded())}, modelChecks(plan)...)
	switch r {
	case rotationRight:
		firstOverlap := 1 + rotationPerStep
		s.Expect = append(s.Expect,
			ConnsFrom(1, acceptedInSYN()...),
			Conn(firstOverlap, Dialogue(AtServer,
				ClientSYN().WithCookie().WithPayload(payloadLen),
				ServerSYNACK().WithCookie().AckingSYNData())),
			PoolCounterTotal(servers, lab.TCPFastOpenPassiveAltKey, 1),
			PoolCounterTotal(servers, lab.TCPFastOpenPassiveFail, 0),
			Counter(topology.Client, lab.TCPFastOpenActiveFail, 0))
	case rotationWrong:
		// learn: 0, 1; under A: 2 .. 2+2*perStep-1; then each client's
		// first connection under B, then the recovered ones.
		first := clients * (1 + rotationPerStep)
		for k := range clients {
			s.Expect = append(s.Expect, Conn(first+k, refusedWithNewCookie()...))
		}
		s.Expect = append(s.Expect,
			ConnsFrom(first+clients, acceptedInSYN()...),
			PoolCounterTotal(servers, lab.TCPFastOpenPassiveFail, int64(clients)),
			Counter(topology.Client, lab.TCPFastOpenActiveFail, 1),
			Counter("client2", lab.TCPFastOpenActiveFail, 1))
	case rollingStaged:
		s.Expect = append(s.Expect,
			ConnsFrom(1, acceptedInSYN()...),
			PoolCounterTotal(servers, lab.TCPFastOpenPassiveFail, 0))
	}
	// Whether a cookie is refused depends on where ECMP puts each
	// connection: the diagnosis follows the model's prediction for this
	// run's placement.
	sched := plan.Schedule()
	s.Diagnosis = Diagnosis{ClientSide: diagnose.CookieRejected, RefusalsFrom: sched}
	if r == rotationRight || r == rollingStaged {
		s.Diagnosis = diagnosed(diagnose.TFOWorks)
	}
	return s
}

var rotationDesc = map[rotation]string{
	rotationRight:   "key rotation A → \"B,A\" on every server → \"B\": one PassiveAltKey, no PassiveFail, the client picks up B's cookie",
	rotationWrong:   "key rotation A → B at once: one refused connection per client, then recovery",
	rollingNoBackup: "rolling rotation, servers switched to B one by one: a mixed pool refuses like unsynchronised keys",
	rollingNewFirst: "rolling rotation, \"B,A\" one server at a time: updated servers issue B's cookie, servers still on A refuse it",
	rollingStaged:   "rolling rotation in three stages (\"A,B\", then \"B,A\", then \"B\", each one server at a time): no refusal at any step",
}

// PoolSequential is the Sequential timeline of the first client, bounded
// as a whole by poolTimeout: connections take milliseconds.
func PoolSequential(conns int) Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		ctx, cancel := context.WithTimeout(ctx, poolTimeout)
		defer cancel()
		for i := range conns {
			label := "learn"
			if i > 0 {
				label = "cookie"
			}
			env.Dial(ctx, Dial{Label: label, Timeout: poolConnTimeout})
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	}, "PoolSequential", conns)
}

// Listen-queue overflow: the hold middlebox drops everything but SYNs from
// the clients to the service, so TFO children wait in SYN-RECV for a final
// ACK that never comes and stay counted against the listener's TFO queue;
// the release middlebox marks those segments so the hold lets them pass.
const (
	momentHold    = "hold handshakes"
	momentRelease = "release handshakes"
	// releaseMark is the packet mark bit the release sets (the TFO
	// middleboxes' CONNMARK uses middlebox.TFOMark, another bit).
	releaseMark = "0x3400"
	// burstBound bounds each burst connection: a fallen-back one waits for
	// the release and one data retransmission (RTO 200 ms and up).
	burstBound = 3 * time.Second
	// handledBound bounds the wait until the servers have handled every
	// burst SYN; drainBound the wait until no TFO child awaits its final
	// ACK (the clients' FIN retransmissions and the servers' SYN-ACK
	// retransmissions, at 1 s, deliver one).
	handledBound = 2 * time.Second
	drainBound   = 3 * time.Second
	pollEvery    = 2 * time.Millisecond
	afterBurst   = 3
)

// HoldHandshakes: see its Description.
var HoldHandshakes = middlebox.Middlebox{
	Name: "hold-handshakes",
	Description: "Drops every segment but the SYN from clients to the service port (FORWARD) unless it carries the release mark: " +
		"handshakes cannot complete, so TFO children wait in SYN-RECV and fill the listener's TFO queue.",
	Rules: func(f lab.Family, p middlebox.Params) ([]middlebox.Rule, error) {
		if p.ServicePort == 0 {
			return nil, errors.New("hold-handshakes: no service port")
		}
		return []middlebox.Rule{{Table: "filter", Chain: "FORWARD", Spec: []string{
			"-p", "tcp", "--dport", strconv.Itoa(int(p.ServicePort)), "!", "--syn",
			"-m", "mark", "!", "--mark", releaseMark + "/" + releaseMark, "-j", "DROP"}}}, nil
	},
}

// ReleaseHandshakes: see its Description.
var ReleaseHandshakes = middlebox.Middlebox{
	Name:        "release-handshakes",
	Description: "Marks client segments to the service port (mangle FORWARD) so that hold-handshakes lets them pass.",
	Rules: func(f lab.Family, p middlebox.Params) ([]middlebox.Rule, error) {
		if p.ServicePort == 0 {
			return nil, errors.New("release-handshakes: no service port")
		}
		return []middlebox.Rule{{Table: "mangle", Chain: "FORWARD", Spec: []string{
			"-p", "tcp", "--dport", strconv.Itoa(int(p.ServicePort)), "-j", "MARK", "--set-mark", releaseMark + "/" + releaseMark}}}, nil
	},
}

// PoolOverflow: a burst of TFO SYNs whose handshakes cannot complete meets
// listeners with a TFO queue of queue (TCP_FASTOPEN). Each server takes
// the first queue of them in the SYN; tcp_fastopen_queue_check counts
// every further one as TCPFastOpenListenOverflow and the SYN falls back to
// a regular handshake: the SYN-ACK acks only the SYN, with no TFO option.
// Once the hold is released the children get their final ACK, the queue
// drains, and TFO works again.
func PoolOverflow(n, queue, burst int) Scenario {
	servers := poolServers(n)
	plan := poolPlan(servers, func(string) string { return "K" })
	s := poolScenario(fmt.Sprintf("pool/overflow/n%d/q%d/ipv4", n, queue),
		fmt.Sprintf("%d TFO SYNs whose handshakes are held meet a TFO queue of %d on %d server(s): ListenOverflow counts the rest, which fall back; the queue drains", burst, queue, n),
		n, topology.IPv4, &plan, "overflow")
	for i := range s.Services {
		s.Services[i].Kind = Listener{Queue: queue}
	}
	s.Middleboxes = []MiddleboxSpec{{Box: HoldHandshakes, When: momentHold}, {Box: ReleaseHandshakes, When: momentRelease}}
	s.Script(OverflowTimeline(servers, burst))
	s.Timeout = burstBound + handledBound + drainBound + poolTimeout
	s.Expect = []types.GomegaMatcher{
		learned(),
		ListenOverflow("burst", queue),
		Labelled("after", acceptedInSYN()...),
		MiddleboxMatchedAtLeast(uint64(burst)),
	}
	// From the client alone a refused data SYN answered without option
	// 34 looks stripped; the server's capture shows it arrived with its
	// cookie and the server refused it (its TFO queue full).
	s.Diagnosis = Diagnosis{ClientSide: diagnose.OptionStripped, BothSides: diagnose.ServerNoTFO}
	return s
}

// OverflowTimeline: learn a cookie; hold; fire the burst at once; once the
// servers have handled every burst SYN (a child or an overflow each),
// release; wait for the burst to finish and the queues to drain; then a
// few connections that should fast-open again.
func OverflowTimeline(servers []string, burst int) Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		env.Dial(ctx, Dial{Label: "learn", Timeout: poolConnTimeout})
		handled := func() (int64, error) {
			return env.sumCounters(servers, lab.TCPFastOpenPassive, lab.TCPFastOpenListenOverflow)
		}
		base, err := handled()
		if err != nil {
			return err
		}
		if err := env.Moment(momentHold); err != nil {
			return err
		}
		var wg sync.WaitGroup
		for i := range burst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				env.Dial(ctx, Dial{Label: "burst", Round: i + 1, Timeout: burstBound})
			}()
		}
		ok, err := pollUntil(ctx, handledBound, func() (bool, error) {
			v, err := handled()
			return v-base >= int64(burst), err
		})
		if err == nil && !ok {
			env.Mark(fmt.Sprintf("servers had not handled all %d burst SYNs within %v", burst, handledBound), 0)
		}
		rerr := env.Moment(momentRelease)
		wg.Wait()
		if err := errors.Join(err, rerr); err != nil {
			return err
		}
		port := env.scen.Services[0].port()
		drained, err := pollUntil(ctx, drainBound, func() (bool, error) { return env.noChildAwaitsACK(servers, port) })
		if err != nil {
			return err
		}
		if drained {
			env.Mark("drained", 0)
		} else {
			env.Mark(fmt.Sprintf("TFO children still awaiting their final ACK after %v", drainBound), 0)
		}
		for range afterBurst {
			env.Dial(ctx, Dial{Label: "after", Timeout: poolConnTimeout})
		}
		return ctx.Err()
	}, "OverflowTimeline", servers, burst)
}

// pollUntil polls cond every pollEvery until it holds, bound passes or ctx
// ends; it reports whether cond held.
func pollUntil(ctx context.Context, bound time.Duration, cond func() (bool, error)) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		ok, err := cond()
		if ok || err != nil {
			return ok, err
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-t.C:
		}
	}
}

// noChildAwaitsACK reports whether no server has a socket on port in
// SYN-RECV or FIN-WAIT1, the states of a socket that may still hold a TFO
// request (FIN-WAIT1 if the application closed it before the final ACK
// came; tcp_rcv_state_process removes the request on the first ACK in
// either state): every TFO child got its final ACK, so the listener's TFO
// queue is empty again.
func (e *Env) noChildAwaitsACK(servers []string, port uint16) (bool, error) {
	for _, s := range servers {
		ns := e.site.Topo.Namespace(s)
		var socks []proc.Socket
		err := ns.Do(func() (err error) {
			socks, err = proc.TCPSockets(proc.StateMask(proc.StateSynRecv, proc.StateFinWait1))
			return err
		})
		if err != nil {
			return false, fmt.Errorf("socket table of %s: %w", s, err)
		}
		for _, sk := range socks {
			if sk.Local.Port() == port {
				return false, nil
			}
		}
	}
	return true, nil
}

// sumCounters adds up counters names over nodes, read now.
func (e *Env) sumCounters(nodes []string, names ...string) (int64, error) {
	var total int64
	for _, n := range nodes {
		c, err := e.site.Topo.Namespace(n).Counters()
		if err != nil {
			return 0, err
		}
		for _, name := range names {
			v, ok := c.Get(name)
			if !ok {
				return 0, fmt.Errorf("counter %s absent on %s", name, n)
			}
			total += v
		}
	}
	return total, nil
}

// PoolNoCookie: client 0x4 and servers 0x200: no cookie, so no key to
// synchronise; every SYN carries its data without option 34 and whichever
// server it lands on accepts it. RFC 7413 §5 says what that costs (docs/pools.md).
func PoolNoCookie(fam topology.Family) Scenario {
	s := noCookiePool("", fam, tfoClientNoCookie, tfoServerNoCookie,
		"client 0x5, servers 0x202: data in every SYN without a cookie, accepted by every server",
		Dialogue(AtServer,
			ClientSYN().WithoutFastOpen().WithPayload(payloadLen),
			ServerSYNACK().WithoutFastOpen().AckingSYNData()),
		SynDataAcked(true),
		PoolServerAccepted(true))
	s.Diagnosis = diagnosed(diagnose.TFOWorks)
	return s
}

// PoolNoCookieClientOnly: client 0x4 against servers that want a cookie
// (0x2): the client never asks for one, so no SYN's data is ever accepted;
// every connection falls back (ActiveFail +1) and no server counts
// anything.
func PoolNoCookieClientOnly() Scenario {
	s := noCookiePool("client-only", topology.IPv4, tfoClientNoCookie, tfoServer,
		"client 0x5 against servers 0x2: data without a cookie is never accepted, and no cookie is ever asked for",
		dataAfterHandshake(ClientSYN().WithoutFastOpen(), ServerSYNACK().WithoutFastOpen())...)
	s.Diagnosis = diagnosed(diagnose.CookieRejected)
	return s
}

// PoolNoCookieServerOnly: servers 0x200 against an ordinary client (0x1):
// the client asks for a cookie and the server, not needing one, creates a
// TFO child at once (Passive +1, TFO_CHILD set) but never hands one out,
// so the client keeps asking and never sends data in a SYN.
func PoolNoCookieServerOnly() Scenario {
	s := noCookiePool("server-only", topology.IPv4, tfoClient, tfoServerNoCookie,
		"client 0x1 against servers 0x202: every cookie request gets a TFO child but no cookie; no data ever rides in a SYN",
		Dialogue(AtServer,
			ClientSYN().WithCookieRequest().WithoutPayload(),
			ServerSYNACK().WithoutFastOpen().AckingSYNOnly()),
		SynDataAcked(false),
		ServerTFOChild(true))
	s.Expect = append(s.Expect, CookieCached(topology.Client, false))
	s.Diagnosis = diagnosed(diagnose.ServerNoTFO)
	s.KernelNeeds = []string{tfo.FeatureTFOChild}
	return s
}

// noCookiePool is a pool of 3 whose client and servers have the given
// net.ipv4.tcp_fastopen values, making PoolConns connections one after
// another, every one of which passes every and gets its response; the
// pool model judges outcomes and counters. variant names it beside
// pool/no-cookie.
func noCookiePool(variant string, fam topology.Family, client, server, desc string, every ...ConnCheck) Scenario {
	const n = 3
	name := fmt.Sprintf("pool/no-cookie/n%d/%s", n, famName(fam))
	if variant != "" {
		name = fmt.Sprintf("pool/no-cookie/%s/n%d/%s", variant, n, famName(fam))
	}
	s := poolScenario(name, desc, n, fam, nil, "nocookie")
	s.Sysctls[topology.Client]["net.ipv4.tcp_fastopen"] = client
	for _, srv := range poolServers(n) {
		s.Sysctls[srv]["net.ipv4.tcp_fastopen"] = server
	}
	s.Script(PoolSequential(PoolConns))
	s.Expect = []types.GomegaMatcher{
		EveryConn(append(every, Responded())...),
		LandedOn(2),
		PoolOutcomes(nil),
		PoolCounters(nil),
	}
	return s
}

// probeCase is what stands behind the pool's address for the probe.
type probeCase int

const (
	probeTFO       probeCase = iota // synchronised keys
	probeServerOff                  // servers with TFO off (sysctl 1)
	probeStripped                   // strip-tfo-option in the router
)

// PoolProbe: the server TFO probe (lab/probe) from the client's node
// against the pool's address. Against TFO servers it says yes, with the
// cookie every server of the synchronised pool hands out; against servers
// with TFO off it says no, and the captures show the cookie request
// reached a server; behind a router that strips option 34 it says no, and
// the captures show the option left the client but never reached a
// server. Either way the half-open connection is reset.
func PoolProbe(fam topology.Family, pc probeCase) Scenario {
	const n = 3
	servers := poolServers(n)
	plan := poolPlan(servers, func(string) string { return "K" })
	what := [...]string{"tfo", "server-tfo-off", "strip-tfo-option"}[pc]
	s := poolScenario(fmt.Sprintf("pool/probe/%s/n%d/%s", what, n, famName(fam)), "", n, fam, &plan, "probe")
	s.Script(ProbeTimeline())
	switch pc {
	case probeTFO:
		s.Description = "probe of a pool with one key: yes, with the cookie SipHash(key, client, service) every server issues"
		s.Expect = []types.GomegaMatcher{
			ProbeSaid(0, true, CauseOffered),
			ProbeCookie(0, poolKeys["K"]),
			ProbeReset(0),
			CookiesIssued(plan.Schedule()),
		}
	case probeServerOff:
		s.Description = "probe of a pool whose servers have TFO off: no, the SYN-ACK has no option 34"
		for _, srv := range servers {
			s.Sysctls[srv]["net.ipv4.tcp_fastopen"] = tfoClient
		}
		s.Expect = []types.GomegaMatcher{ProbeSaid(0, false, CauseServerOff), ProbeReset(0)}
	case probeStripped:
		s.Description = "probe through a router that strips option 34: no, the option never reached a server"
		s.Middleboxes = []MiddleboxSpec{{Box: middlebox.StripTFOOption}}
		s.Expect = []types.GomegaMatcher{ProbeSaid(0, false, CauseStrippedOnWay), ProbeReset(0), MiddleboxMatched(1)}
	}
	s.Diagnosis = diagnosed(diagnose.ServerNoTFO)
	if pc == probeTFO {
		s.Diagnosis = diagnosed(diagnose.TFOWorks)
	}
	return s
}

// ProbeTimeline probes the main service once.
func ProbeTimeline() Scripted {
	return scripted(func(ctx context.Context, env *Env) error {
		_, err := env.Probe(ctx, "")
		return err
	}, "ProbeTimeline")
}

// Probe runs the server TFO probe (lab/probe: a SYN with a cookie request
// from a raw socket, the SYN-ACK read, an RST) from the first client's
// node against service ("" is the main one) and records its result in
// the observation. The error is a local failure only; what the server or
// the path did is in the result.
func (e *Env) Probe(ctx context.Context, service string) (probe.Result, error) {
	return e.ProbeWith(ctx, service, probe.Options{})
}

// ProbeWith is Probe with the probe's options (the experimental form,
// retries, a timeout).
func (e *Env) ProbeWith(ctx context.Context, service string, opts probe.Options) (probe.Result, error) {
	target, _, err := e.target(service, 0)
	if err != nil {
		return probe.Result{}, err
	}
	r, err := probe.Probe(ctx, e.Client().Runner(), netip.Addr{}, target, opts)
	e.mu.Lock()
	e.Obs.Probes = append(e.Obs.Probes, r)
	e.mu.Unlock()
	if err != nil {
		return r, fmt.Errorf("probe %s: %w", target, err)
	}
	return r, nil
}

// WriteSysctl writes a sysctl in node's namespace in the middle of a
// timeline (a key rotation); the observation's recorded sysctls stay those
// after setup, so the timeline marks the moment.
func (e *Env) WriteSysctl(node, key, value string) error {
	ns := e.site.Topo.Namespace(node)
	if ns == nil {
		return fmt.Errorf("write %s on %s: no such node", key, node)
	}
	if err := ns.SetSysctl(key, value); err != nil {
		return fmt.Errorf("write %s on %s: %w", key, node, err)
	}
	return nil
}

// poolMutants break the pool scenarios the ways a fleet gets it wrong.
func poolMutants() []Mutant {
	oneOff := PoolSyncKeys(topology.IPv4, false)
	oneOff.Sysctls["server2"][keySysctl] = planSysctl(KeyPlan{Keys: poolKeys}, "X")
	oneListener := PoolSyncKeys(topology.IPv4, true)
	x := poolKeys["X"]
	oneListener.Services[2].Kind = Listener{Queue: serverQueue, Key: &x}
	shared := PoolUnsyncKeys(3, topology.IPv4)
	for _, srv := range poolServers(3) {
		shared.Sysctls[srv][keySysctl] = planSysctl(KeyPlan{Keys: poolKeys}, "K")
	}
	noOverlap := PoolRotation(rotationRight)
	applied := rotationPlan(rotationRight, poolServers(3))
	for n := range applied.Changes[0].Set {
		applied.Changes[0].Set[n] = "B"
	}
	noOverlap.Script(KeyTimeline(applied))
	bigQueue := PoolOverflow(1, 1, 6)
	bigQueue.Services[0].Kind = Listener{Queue: 64}
	serverNeedsCookie := PoolNoCookie(topology.IPv4)
	for _, srv := range poolServers(3) {
		serverNeedsCookie.Sysctls[srv]["net.ipv4.tcp_fastopen"] = tfoServer
	}
	wrongPort := PoolProbe(topology.IPv4, probeStripped)
	wrongPort.Middlebox().Port = ServicePort + 1
	return []Mutant{
		mutant("one pool server (server2) keeps a sysctl key of its own", oneOff, "every connection after the first", "cookies issued"),
		mutant("one pool listener (server3) carries a key of its own", oneListener, "every connection after the first", "cookies issued"),
		mutant("unsynchronised-keys pool whose servers all got the same key", shared, "accepted iff cached cookie's issuer", "pool outcomes", "cookies issued"),
		mutant("rotation without the overlap: A replaced by B at once", noOverlap, "every connection after the first", "pool outcomes", "pool PassiveFail", "pool PassiveAltKey"),
		mutant("overflow burst against a TFO queue of 64 instead of 1", bigQueue, "listen overflow"),
		mutant("no-cookie pool whose servers still want a cookie (0x2)", serverNeedsCookie, "every connection"),
		mutant("strip-tfo-option pointed at the wrong port during a probe", wrongPort, "probe 0"),
	}
}
