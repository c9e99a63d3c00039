// Package rules is the lab's firewall rule mechanism: a Rule is one
// iptables/ip6tables rule (or a user-defined chain), Apply installs a list
// of them inside one lab namespace, one iptables-restore transaction per
// table, with their removal registered per table,
// Counters reads how many packets each one matched, and ParseRulesFile
// reads an iptables-save file. It knows nothing of TFO: the middlebox
// catalogue (named behaviours) and lab/rawpeer build on it.
package rules

import (
	"strings"

	"github.com/tfolab/tfolab/lab"
)

// Family is lab.Family: IPv4 (iptables) or IPv6 (ip6tables).
type Family = lab.Family

// Rule is one iptables rule: `-t Table -A Chain Spec...`. A Rule with a nil
// Spec declares a user-defined chain instead (`-t Table -N Chain`): Apply
// creates it, and teardown deletes it after the rules that use it.
type Rule struct {
	Table, Chain string
	Spec         []string
	// Line is the source line for rules read by ParseRulesFile, 0 otherwise.
	Line int
}

// IsChain reports whether r declares a user-defined chain.
func (r Rule) IsChain() bool { return r.Spec == nil }

// String is the iptables command line without the program name, quoted like
// a shell would need it: "-t filter -A FORWARD -p tcp ...".
func (r Rule) String() string {
	if r.IsChain() {
		return "-t " + r.Table + " -N " + shellQuote(r.Chain)
	}
	parts := []string{"-t", r.Table, "-A", shellQuote(r.Chain)}
	for _, s := range r.Spec {
		parts = append(parts, shellQuote(s))
	}
	return strings.Join(parts, " ")
}

// CommandLine is the full command a human would type: "iptables -t ..." or
// "ip6tables -t ...".
func CommandLine(f Family, r Rule) string {
	return Program(f) + " " + r.String()
}

// Program is the iptables binary for family f: iptables or ip6tables.
func Program(f Family) string {
	if f == lab.IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

func shellQuote(s string) string {
	if s == "" {
		return `""`
	}
	safe := true
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.,:/=+!@%^", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "`", "\\`")
	return `"` + r.Replace(s) + `"`
}
