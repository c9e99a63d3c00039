package diagnose

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Reproducer says how to see a diagnosis again in the lab: a catalogue
// scenario with the same behaviour, and for the verdicts a firewall
// causes, the lab middlebox's rules for the diagnosed port.
type Reproducer struct {
	Scenario string `json:"scenario"`
	// Command runs the scenario and keeps its captures.
	Command string `json:"command"`
	// Middlebox is the lab middlebox (middlebox.ByName) whose rules Rules
	// holds, for Family and Port.
	Middlebox string `json:"middlebox,omitempty"`
	Family    string `json:"family,omitempty"`
	Port      uint16 `json:"port,omitempty"`
	// Rules is an iptables-save (IPv4) or ip6tables-save (IPv6) ruleset
	// for a router in the path (FORWARD chains), as `tfolab firewall
	// --rules` (--rules6) reads it.
	Rules string `json:"rules,omitempty"`
	// RulesFile is where the command wrote Rules (--rules DIR).
	RulesFile string `json:"rules_file,omitempty"`
}

// Scenarios maps each case of a verdict to the catalogue scenario that
// shows it (`tfolab list`), for IPv4 and IPv6; an empty IPv6 entry means
// the catalogue has it for IPv4 only. A case is the verdict, or
// "verdict/variant" where the reason decides between scenarios.
var Scenarios = map[string][2]string{
	string(TFOWorks):                     {"baseline/routed/ipv4/sendto/cookie-then-data", "baseline/routed/ipv6/sendto/cookie-then-data"},
	"tfo-works/partial-ack":              {"packetdrill/client/syn-data-partial-ack/ipv4", "packetdrill/client/syn-data-partial-ack/ipv6"},
	string(ClientNoTFO):                  {"control/routed/ipv4/plain-vs-tfo", ""},
	string(ServerNoTFO):                  {"baseline/routed/ipv4/sendto/server-tfo-off", "baseline/routed/ipv6/sendto/server-tfo-off"},
	"server-no-tfo/part-of-pool":         {"pool/probe/server-tfo-off/n3/ipv4", ""},
	string(SynDataDropped):               {"middlebox/drop-syn-data/router/ipv4/sendto", "middlebox/drop-syn-data/router/ipv6/sendto"},
	"syn-data-dropped/reset":             {"middlebox/reset-syn-data/router/ipv4/sendto", "middlebox/reset-syn-data/router/ipv6/sendto"},
	"syn-data-dropped/option":            {"middlebox/drop-cookie-request/router/ipv4/sendto", "middlebox/drop-cookie-request/router/ipv6/sendto"},
	"syn-data-dropped/icmp":              {"middlebox/reject-syn-data/router/ipv4/sendto", "middlebox/reject-syn-data/router/ipv6/sendto"},
	string(OptionStripped):               {"middlebox/strip-tfo-option/router/ipv4/sendto", "middlebox/strip-tfo-option/router/ipv6/sendto"},
	string(SynackLost):                   {"middlebox/drop-tfo-synack/router/ipv4/sendto", "middlebox/drop-tfo-synack/router/ipv6/sendto"},
	string(DataBlackholed):               {"middlebox/blackhole-after-handshake/router/ipv4/sendto", "middlebox/blackhole-after-handshake/router/ipv6/sendto"},
	string(BlackholePaused):              {"blackhole/backoff-1x-2x-4x", ""},
	"blackhole-paused/dead-server":       {"blackhole/dead-server-with-cookie", ""},
	string(CookieRejected):               {"pool/unsync-keys/n3/ipv4", "pool/unsync-keys/n3/ipv6"},
	"cookie-rejected/rotation":           {"pool/rotation/wrong/n3/ipv4", ""},
	"server-no-tfo/overflow":             {"pool/overflow/n1/q1/ipv4", ""},
	"cookie-rejected/cookie-less-client": {"pool/no-cookie/client-only/n3/ipv4", ""},
}

// firewallOf names the lab middlebox behind each firewall case.
var firewallOf = map[string]string{
	string(SynDataDropped):    "drop-syn-data",
	"syn-data-dropped/reset":  "reset-syn-data",
	"syn-data-dropped/option": "drop-cookie-request",
	"syn-data-dropped/icmp":   "reject-syn-data",
	string(OptionStripped):    "strip-tfo-option",
	string(SynackLost):        "drop-tfo-synack",
	string(DataBlackholed):    "blackhole-after-handshake",
}

// FirewallMiddleboxes are the lab middleboxes whose rulesets diagnose
// hands over for the verdicts a firewall causes, sorted.
func FirewallMiddleboxes() []string {
	var out []string
	for _, mb := range firewallOf {
		if !slices.Contains(out, mb) {
			out = append(out, mb)
		}
	}
	slices.Sort(out)
	return out
}

// reproducer builds the Reproducer for a winning finding.
func reproducer(f finding, server netip.AddrPort) *Reproducer {
	if f.verdict == Inconclusive {
		return nil
	}
	key := string(f.verdict)
	if f.variant != "" {
		key += "/" + f.variant
	}
	names, ok := Scenarios[key]
	if !ok {
		return nil
	}
	v6 := server.Addr().Is6() && !server.Addr().Is4In6()
	name := names[0]
	if v6 && names[1] != "" {
		name = names[1]
	}
	r := &Reproducer{Scenario: name, Command: "tfolab run " + name + " --keep"}
	if mb, ok := firewallOf[key]; ok {
		r.Middlebox, r.Port, r.Family = mb, server.Port(), "ipv4"
		if v6 {
			r.Family = "ipv6"
		}
		r.Rules = RulesetText(mb, v6, server.Port())
	}
	return r
}

// xt_bpf programs the lab's middleboxes match "SYN (ACK clear) with TCP
// payload" with (middlebox.TCPPayloadProgram(f, SYN|ACK, SYN) assembled
// by middlebox.XTBPFBytecode), and "SYN clear, with TCP payload"
// (TCPPayloadProgram(f, SYN, 0)); the tests check they are still the same.
const (
	synDataBPF4 = "20,48 0 0 9,21 0 17 6,40 0 0 6,69 15 0 8191,177 0 0 0,80 0 0 13,84 0 0 18,21 0 11 2,80 0 0 12,84 0 0 240,116 0 0 2,2 0 0 0,135 0 0 0,97 0 0 0,12 0 0 0,7 0 0 0,40 0 0 2,45 0 1 0,6 0 0 1,6 0 0 0"
	synDataBPF6 = "13,48 0 0 6,21 0 10 6,48 0 0 53,84 0 0 18,21 0 7 2,48 0 0 52,84 0 0 240,116 0 0 2,7 0 0 0,40 0 0 4,45 0 1 0,6 0 0 1,6 0 0 0"
	dataBPF4    = "20,48 0 0 9,21 0 17 6,40 0 0 6,69 15 0 8191,177 0 0 0,80 0 0 13,84 0 0 2,21 0 11 0,80 0 0 12,84 0 0 240,116 0 0 2,2 0 0 0,135 0 0 0,97 0 0 0,12 0 0 0,7 0 0 0,40 0 0 2,45 0 1 0,6 0 0 1,6 0 0 0"
	dataBPF6    = "13,48 0 0 6,21 0 10 6,48 0 0 53,84 0 0 2,21 0 7 0,48 0 0 52,84 0 0 240,116 0 0 2,7 0 0 0,40 0 0 4,45 0 1 0,6 0 0 1,6 0 0 0"
	tfoMark     = "0x7413"
)

// ruleSpec is one iptables rule: -t table -A chain spec...
type ruleSpec struct {
	table, chain string
	spec         []string
}

// middleboxRules are the rules of a lab middlebox placed on a router
// (middlebox.Router), as middlebox/middlebox.go builds them.
func middleboxRules(name string, v6 bool, port uint16) []ruleSpec {
	p := strconv.Itoa(int(port))
	bpf, data := synDataBPF4, dataBPF4
	if v6 {
		bpf, data = synDataBPF6, dataBPF6
	}
	syn := []string{"-p", "tcp", "--syn", "--dport", p}
	with := func(parts ...string) []string { return append(append([]string(nil), syn...), parts...) }
	switch name {
	case "drop-syn-data":
		return []ruleSpec{{"filter", "FORWARD", with("-m", "bpf", "--bytecode", bpf, "-j", "DROP")}}
	case "reset-syn-data":
		return []ruleSpec{{"filter", "FORWARD", with("-m", "bpf", "--bytecode", bpf, "-j", "REJECT", "--reject-with", "tcp-reset")}}
	case "reject-syn-data":
		icmp := "icmp-admin-prohibited"
		if v6 {
			icmp = "icmp6-adm-prohibited"
		}
		return []ruleSpec{{"filter", "FORWARD", with("-m", "bpf", "--bytecode", bpf, "-j", "REJECT", "--reject-with", icmp)}}
	case "strip-tfo-option":
		return []ruleSpec{{"mangle", "FORWARD", with("-j", "TCPOPTSTRIP", "--strip-options", "34,254")}}
	case "drop-cookie-request":
		return []ruleSpec{
			{"filter", "FORWARD", with("--tcp-option", "34", "-j", "DROP")},
			{"filter", "FORWARD", with("--tcp-option", "254", "-j", "DROP")},
		}
	case "blackhole-after-handshake":
		mark := []string{"-j", "CONNMARK", "--set-mark", tfoMark}
		return []ruleSpec{
			{"mangle", "FORWARD", with(append([]string{"--tcp-option", "34"}, mark...)...)},
			{"mangle", "FORWARD", with(append([]string{"--tcp-option", "254"}, mark...)...)},
			{"mangle", "FORWARD", with(append([]string{"-m", "bpf", "--bytecode", bpf}, mark...)...)},
			{"filter", "FORWARD", []string{"-p", "tcp", "--dport", p, "-m", "connmark", "--mark", tfoMark, "-m", "bpf", "--bytecode", data, "-j", "DROP"}},
			{"filter", "FORWARD", []string{"-p", "tcp", "--sport", p, "-m", "connmark", "--mark", tfoMark, "-m", "bpf", "--bytecode", data, "-j", "DROP"}},
		}
	case "drop-tfo-synack":
		return []ruleSpec{
			{"mangle", "FORWARD", with("-m", "bpf", "--bytecode", bpf, "-j", "CONNMARK", "--set-mark", tfoMark)},
			{"filter", "FORWARD", []string{"-p", "tcp", "--sport", p, "--tcp-flags", "SYN,ACK", "SYN,ACK",
				"-m", "connmark", "--mark", tfoMark, "-j", "DROP"}},
		}
	}
	return nil
}

// builtinChains are the chains iptables-save lists for each table.
var builtinChains = map[string][]string{
	"filter": {"INPUT", "FORWARD", "OUTPUT"},
	"mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
}

// RulesetText is the named lab middlebox for a router guarding port, in
// iptables-save format (ip6tables-save for v6): one section per table,
// filter last, as iptables-save orders them. Empty for an unknown name.
func RulesetText(middlebox string, v6 bool, port uint16) string {
	rs := middleboxRules(middlebox, v6, port)
	if rs == nil {
		return ""
	}
	var b strings.Builder
	prog := "iptables"
	if v6 {
		prog = "ip6tables"
	}
	fmt.Fprintf(&b, "# The lab's %s middlebox on a router, guarding TCP port %d (%s-restore format).\n", middlebox, port, prog)
	for _, table := range []string{"mangle", "filter"} {
		var lines []string
		for _, r := range rs {
			if r.table == table {
				lines = append(lines, "-A "+r.chain+" "+joinArgs(r.spec))
			}
		}
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", table)
		for _, c := range builtinChains[table] {
			fmt.Fprintf(&b, ":%s ACCEPT [0:0]\n", c)
		}
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// joinArgs joins arguments as iptables-save does, double-quoting those
// with spaces.
func joinArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t\"'") {
			a = `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// RulesFileName is a file name for a server's ruleset: address and port,
// the verdict, and .rules (IPv4) or .rules6 (IPv6).
func RulesFileName(s ServerReport) string {
	name := strings.NewReplacer(":", "_", "[", "", "]", "", "/", "_").Replace(s.Server) + "-" + string(s.Verdict)
	if s.Reproduce != nil && s.Reproduce.Family == "ipv6" {
		return name + ".rules6"
	}
	return name + ".rules"
}
