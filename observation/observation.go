// Package observation is what one scenario run produced, as plain data:
// connections, per-node counter deltas and cookie caches, packets per
// captured link, middlebox rule hits and the timeline's marks. It is keyed
// by node and link name, writes versioned JSON (with the pcaps beside it)
// and reads back into an equal value, so the suite, `tfolab run` and a
// report judge the very same data, and a report can be judged again later.
//
// It sits above lab/ (whose types it holds) and below assertions/ (which
// are matchers over it); the scenario runner is its only writer.
package observation

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/probe"
	"github.com/tfolab/tfolab/lab/tcpmetrics"
	"github.com/tfolab/tfolab/lab/tfo"
	"golang.org/x/sys/unix"
)

// SchemaVersion is the version of the JSON form; a reader refuses others.
const SchemaVersion = 1

// Roles the blackhole timelines give their connections and marks. The
// timeline (scenarios/) records them and the pause check (assertions/)
// selects by them, so both name the same constants, never a format string.
const (
	// RoleDetect is a connection made to trip blackhole detection; its
	// Round is the detection's number (1, 2, ...).
	RoleDetect = "detect"
	// RoleProbe is a connection that samples whether active TFO is paused
	// after detection Round.
	RoleProbe = "probe"
	// MarkDetection is the mark of the moment detection Round was seen.
	MarkDetection = "detection"
)

// Observation is everything one scenario run produced.
type Observation struct {
	Schema   int        `json:"schema"`
	Scenario string     `json:"scenario"`
	Family   lab.Family `json:"family"`
	Host     Host       `json:"host"`
	// Started is when the timeline began; Elapsed is its wall time.
	Started time.Time     `json:"started"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Nodes are per-node sysctls, counter deltas and cookie caches.
	Nodes map[string]*Node `json:"nodes"`
	// Services are the servers the scenario ran, with what each accepted.
	Services []Service `json:"services"`
	// Conns are the client connections, in the order they were made.
	Conns []Conn `json:"connections"`
	// Links are the captures, keyed "<node>/<interface>".
	Links map[string]*Link `json:"links"`
	// Middleboxes are the firewalls installed, with per-rule hit counts:
	// evidence that the firewall, not something else, acted.
	Middleboxes []Middlebox `json:"middleboxes,omitempty"`
	// SynSchedule is the first client node's SYN retransmission schedule,
	// from its sysctls: what timing expectations derive their windows from.
	SynSchedule lab.SynSchedule `json:"syn_schedule"`
	// Marks are named moments of the timeline.
	Marks []Mark `json:"marks,omitempty"`
	// Probes are server TFO probes (lab/probe) the timeline made.
	Probes []probe.Result `json:"probes,omitempty"`
}

// Host says where the observation was made.
type Host struct {
	Kernel     string            `json:"kernel"`
	LabVersion string            `json:"lab_version,omitempty"`
	Tools      map[string]string `json:"tools,omitempty"`
}

// Node is one node's kernel state around the timeline.
type Node struct {
	// Sysctls are the node's effective TFO-related sysctls after setup.
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Counters are the deltas over the timeline (absent counters absent).
	Counters lab.Counters `json:"counters"`
	// Metrics are the tcp_metrics entries after the timeline (the cookie
	// cache of a client).
	Metrics []tcpmetrics.Entry `json:"tcp_metrics,omitempty"`
}

// Service is one server of the scenario.
type Service struct {
	Name     string         `json:"name"`
	Node     string         `json:"node"`
	Kind     string         `json:"kind"`
	Addr     netip.AddrPort `json:"addr"`
	Accepted []Accepted     `json:"accepted,omitempty"`
}

// Accepted is the server's record of one connection it served.
type Accepted struct {
	Remote  netip.AddrPort `json:"remote"`
	Request []byte         `json:"request,omitempty"`
	// SynData: the data in the client's SYN was accepted (passive TFO).
	SynData bool `json:"syn_data"`
	// Options is tcpi_options of the accepted socket, when the service
	// reads it (on 6.18 a passive TFO child has TCPI_OPT_TFO_CHILD, 0x80).
	Options uint8     `json:"tcpi_options,omitempty"`
	Time    time.Time `json:"time"`
	Error   string    `json:"error,omitempty"`
}

// Conn is one client connection.
type Conn struct {
	// Client is the scenario's client that made it, Node its node, Service
	// the service it was made to ("" for an address of no service).
	Client  string `json:"client"`
	Node    string `json:"node"`
	Service string `json:"service,omitempty"`
	// Label and Round are the connection's role in the timeline ("learn",
	// RoleDetect round 2, ...).
	Label    string         `json:"label,omitempty"`
	Round    int            `json:"round,omitempty"`
	Mode     string         `json:"mode"`
	Local    netip.AddrPort `json:"local"`
	Remote   netip.AddrPort `json:"remote"`
	Request  []byte         `json:"request,omitempty"`
	Response []byte         `json:"response,omitempty"`
	// SynData is tcpi_options & TCPI_OPT_SYN_DATA; ClientFail is
	// tcpi_fastopen_client_fail.
	SynData      bool           `json:"syn_data"`
	ClientFail   tfo.ClientFail `json:"client_fail"`
	TotalRetrans uint32         `json:"total_retrans"`
	RTT          time.Duration  `json:"rtt_ns"`
	// Start is taken just before the first syscall that sends; the rest
	// are measured from it.
	Start     time.Time     `json:"start"`
	Connected time.Duration `json:"connected_ns"`
	FirstByte time.Duration `json:"first_byte_ns"`
	Done      time.Duration `json:"done_ns"`
	// FailedAt is when the error came (a give-up's ETIMEDOUT).
	FailedAt time.Duration `json:"failed_ns,omitempty"`
	// Error is empty on success; Errno names the system error in it
	// ("ECONNREFUSED"), if any; Stalled is a bound reached without answer.
	Error   string `json:"error,omitempty"`
	Errno   string `json:"errno,omitempty"`
	Stalled bool   `json:"stalled,omitempty"`
	// ClientLink and ServerLink are the keys of the captures on the
	// client's side and on the serving node's side of this connection;
	// Served is the node whose capture saw its SYN (which server of a pool
	// it landed on), "" if none did.
	ClientLink string `json:"client_link,omitempty"`
	ServerLink string `json:"server_link,omitempty"`
	Served     string `json:"served,omitempty"`
	// Calls are the socket calls a scripted timeline made on this
	// connection, at either end, with what each returned (the API
	// contracts: errnos, poll events, tcp_info states).
	Calls []Call `json:"calls,omitempty"`
}

// Call is one socket call of a scripted connection and its result.
type Call struct {
	// Side is "client" or "server"; Op names the call uniquely within
	// the connection ("sendto 2", "read after reset").
	Side string `json:"side"`
	Op   string `json:"op"`
	// Ret is the return value (-1 on error, with Errno its name); Detail
	// is what else the call reported (poll's revents, a tcp_info state).
	Ret    int    `json:"ret"`
	Errno  string `json:"errno,omitempty"`
	Detail string `json:"detail,omitempty"`
	// At is when the call returned, from the connection's Start.
	At time.Duration `json:"at_ns"`
}

// Failed reports whether the connection ended in an error.
func (c Conn) Failed() bool { return c.Error != "" }

// FromResult converts a lab client's result into a Conn.
func FromResult(r tfo.Result) Conn {
	c := Conn{
		Label: r.Label, Mode: r.Mode.String(), Local: r.Local, Remote: r.Remote,
		Request: r.Request, Response: r.Response, SynData: r.SynData, ClientFail: r.ClientFail,
		TotalRetrans: r.TotalRetrans, RTT: r.RTT, Start: r.Start.Round(0),
		Connected: r.Connected, FirstByte: r.FirstByte, Done: r.Done, FailedAt: r.Failed, Stalled: r.Stalled,
	}
	if r.Err != nil {
		c.Error = r.Err.Error()
		c.Errno = ErrnoName(r.Err)
	}
	return c
}

// ErrnoName is the symbolic name of the system error inside err
// ("ECONNREFUSED"), or "".
func ErrnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return ""
}

// FromAccepted converts a lab server's record.
func FromAccepted(a tfo.Accepted) Accepted {
	out := Accepted{Remote: a.Remote, Request: a.Request, SynData: a.SynData, Options: a.Options, Time: a.Time.Round(0)}
	if a.Err != nil {
		out.Error = a.Err.Error()
	}
	return out
}

// Link is one capture.
type Link struct {
	Node      string `json:"node"`
	Interface string `json:"interface"`
	// Packets are the TCP segments captured, in order.
	Packets []capture.Packet `json:"-"`
	// Dropped counts frames the kernel dropped: evidence may be missing.
	Dropped uint64 `json:"dropped"`
	// Pcap is the pcap file's name beside the JSON, once written.
	Pcap string `json:"pcap,omitempty"`
}

// Middlebox is one installed firewall and its rules' hit counts.
type Middlebox struct {
	Name   string     `json:"name"`
	Node   string     `json:"node"`
	Family lab.Family `json:"family"`
	Rules  []RuleHits `json:"rules"`
}

// RuleHits is one firewall rule and the packets it matched.
type RuleHits struct {
	Rule string `json:"rule"`
	// Line is the rule's line in the user's file, 0 for built-in rules.
	Line    int    `json:"line,omitempty"`
	Packets uint64 `json:"packets"`
}

// Mark is a named moment of the timeline; Conns is how many connections
// had been made by then.
type Mark struct {
	Name  string    `json:"name"`
	Round int       `json:"round,omitempty"`
	At    time.Time `json:"at"`
	Conns int       `json:"conns"`
}

// New returns an empty observation of scenario.
func New(scenario string, f lab.Family) *Observation {
	return &Observation{
		Schema: SchemaVersion, Scenario: scenario, Family: f,
		Nodes: map[string]*Node{}, Links: map[string]*Link{},
	}
}

// LinkKey is the key of the capture on node's interface.
func LinkKey(node, ifname string) string { return node + "/" + ifname }

// Node returns the node's record, creating it.
func (o *Observation) Node(name string) *Node {
	if o.Nodes == nil {
		o.Nodes = map[string]*Node{}
	}
	n, ok := o.Nodes[name]
	if !ok {
		n = &Node{Counters: lab.Counters{}}
		o.Nodes[name] = n
	}
	return n
}

// Counters returns node's counter deltas (nil when the node is unknown).
func (o *Observation) Counters(node string) lab.Counters {
	if n, ok := o.Nodes[node]; ok {
		return n.Counters
	}
	return nil
}

// Metrics returns node's tcp_metrics entries.
func (o *Observation) Metrics(node string) []tcpmetrics.Entry {
	if n, ok := o.Nodes[node]; ok {
		return n.Metrics
	}
	return nil
}

// Service returns the service called name.
func (o *Observation) Service(name string) (Service, bool) {
	for _, s := range o.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// Packets returns the packets captured on link (a LinkKey).
func (o *Observation) Packets(link string) []capture.Packet {
	if l, ok := o.Links[link]; ok {
		return l.Packets
	}
	return nil
}

// Side is which end of a connection a packet check looks at.
type Side int

const (
	// ClientSide is the capture on the client node's interface: what the
	// client sent and what reached it.
	ClientSide Side = iota
	// ServerSide is the capture on the serving node's interface: what
	// reached the server, on the far side of whatever sits between.
	ServerSide
)

func (s Side) String() string {
	if s == ServerSide {
		return "server"
	}
	return "client"
}

// LinkOf is the capture key of connection i's side s ("" if none).
func (o *Observation) LinkOf(i int, s Side) string {
	if i < 0 || i >= len(o.Conns) {
		return ""
	}
	if s == ServerSide {
		return o.Conns[i].ServerLink
	}
	return o.Conns[i].ClientLink
}

// ConnPackets returns the packets of connection i captured on its side s:
// those between the connection's client address/port and its server
// address/port. The client may reuse a port for a later connection to the
// same server port (the server, closing first, holds the TIME-WAIT); such
// connections share the 4-tuple, so each gets only the packets from its
// own start to the next one's start.
func (o *Observation) ConnPackets(i int, s Side) []capture.Packet {
	link := o.LinkOf(i, s)
	if link == "" {
		return nil
	}
	c := o.Conns[i]
	var from, until time.Time // zero: unbounded
	for j, d := range o.Conns {
		if j == i || d.Local != c.Local || d.Remote != c.Remote {
			continue
		}
		switch {
		case d.Start.Before(c.Start):
			from = c.Start
		case d.Start.After(c.Start) && (until.IsZero() || d.Start.Before(until)):
			until = d.Start
		}
	}
	var out []capture.Packet
	for _, p := range o.Packets(link) {
		if (p.Src != c.Local || p.Dst != c.Remote) && (p.Src != c.Remote || p.Dst != c.Local) {
			continue
		}
		if (!from.IsZero() && p.Time.Before(from)) || (!until.IsZero() && !p.Time.Before(until)) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// ClientSYNs returns the SYNs the client sent for connection i, as its
// client-side capture saw them: the first, then its retransmissions.
func (o *Observation) ClientSYNs(i int) []capture.Packet {
	var out []capture.Packet
	for _, p := range o.ConnPackets(i, ClientSide) {
		if p.IsSYN() && p.Src == o.Conns[i].Local {
			out = append(out, p)
		}
	}
	return out
}

// Handshake returns connection i's first SYN and first SYN-ACK among
// pkts (its packets on one side, as ConnPackets gives them); nil where
// there is none.
func (o *Observation) Handshake(i int, pkts []capture.Packet) (syn, synack *capture.Packet) {
	local := o.Conns[i].Local
	for k := range pkts {
		p := &pkts[k]
		if syn == nil && p.IsSYN() && p.Src == local {
			syn = p
		}
		if synack == nil && p.IsSYNACK() && p.Dst == local {
			synack = p
		}
	}
	return syn, synack
}

// ConnsLabelled returns the indexes of the connections with label (and,
// when round > 0, that round), in order.
func (o *Observation) ConnsLabelled(label string, round int) []int {
	var out []int
	for i, c := range o.Conns {
		if c.Label == label && (round == 0 || c.Round == round) {
			out = append(out, i)
		}
	}
	return out
}

// MarkOf returns the first mark called name of round.
func (o *Observation) MarkOf(name string, round int) (Mark, bool) {
	for _, m := range o.Marks {
		if m.Name == name && m.Round == round {
			return m, true
		}
	}
	return Mark{}, false
}

// LinkNames returns the captured links' keys, sorted.
func (o *Observation) LinkNames() []string { return slices.Sorted(maps.Keys(o.Links)) }

// NodeNames returns the nodes that have records, sorted.
func (o *Observation) NodeNames() []string { return slices.Sorted(maps.Keys(o.Nodes)) }

// MiddleboxHits is the sum of every installed rule's hits.
func (o *Observation) MiddleboxHits() uint64 {
	var n uint64
	for _, m := range o.Middleboxes {
		for _, r := range m.Rules {
			n += r.Packets
		}
	}
	return n
}

// Drops returns the links that lost frames, with their counts.
func (o *Observation) Drops() map[string]uint64 {
	out := map[string]uint64{}
	for k, l := range o.Links {
		if l.Dropped > 0 {
			out[k] = l.Dropped
		}
	}
	return out
}

// ConnSummary is one line per connection: mode, SYN data, failure, timings.
func (o *Observation) ConnSummary() string {
	var b strings.Builder
	for i, c := range o.Conns {
		status := "ok"
		if c.Failed() {
			status = "error: " + c.Error
		}
		label := ""
		if c.Label != "" {
			label = " [" + c.Label
			if c.Round > 0 {
				label += fmt.Sprintf(" %d", c.Round)
			}
			label += "]"
		}
		fmt.Fprintf(&b, "  conn %d%s %s %s -> %s: syn_data=%t client_fail=%s connected=%sms first_byte=%sms retrans=%d %s\n",
			i, label, c.Mode, c.Local, c.Remote, c.SynData, c.ClientFail, millis(c.Connected), millis(c.FirstByte), c.TotalRetrans, status)
	}
	return b.String()
}

// CounterSummary renders the TFO counters of every node.
func (o *Observation) CounterSummary() string {
	var b strings.Builder
	for _, n := range o.NodeNames() {
		if len(o.Nodes[n].Counters) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s counters (delta):\n%s", n, o.Nodes[n].Counters.Table(lab.FastOpenCounters...))
	}
	return b.String()
}

// MarkSummary renders the timeline's marks.
func (o *Observation) MarkSummary() string {
	var b strings.Builder
	for _, m := range o.Marks {
		name := m.Name
		if m.Round > 0 {
			name = fmt.Sprintf("%s %d", m.Name, m.Round)
		}
		fmt.Fprintf(&b, "  mark %s %q after %d connections\n", m.At.Format("15:04:05.000000"), name, m.Conns)
	}
	return b.String()
}

// MiddleboxSummary renders the middleboxes' rules and their packet counts.
func (o *Observation) MiddleboxSummary() string {
	var b strings.Builder
	for _, m := range o.Middleboxes {
		fmt.Fprintf(&b, "middlebox %s on %s (packets matched):\n", m.Name, m.Node)
		for _, r := range m.Rules {
			line := ""
			if r.Line > 0 {
				line = fmt.Sprintf("line %d: ", r.Line)
			}
			fmt.Fprintf(&b, "  %6d  %s%s\n", r.Packets, line, r.Rule)
		}
	}
	return b.String()
}

// PacketSummary renders every captured packet, link by link, tcpdump style.
func (o *Observation) PacketSummary() string {
	var b strings.Builder
	for _, k := range o.LinkNames() {
		l := o.Links[k]
		fmt.Fprintf(&b, "packets on %s:\n", k)
		for _, p := range l.Packets {
			fmt.Fprintf(&b, "  %s\n", p)
		}
		if l.Dropped > 0 {
			fmt.Fprintf(&b, "  (%d frames dropped by the kernel: evidence may be missing)\n", l.Dropped)
		}
	}
	return b.String()
}

// MetricsSummary renders the tcp_metrics entries of every node that has any.
func (o *Observation) MetricsSummary() string {
	var b strings.Builder
	for _, n := range o.NodeNames() {
		if o.Nodes[n].Metrics == nil {
			continue
		}
		fmt.Fprintf(&b, "%s tcp_metrics:\n", n)
		if len(o.Nodes[n].Metrics) == 0 {
			b.WriteString("  (empty)\n")
		}
		for _, e := range o.Nodes[n].Metrics {
			fmt.Fprintf(&b, "  %s\n", e)
		}
	}
	return b.String()
}

// Short is what a person reads first: connections, marks, middlebox hits
// and the counters that moved.
func (o *Observation) Short() string {
	return fmt.Sprintf("scenario %s (timeline %sms)\n%s%s%s%s", o.Scenario, millis(o.Elapsed),
		o.ConnSummary(), o.MarkSummary(), o.MiddleboxSummary(), o.CounterSummary())
}

// String is the whole observation, as a failure file or report shows it.
func (o *Observation) String() string {
	return o.Short() + o.MetricsSummary() + o.PacketSummary()
}

// Ms is d in milliseconds to one decimal, counted in whole microseconds:
// "0.1 ms". The observation's own key=value summaries write the figure
// without the space ("first_byte=0.1ms").
func Ms(d time.Duration) string { return millis(d) + " ms" }

// millis is Ms's figure without its unit.
func millis(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }
