package middlebox

import "fmt"

// Behaviours for the remaining blackhole paths: a TFO flow whose
// handshake passes but whose data after it goes missing in one direction.

// DropTFOClientData: see its Description.
var DropTFOClientData = Middlebox{
	Name: "drop-tfo-client-data",
	Description: "Marks (CONNMARK 0x7413) every flow whose SYN to the service port carries payload, lets the handshake " +
		"through, then drops every later client segment with payload on marked flows: the part of a TFO request that " +
		"did not fit in the SYN never arrives, and the client retransmits it into the hole.",
	Rules: builder(func(s spec) []Rule {
		return []Rule{markSynData(s),
			rule("filter", s.p.Placement.toServer(), "-p", "tcp", "--dport", s.port,
				"-m", "connmark", "--mark", fmt.Sprintf("0x%x", TFOMark), "-m", "bpf", "--bytecode", s.data, "-j", "DROP")}
	}),
}

// DropTFOServerDataAndFIN: see its Description.
var DropTFOServerDataAndFIN = Middlebox{
	Name: "drop-tfo-server-data-and-fin",
	Description: "Marks TFO flows (SYN with payload) and drops every later server segment that carries payload or FIN on " +
		"them: the client's request arrives in the SYN, the answer and the close never come back. Unlike " +
		"blackhole-after-handshake no lone FIN reaches the client, so the out-of-order-FIN check has nothing to see.",
	Rules: builder(func(s spec) []Rule {
		mark := fmt.Sprintf("0x%x", TFOMark)
		return []Rule{markSynData(s),
			rule("filter", s.p.Placement.back(), "-p", "tcp", "--sport", s.port,
				"-m", "connmark", "--mark", mark, "-m", "bpf", "--bytecode", s.data, "-j", "DROP"),
			rule("filter", s.p.Placement.back(), "-p", "tcp", "--sport", s.port, "--tcp-flags", "FIN", "FIN",
				"-m", "connmark", "--mark", mark, "-j", "DROP")}
	}),
}
