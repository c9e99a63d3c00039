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
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Labels      []string `yaml:"labels"`
	// Family is ipv4 (the default) or ipv6.
	Family string `yaml:"family"`
	// Topology is a built-in one: direct, routed (the default when Nodes
	// is empty) or "pool N".
	Topology string `yaml:"topology"`
	// Nodes and Links declare a topology of one's own instead.
	Nodes []Node     `yaml:"nodes"`
	Links [][]string `yaml:"links"`
	// Sysctls are set per node, before any service starts.
	Sysctls map[string]map[string]string `yaml:"sysctls"`
	// SysctlFiles are sysctl.d files per node (paths relative to the
	// scenario file), read as systemd-sysctl reads them; Sysctls win.
	SysctlFiles map[string][]string `yaml:"sysctl-files"`
	Services    []Service           `yaml:"services"`
	Clients     []Client            `yaml:"clients"`
	Middleboxes []Middlebox         `yaml:"middleboxes"`
	// Timeline is a list of steps; empty is the sequential timeline
	// (each client makes its count of connections in order).
	Timeline []Step `yaml:"timeline"`
	// Expect are the claims; empty is the lab's own verdict (the
	// diagnosis of the client's capture must say TFO works).
	Expect []Expectation `yaml:"expect"`
}

// Node is one node of a topology of one's own.
type Node struct {
	Name   string `yaml:"name"`
	Router bool   `yaml:"router"`
	// Loopback are service addresses on lo (a pool's shared address).
	Loopback []string `yaml:"loopback"`
	Routes   []Route  `yaml:"routes"`
	// Sysctls are set before the node's links exist (an ECMP router's
	// hash policy).
	Sysctls map[string]string `yaml:"sysctls"`
}

// Route sends Dst via neighbours; several are an ECMP route.
type Route struct {
	Dst string   `yaml:"dst"`
	Via []string `yaml:"via"`
}

// Service is a server: kind listener, nginx, haproxy or scripted.
type Service struct {
	Name string `yaml:"name"`
	Node string `yaml:"node"`
	Addr string `yaml:"addr"`
	Port uint16 `yaml:"port"`
	Kind string `yaml:"kind"`
	// listener, nginx (fastopen), haproxy (tfo): the TFO queue.
	Queue *int `yaml:"queue"`
	// listener: its own TCP_FASTOPEN_KEY and its reply (default: echo).
	Key   string `yaml:"key"`
	Reply string `yaml:"reply"`
	// nginx, haproxy: the user's configuration file.
	Config string `yaml:"config"`
	// haproxy without config: tfo on the bind line (default true), or a
	// proxy to a lab service with `server ... tfo`.
	TFO     *bool    `yaml:"tfo"`
	Backend *Backend `yaml:"backend"`
	// scripted: what it puts in its SYN-ACK, and the cookie it grants.
	Greeting string `yaml:"greeting"`
	Cookie   string `yaml:"cookie"`
}

// Backend is where a built-in HAProxy proxy forwards.
type Backend struct {
	Node string `yaml:"node"`
	Port uint16 `yaml:"port"`
}

// Client is a client: kind lab (mode sendto, connect or plain), curl or
// python.
type Client struct {
	Name    string        `yaml:"name"`
	Node    string        `yaml:"node"`
	Kind    string        `yaml:"kind"`
	Mode    string        `yaml:"mode"`
	Plain   bool          `yaml:"plain"`
	Script  string        `yaml:"script"`
	Service string        `yaml:"service"`
	Count   int           `yaml:"count"`
	Payload string        `yaml:"payload"`
	Timeout time.Duration `yaml:"timeout"`
}

// Middlebox is a behaviour of the catalogue by name, or the user's own
// iptables-save or nft ruleset, placed on a node at a moment.
type Middlebox struct {
	Behaviour string `yaml:"behaviour"`
	Iptables  string `yaml:"iptables"`
	Nft       string `yaml:"nft"`
	// Delay is a one-way delay per packet (an NFQUEUE reader).
	Delay     time.Duration `yaml:"delay"`
	Placement string        `yaml:"placement"`
	Node      string        `yaml:"node"`
	Port      uint16        `yaml:"port"`
	// At is the moment it is installed at: start (the default), "after N
	// connections" of the sequential timeline, or a moment a timeline
	// step names.
	At string `yaml:"at"`
}

// Step is one step of a timeline: exactly one of Connect, Moment, Wait,
// Sysctl or Rounds.
type Step struct {
	// Connect makes this many connections from Client (default the
	// first), labelled Label, each bounded by Timeout.
	Connect     int           `yaml:"connect"`
	Client      string        `yaml:"client"`
	Service     string        `yaml:"service"`
	Port        uint16        `yaml:"port"`
	Label       string        `yaml:"label"`
	Plain       bool          `yaml:"plain"`
	Abort       bool          `yaml:"abort"`
	UserTimeout time.Duration `yaml:"user-timeout"`
	Payload     string        `yaml:"payload"`
	Timeout     time.Duration `yaml:"timeout"`
	// Moment names a moment: the middleboxes waiting for it go in.
	Moment string `yaml:"moment"`
	// Wait sleeps.
	Wait time.Duration `yaml:"wait"`
	// Sysctl writes node's key (a key rotation mid-timeline).
	Sysctl *SysctlWrite `yaml:"sysctl"`
	// Rounds repeats Steps, numbering the connections' rounds 1..n.
	Rounds int    `yaml:"rounds"`
	Steps  []Step `yaml:"steps"`
}

// SysctlWrite is a sysctl written during the timeline.
type SysctlWrite struct {
	Node  string `yaml:"node"`
	Key   string `yaml:"key"`
	Value string `yaml:"value"`
}

// Expectation is one claim: exactly one field set.
type Expectation struct {
	// TFOAccepted: the SYN's data was acknowledged by the server's
	// SYN-ACK on each listed connection (0-based, as the lab numbers
	// them); TFONotAccepted: it was not (the data came after the
	// handshake, or no data went in the SYN).
	TFOAccepted    []int `yaml:"tfo-accepted"`
	TFONotAccepted []int `yaml:"tfo-not-accepted"`
	// TFOAtLeast: at least this share of all connections had their SYN's
	// data acknowledged ("90%").
	TFOAtLeast string `yaml:"tfo-at-least"`
	// FallbackCostBelow: every connection's first response byte came
	// within this long of its start.
	FallbackCostBelow time.Duration `yaml:"fallback-cost-below"`
	// Counters: deltas on a node, exact ("3") or bounded (">=1", "<2").
	Counters *CounterClaim `yaml:"counters"`
	// CookieCached, NoCookieCached: the node's cookie cache holds (or
	// lacks) a cookie for the main service.
	CookieCached   string `yaml:"cookie-cached"`
	NoCookieCached string `yaml:"no-cookie-cached"`
	// NoStall: no connection stalled (hit its bound without a byte).
	NoStall bool `yaml:"no-stall"`
	// Completed: every connection completed with a response.
	Completed bool `yaml:"completed"`
	// Pause: the k-th blackhole detection paused active TFO that long.
	Pause *PauseClaim `yaml:"pause"`
	// Diagnosis: what `tfolab diagnose` says of the client's capture.
	Diagnosis string `yaml:"diagnosis"`
	// MiddleboxMatched, MiddleboxMatchedAtLeast: packets the middleboxes'
	// rules matched in all.
	MiddleboxMatched        *uint64 `yaml:"middlebox-matched"`
	MiddleboxMatchedAtLeast *uint64 `yaml:"middlebox-matched-at-least"`
}

// CounterClaim is counter deltas on one node.
type CounterClaim struct {
	Node string `yaml:"node"`
	// Nodes sums the deltas over several nodes (a pool's servers).
	Nodes []string `yaml:"nodes"`
	// Deltas maps a counter (TCPFastOpenPassive, TcpExt.TCPSynRetrans)
	// to "N", ">=N", "<=N", ">N" or "<N".
	Deltas map[string]string `yaml:"deltas"`
}

// PauseClaim is a blackhole pause: detection K (1-based round of the
// "detect" connections) paused active TFO for Lasted, measured by the
// "probe" connections to within Resolution.
type PauseClaim struct {
	Detection  int           `yaml:"detection"`
	Lasted     time.Duration `yaml:"lasted"`
	Resolution time.Duration `yaml:"resolution"`
}
