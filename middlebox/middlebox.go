// Package middlebox is tfolab's catalogue of TFO-hostile firewalls: named,
// documented behaviours expressed as iptables/ip6tables rule sets. Each
// behaviour is a package-level value (DropSynData, StripTFOOption, ...), so
// a scenario names it in code and a typo fails to compile; Catalogue and
// ByName are the registry a command line looks names up in.
//
// A Middlebox turns (family, Params) into []rules.Rule; lab/rules installs
// them inside one lab namespace (never the root namespace), registers the
// deletion of each, and reads how many packets each matched.
//
// Placement decides where the rules live:
//
//	Router     router ns, FORWARD chain (both directions; dport/sport tell them apart)
//	ClientSide client ns, OUTPUT for packets to the server, INPUT for packets back
//	ServerSide server ns, INPUT for packets to the server, OUTPUT for packets back
package middlebox

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/rules"
)

// Rule is one iptables rule; see lab/rules.
type Rule = rules.Rule

// Placement says which namespace and chains a middlebox's rules belong to.
type Placement int

const (
	// Router puts the rules in the router namespace's FORWARD chain.
	Router Placement = iota
	// ClientSide puts them in the client namespace: OUTPUT for packets to
	// the server, INPUT for packets coming back.
	ClientSide
	// ServerSide puts them in the server namespace: INPUT for packets to the
	// server, OUTPUT for packets going back.
	ServerSide
)

// placements are, for each Placement, its name, the node of the standard
// topologies whose namespace its rules belong in when a scenario does not
// name one, and the chains that see packets travelling to the server and
// back from it.
var placements = [...]struct{ name, node, toServer, back string }{
	Router:     {"router", "router", "FORWARD", "FORWARD"},
	ClientSide: {"client-side", "client", "OUTPUT", "INPUT"},
	ServerSide: {"server-side", "server", "INPUT", "OUTPUT"},
}

func (p Placement) known() bool { return p >= 0 && int(p) < len(placements) }

func (p Placement) String() string {
	if !p.known() {
		return fmt.Sprintf("Placement(%d)", int(p))
	}
	return placements[p].name
}

// DefaultNode is the node of the standard topologies whose namespace the
// rules belong in when a scenario does not name one.
func (p Placement) DefaultNode() string {
	if !p.known() {
		return placements[Router].node
	}
	return placements[p].node
}

// Params are the knobs every middlebox takes.
type Params struct {
	// ServicePort is the server's TCP port; only flows to it are touched.
	ServicePort uint16
	// Placement is where the rules go; the zero value is Router.
	Placement Placement
}

// Middlebox is a named, documented TFO-hostile behaviour.
type Middlebox struct {
	Name, Description string
	// Rules returns the rule set for family f (iptables for IPv4, ip6tables
	// for IPv6), in the order Apply must install it.
	Rules func(f lab.Family, p Params) ([]Rule, error)
	// Install, if set, replaces Rules for a middlebox that is not an
	// iptables rule list (an nft ruleset, a delay queue): it puts the
	// behaviour in place in ns, registers its teardown on l, and returns
	// what reads its hit counts back.
	Install func(l *lab.Lab, ns *lab.Namespace, f lab.Family, p Params) (Installed, error)
	// Check, with Install, validates (f, p) and the behaviour's own input
	// before any namespace exists, as building Rules does for the others.
	Check func(f lab.Family, p Params) error
	// Made is how a constructor with arguments built it (Custom's rules,
	// Delay's hold), for a scenario file to write it; nil for a
	// behaviour that goes by its name.
	Made *Made
}

// Made is a middlebox constructor's name and its arguments.
type Made struct {
	Fn   string
	Args []any
}

// Installed is a middlebox in place.
type Installed interface {
	// Hits returns each of its rules with the packets it matched so far.
	Hits() ([]Hit, error)
}

// Hit is one rule of an installed middlebox and the packets it matched.
type Hit struct {
	// Rule is the rule as a person would type it.
	Rule string
	// Line is its line in the user's file, 0 for built-in rules.
	Line    int
	Packets uint64
}

// Validate builds or checks the middlebox for (f, p) without installing it.
func (m Middlebox) Validate(f lab.Family, p Params) error {
	switch {
	case m.Install != nil && m.Check != nil:
		return m.Check(f, p)
	case m.Install != nil:
		return validate(f, p)
	case m.Rules == nil:
		return fmt.Errorf("middlebox %q has neither rules nor an installer", m.Name)
	}
	_, err := m.Rules(f, p)
	return err
}

// Apply installs the middlebox in ns: its Install, or its Rules with
// lab/rules.
func (m Middlebox) Apply(l *lab.Lab, ns *lab.Namespace, f lab.Family, p Params) (Installed, error) {
	if m.Install != nil {
		return m.Install(l, ns, f, p)
	}
	rs, err := m.Rules(f, p)
	if err != nil {
		return nil, err
	}
	if err := rules.Apply(l, ns, f, rs); err != nil {
		return nil, err
	}
	return installedRules{ns, f, rs}, nil
}

type installedRules struct {
	ns    *lab.Namespace
	f     lab.Family
	rules []Rule
}

func (r installedRules) Hits() ([]Hit, error) {
	counts, err := rules.Counters(r.ns, r.f, r.rules)
	if err != nil {
		return nil, err
	}
	var out []Hit
	for i, rule := range r.rules {
		if !rule.IsChain() {
			out = append(out, Hit{Rule: rules.CommandLine(r.f, rule), Line: rule.Line, Packets: counts[i]})
		}
	}
	return out, nil
}

// TFOMark is the conntrack mark (CONNMARK) that drop-tfo-synack and
// blackhole-after-handshake put on TFO flows.
const TFOMark = 0x7413

// TFO option kinds (RFC 7413 §4.1.1, and the experimental kind with magic
// 0xF989 that Linux still understands).
const (
	OptionTFO             = 34
	OptionTFOExperimental = 254
)

func validate(f lab.Family, p Params) error {
	if f != lab.IPv4 && f != lab.IPv6 {
		return fmt.Errorf("family %d: want 4 or 6", int(f))
	}
	if p.ServicePort == 0 {
		return fmt.Errorf("service port 0")
	}
	if !p.Placement.known() {
		return fmt.Errorf("unknown placement %d", int(p.Placement))
	}
	return nil
}

func rule(table, chain string, spec ...string) Rule {
	return Rule{Table: table, Chain: chain, Spec: spec}
}

// Rule templates: a rule as its table, its chain and the rest of its
// command line, separated by spaces; a word in braces stands for what
// builtin fills in:
//
//	{TS}, {BK}        the chain that sees packets to the server, and back (Placement)
//	{PORT}            the service port
//	{MARK}            TFOMark, as 0x7413
//	{SD}, {SA}, {DA}  the xt_bpf bytecodes that match a SYN (ACK clear) with
//	                  TCP payload, a SYN-ACK with payload, a segment with
//	                  payload and SYN clear, in the family's program
//	{RJ}              the ICMP error reject-syn-data answers with (rejectWith)
const (
	// markSynData marks (CONNMARK, mangle table) every flow whose SYN to
	// the service port carries payload.
	markSynData = "mangle {TS} -p tcp --syn --dport {PORT} -m bpf --bytecode {SD} -j CONNMARK --set-mark {MARK}"
	// markOption34 and markOption254 mark every flow whose SYN to the
	// service port carries the TFO option (or the experimental one).
	markOption34  = "mangle {TS} -p tcp --syn --dport {PORT} --tcp-option 34 -j CONNMARK --set-mark {MARK}"
	markOption254 = "mangle {TS} -p tcp --syn --dport {PORT} --tcp-option 254 -j CONNMARK --set-mark {MARK}"
)

// builtin is the behaviour whose rules are templates (see above), filled
// in for each (family, Params) once they are valid.
func builtin(name, description string, templates ...string) Middlebox {
	return Middlebox{Name: name, Description: description, Rules: func(f lab.Family, p Params) ([]Rule, error) {
		if err := validate(f, p); err != nil {
			return nil, err
		}
		fill := map[string]string{
			"{TS}":   placements[p.Placement].toServer,
			"{BK}":   placements[p.Placement].back,
			"{PORT}": strconv.Itoa(int(p.ServicePort)),
			"{MARK}": fmt.Sprintf("0x%x", TFOMark),
			"{RJ}":   rejectWith(f),
		}
		for _, b := range []struct {
			word       string
			mask, want uint8
		}{{"{SD}", flagSYN | flagACK, flagSYN}, {"{SA}", flagSYN | flagACK, flagSYN | flagACK}, {"{DA}", flagSYN, 0}} {
			code, err := XTBPFBytecode(TCPPayloadProgram(f, b.mask, b.want))
			if err != nil {
				return nil, fmt.Errorf("assemble xt_bpf program: %w", err)
			}
			fill[b.word] = code
		}
		rs := make([]Rule, len(templates))
		for i, t := range templates {
			words := strings.Fields(t)
			for j, w := range words {
				if v, ok := fill[w]; ok {
					words[j] = v
				}
			}
			rs[i] = rule(words[0], words[1], words[2:]...)
		}
		return rs, nil
	}}
}

// DropSynData: see its Description.
var DropSynData = builtin("drop-syn-data",
	"Drops SYNs (SYN set, ACK clear) to the service port that carry TCP payload, "+
		"matched exactly with an xt_bpf program (IPv4: total_len - IHL*4 - doff*4 > 0; IPv6: next header 6 and "+
		"payload_len - doff*4 > 0). Plain SYNs, cookie requests and retransmitted data-less SYNs pass: "+
		"the client pays one SYN RTO and falls back to a normal handshake.",
	"filter {TS} -p tcp --syn --dport {PORT} -m bpf --bytecode {SD} -j DROP")

// ResetSynData: see its Description.
var ResetSynData = builtin("reset-syn-data",
	"Like drop-syn-data, but answers a SYN with payload with a TCP RST "+
		"(REJECT --reject-with tcp-reset) instead of silently dropping it.",
	"filter {TS} -p tcp --syn --dport {PORT} -m bpf --bytecode {SD} -j REJECT --reject-with tcp-reset")

// StripTFOOption: see its Description.
var StripTFOOption = builtin("strip-tfo-option",
	"Removes TCP options 34 (TFO) and 254 (experimental TFO) from SYNs to the service port "+
		"(mangle TCPOPTSTRIP). The SYN's payload still reaches the server, but without a cookie the "+
		"server does not accept it in the SYN: the client's data is acked only after the handshake.",
	"mangle {TS} -p tcp --syn --dport {PORT} -j TCPOPTSTRIP --strip-options 34,254")

// DropCookieRequest: see its Description.
var DropCookieRequest = builtin("drop-cookie-request",
	"Drops every SYN to the service port that carries a TFO option at all (34 or 254): "+
		"cookie requests, cookies and SYN+data alike. The client's retransmitted SYN has no option "+
		"and passes.",
	"filter {TS} -p tcp --syn --dport {PORT} --tcp-option 34 -j DROP",
	"filter {TS} -p tcp --syn --dport {PORT} --tcp-option 254 -j DROP")

// DropTFOSynAck: see its Description.
var DropTFOSynAck = builtin("drop-tfo-synack",
	"Marks (CONNMARK 0x7413, mangle) every flow whose SYN to the service port carries payload, "+
		"then drops the SYN-ACKs of marked flows: a stateful tracker that rejects a SYN-ACK acknowledging "+
		"data it did not expect. The mark lives on the conntrack entry, so the client's plain retransmitted "+
		"SYNs (same 5-tuple) stay marked and the whole connection is blackholed until the entry expires "+
		"(nf_conntrack_tcp_timeout_syn_sent); cookie requests and plain SYNs are not marked and pass.",
	markSynData,
	"filter {BK} -p tcp --sport {PORT} --tcp-flags SYN,ACK SYN,ACK -m connmark --mark {MARK} -j DROP")

// BlackholeAfterHandshake: see its Description.
var BlackholeAfterHandshake = builtin("blackhole-after-handshake",
	"Marks TFO flows as drop-tfo-synack does (SYN with option 34, 254 or payload), lets their "+
		"handshake through (SYN, also with data, SYN-ACK, bare ACK), then drops every later packet of "+
		"those flows that carries TCP payload, in both directions. Bare ACKs, FINs and RSTs pass, which "+
		"is the pattern behind the kernel's out-of-order-FIN blackhole detection.",
	markOption34,
	markOption254,
	markSynData,
	"filter {TS} -p tcp --dport {PORT} -m connmark --mark {MARK} -m bpf --bytecode {DA} -j DROP",
	"filter {BK} -p tcp --sport {PORT} -m connmark --mark {MARK} -m bpf --bytecode {DA} -j DROP")

// DropTFOReplies: see its Description.
var DropTFOReplies = builtin("drop-tfo-replies",
	"Marks (CONNMARK 0x7413, mangle) every flow whose SYN to the service port carries payload and "+
		"drops every packet the server sends back on marked flows: SYN-ACKs and data alike. The SYN itself "+
		"passes (a drop before conntrack confirms the entry would lose the mark), so the server serves the "+
		"request, but the client hears nothing and its SYN times out again and again: the pure blackhole that "+
		"trips the kernel's detection at the 3rd SYN timeout, with no server data to re-arm it.",
	markSynData,
	"filter {BK} -p tcp --sport {PORT} -m connmark --mark {MARK} -j DROP")

// DropSynAckData: see its Description.
var DropSynAckData = builtin("drop-synack-data",
	"Drops SYN-ACKs from the service port that carry TCP payload (xt_bpf, exact as for "+
		"drop-syn-data). A Linux server never puts data in its SYN-ACK, but other stacks may: this is the "+
		"firewall that refuses them. Pair it with a responder that sends such SYN-ACKs (lab/rawpeer).",
	"filter {BK} -p tcp --sport {PORT} --tcp-flags SYN,ACK SYN,ACK -m bpf --bytecode {SA} -j DROP")

// catalogue is the registry, in a stable order.
var catalogue = []Middlebox{DropSynData, ResetSynData, RejectSynData, LowMTU, StripTFOOption, DropCookieRequest, DropTFOSynAck, BlackholeAfterHandshake, DropTFOReplies, DropSynAckData, DropTFOClientData, DropTFOServerDataAndFIN}

// Catalogue returns the built-in middleboxes in a stable order.
func Catalogue() []Middlebox {
	return append([]Middlebox(nil), catalogue...)
}

// ByName finds a built-in middlebox.
func ByName(name string) (Middlebox, bool) {
	for _, m := range catalogue {
		if m.Name == name {
			return m, true
		}
	}
	return Middlebox{}, false
}

// Custom wraps rules read by ParseRulesFile as a Middlebox named "custom".
// The rules are used as written: family and Params are ignored (the file
// names its own chains and ports), except that the family must be valid.
func Custom(rules []Rule) Middlebox {
	rs := append([]Rule(nil), rules...)
	return Middlebox{
		Name:        "custom",
		Description: fmt.Sprintf("%d rules from an iptables-save file", len(rs)),
		Rules: func(f lab.Family, _ Params) ([]Rule, error) {
			if f != lab.IPv4 && f != lab.IPv6 {
				return nil, fmt.Errorf("family %d: want 4 or 6", int(f))
			}
			return append([]Rule(nil), rs...), nil
		},
		Made: &Made{Fn: "Custom", Args: []any{append([]Rule(nil), rs...)}},
	}
}
