// Package labfile reads scenario files: a lab written in YAML (nodes and
// links or a built-in topology, sysctls, services with the user's own
// configurations, clients, middleboxes with the user's own rulesets, a
// timeline and expectations) and turns one into a scenarios.Scenario that
// the one harness runs like any catalogue entry. Decoding is strict: an
// unknown key, a wrong type, a node that does not exist or a missing file
// is one error naming file:line, found before any namespace exists.
//
// The format and its vocabulary of expectations are in docs/labfile.md.
package labfile

import "time"

// File is a scenario file as written.
type File struct {
	Name        string   `yaml:"name,omitempty"`
	Description string   `yaml:"description,omitempty"`
	Labels      []string `yaml:"labels,omitempty"`
	// Family is ipv4 (the default) or ipv6.
	Family string `yaml:"family,omitempty"`
	// Topology is a built-in one: direct, routed (the default when Nodes
	// is empty) or "pool N"; with Nodes, it names the topology of one's
	// own.
	Topology string `yaml:"topology,omitempty"`
	// Nodes and Links declare a topology of one's own instead.
	Nodes []Node     `yaml:"nodes,omitempty"`
	Links [][]string `yaml:"links,omitempty"`
	// Sysctls are set per node, before any service starts.
	Sysctls map[string]map[string]string `yaml:"sysctls,omitempty"`
	// SysctlFiles are sysctl.d files per node (paths relative to the
	// scenario file), read as systemd-sysctl reads them; Sysctls win.
	SysctlFiles map[string][]string `yaml:"sysctl-files,omitempty"`
	Services    []Service           `yaml:"services,omitempty"`
	Clients     []Client            `yaml:"clients,omitempty"`
	Middleboxes []Middlebox         `yaml:"middleboxes,omitempty"`
	// Timeline is a list of steps; empty is the sequential timeline
	// (each client makes its count of connections in order).
	Timeline []Step `yaml:"timeline,omitempty"`
	// Timeout bounds a timeline (default: its steps' own bounds).
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// KernelNeeds names kernel features beyond sysctls the claims need
	// (TCPI_OPT_TFO_CHILD): a kernel without one reports the lab "not
	// supported by this kernel".
	KernelNeeds []string `yaml:"kernel-needs,omitempty"`
	// Expect are the claims; empty is the lab's own verdict (the
	// diagnosis of the client's capture must say TFO works).
	Expect []Expectation `yaml:"expect,omitempty"`
}

// Node is one node of a topology of one's own.
type Node struct {
	Name   string `yaml:"name,omitempty"`
	Router bool   `yaml:"router,omitempty"`
	// Loopback are service addresses on lo (a pool's shared address).
	Loopback []string `yaml:"loopback,omitempty"`
	Routes   []Route  `yaml:"routes,omitempty"`
	// Sysctls are set before the node's links exist (an ECMP router's
	// hash policy).
	Sysctls map[string]string `yaml:"sysctls,omitempty"`
}

// Route sends Dst via neighbours; several are an ECMP route.
type Route struct {
	Dst string   `yaml:"dst,omitempty"`
	Via []string `yaml:"via,omitempty"`
	// FastOpenNoCookie sets the route's fastopen_no_cookie metric: TFO
	// without a cookie to and from Dst.
	FastOpenNoCookie bool `yaml:"fastopen-no-cookie,omitempty"`
}

// Service is a server: kind listener, nginx, haproxy, scripted,
// partial-ack or scripted-listener.
type Service struct {
	Name string `yaml:"name,omitempty"`
	Node string `yaml:"node,omitempty"`
	Addr string `yaml:"addr,omitempty"`
	Port uint16 `yaml:"port,omitempty"`
	Kind string `yaml:"kind,omitempty"`
	// listener, nginx (fastopen), haproxy (tfo): the TFO queue.
	Queue *int `yaml:"queue,omitempty"`
	// listener: TCP_FASTOPEN_NO_COOKIE on the listening socket.
	NoCookie bool `yaml:"no-cookie,omitempty"`
	// listener: its own TCP_FASTOPEN_KEY and its reply (default: echo
	// the request; "" replies nothing; reply-base64 for bytes that are
	// not text).
	Key         string  `yaml:"key,omitempty"`
	Reply       *string `yaml:"reply,omitempty"`
	ReplyBase64 string  `yaml:"reply-base64,omitempty"`
	// nginx, haproxy without config: the body served (default: the
	// lab's 3000 pseudo-random bytes).
	Body       string `yaml:"body,omitempty"`
	BodyBase64 string `yaml:"body-base64,omitempty"`
	// nginx, haproxy: the user's configuration file.
	Config string `yaml:"config,omitempty"`
	// haproxy without config: tfo on the bind line (default true), or a
	// proxy to a lab service with `server ... tfo`.
	TFO     *bool    `yaml:"tfo,omitempty"`
	Backend *Backend `yaml:"backend,omitempty"`
	// scripted: what it puts in its SYN-ACK, and the cookie it grants.
	Greeting string `yaml:"greeting,omitempty"`
	Cookie   string `yaml:"cookie,omitempty"`
	// partial-ack: a scripted peer that acknowledges only AckBytes of
	// the SYN's data, granting Cookie (of any length with
	// any-cookie-length).
	AckBytes        *int `yaml:"ack-bytes,omitempty"`
	AnyCookieLength bool `yaml:"any-cookie-length,omitempty"`
	// scripted-listener: the kernel's listener (queue: its TCP_FASTOPEN
	// queue, 0 for none) with no application; a catalogue timeline
	// (packetdrill's) makes the application's calls. max-seg sets
	// TCP_MAXSEG.
	MaxSeg int `yaml:"max-seg,omitempty"`
}

// Backend is where a built-in HAProxy proxy forwards.
type Backend struct {
	Node string `yaml:"node,omitempty"`
	Port uint16 `yaml:"port,omitempty"`
	// Resolver makes HAProxy resolve the backend by name through this
	// lab address (a self-check).
	Resolver string `yaml:"resolver,omitempty"`
}

// Client is a client: kind lab (mode sendto, connect or plain), curl or
// python.
type Client struct {
	Name string `yaml:"name,omitempty"`
	Node string `yaml:"node,omitempty"`
	Kind string `yaml:"kind,omitempty"`
	Mode string `yaml:"mode,omitempty"`
	// NoCookie sets TCP_FASTOPEN_NO_COOKIE on a lab client's socket.
	NoCookie bool          `yaml:"no-cookie,omitempty"`
	Plain    bool          `yaml:"plain,omitempty"`
	Script   string        `yaml:"script,omitempty"`
	Service  string        `yaml:"service,omitempty"`
	Count    int           `yaml:"count,omitempty"`
	Payload  string        `yaml:"payload,omitempty"`
	Timeout  time.Duration `yaml:"timeout,omitempty"`
}

// Middlebox is a behaviour of the catalogue by name (scenarios.BoxByName),
// the user's own iptables-save or nft ruleset, a delay, or a call of a
// middlebox constructor, placed on a node at a moment.
type Middlebox struct {
	Behaviour string `yaml:"behaviour,omitempty"`
	Iptables  string `yaml:"iptables,omitempty"`
	Nft       string `yaml:"nft,omitempty"`
	// Delay is a one-way delay per packet (an NFQUEUE reader).
	Delay time.Duration `yaml:"delay,omitempty"`
	// Call is a call of a middlebox constructor (labfile.Middleboxes):
	// {Custom: [[{Table: filter, Chain: FORWARD, Spec: [-p, tcp, ...]}]]}.
	Call      map[string]any `yaml:"call,omitempty"`
	Placement string         `yaml:"placement,omitempty"`
	Node      string         `yaml:"node,omitempty"`
	Port      uint16         `yaml:"port,omitempty"`
	// At is the moment it is installed at: start (the default), "after N
	// connections" of the sequential timeline, or a moment a timeline
	// step names.
	At string `yaml:"at,omitempty"`
}

// Step is one step of a timeline: exactly one of Connect, Moment, Wait,
// Call, Sysctl, Rounds or Repeat.
type Step struct {
	// Connect makes this many connections from Client (default the
	// first), labelled Label, each bounded by Timeout.
	Connect     int           `yaml:"connect,omitempty"`
	Client      string        `yaml:"client,omitempty"`
	Service     string        `yaml:"service,omitempty"`
	Port        uint16        `yaml:"port,omitempty"`
	Label       string        `yaml:"label,omitempty"`
	Plain       bool          `yaml:"plain,omitempty"`
	Abort       bool          `yaml:"abort,omitempty"`
	UserTimeout time.Duration `yaml:"user-timeout,omitempty"`
	Payload     string        `yaml:"payload,omitempty"`
	Timeout     time.Duration `yaml:"timeout,omitempty"`
	// Moment names a moment: the middleboxes waiting for it go in.
	Moment string `yaml:"moment,omitempty"`
	// Wait sleeps.
	Wait time.Duration `yaml:"wait,omitempty"`
	// Call runs a scripted timeline of the catalogue, a call of a
	// constructor of scenarios.Timelines: {PoolSequential: [6]}.
	Call map[string]any `yaml:"call,omitempty"`
	// Sysctl writes node's key (a key rotation mid-timeline).
	Sysctl *SysctlWrite `yaml:"sysctl,omitempty"`
	// UntilCounter ends each connection of a connect step as soon as
	// this counter of the client's node has risen (TCPFastOpenBlackhole:
	// stop a connection into a hole at its detection).
	UntilCounter string `yaml:"until-counter,omitempty"`
	// Rounds repeats Steps, numbering the connections' rounds 1..n;
	// Repeat repeats them within the current round.
	Rounds int    `yaml:"rounds,omitempty"`
	Repeat int    `yaml:"repeat,omitempty"`
	Steps  []Step `yaml:"steps,omitempty"`
}

// SysctlWrite is a sysctl written during the timeline.
type SysctlWrite struct {
	Node  string `yaml:"node,omitempty"`
	Key   string `yaml:"key,omitempty"`
	Value string `yaml:"value,omitempty"`
}

// Expectation is one claim: exactly one field set.
type Expectation struct {
	// Call is a call of an assertions constructor (call.go).
	Call map[string]any `yaml:"call,omitempty"`
	// TFOAccepted: the SYN's data was acknowledged by the server's
	// SYN-ACK on each listed connection (0-based, as the lab numbers
	// them); TFONotAccepted: it was not (the data came after the
	// handshake, or no data went in the SYN).
	TFOAccepted    []int `yaml:"tfo-accepted,omitempty"`
	TFONotAccepted []int `yaml:"tfo-not-accepted,omitempty"`
	// TFOAtLeast: at least this share of all connections had their SYN's
	// data acknowledged ("90%").
	TFOAtLeast string `yaml:"tfo-at-least,omitempty"`
	// FallbackCostBelow: every connection's first response byte came
	// within this long of its start.
	FallbackCostBelow time.Duration `yaml:"fallback-cost-below,omitempty"`
	// Counters: deltas on a node, exact ("3") or bounded (">=1", "<2").
	Counters *CounterClaim `yaml:"counters,omitempty"`
	// CookieCached, NoCookieCached: the node's cookie cache holds (or
	// lacks) a cookie for the main service.
	CookieCached   string `yaml:"cookie-cached,omitempty"`
	NoCookieCached string `yaml:"no-cookie-cached,omitempty"`
	// NoStall: no connection stalled (hit its bound without a byte).
	NoStall bool `yaml:"no-stall,omitempty"`
	// Completed: every connection completed with a response.
	Completed bool `yaml:"completed,omitempty"`
	// Pause: the k-th blackhole detection paused active TFO that long.
	Pause *PauseClaim `yaml:"pause,omitempty"`
	// Diagnosis: what `tfolab diagnose` says of the client's capture.
	Diagnosis string `yaml:"diagnosis,omitempty"`
	// MiddleboxMatched, MiddleboxMatchedAtLeast: packets the middleboxes'
	// rules matched in all.
	MiddleboxMatched        *uint64 `yaml:"middlebox-matched,omitempty"`
	MiddleboxMatchedAtLeast *uint64 `yaml:"middlebox-matched-at-least,omitempty"`
}

// CounterClaim is counter deltas on one node.
type CounterClaim struct {
	Node string `yaml:"node,omitempty"`
	// Nodes sums the deltas over several nodes (a pool's servers).
	Nodes []string `yaml:"nodes,omitempty"`
	// Deltas maps a counter (TCPFastOpenPassive, TcpExt.TCPSynRetrans)
	// to "N", ">=N", "<=N", ">N" or "<N".
	Deltas map[string]string `yaml:"deltas,omitempty"`
}

// PauseClaim is a blackhole pause: detection K (1-based round of the
// "detect" connections) paused active TFO for Lasted, measured by the
// "probe" connections to within Resolution.
type PauseClaim struct {
	Detection  int           `yaml:"detection,omitempty"`
	Lasted     time.Duration `yaml:"lasted,omitempty"`
	Resolution time.Duration `yaml:"resolution,omitempty"`
}
