package middlebox

// Behaviours for the remaining blackhole paths: a TFO flow whose
// handshake passes but whose data after it goes missing in one direction.

// DropTFOClientData: see its Description.
var DropTFOClientData = builtin("drop-tfo-client-data",
	"Marks (CONNMARK 0x7413) every flow whose SYN to the service port carries payload, lets the handshake "+
		"through, then drops every later client segment with payload on marked flows: the part of a TFO request that "+
		"did not fit in the SYN never arrives, and the client retransmits it into the hole.",
	markSynData,
	"filter {TS} -p tcp --dport {PORT} -m connmark --mark {MARK} -m bpf --bytecode {DA} -j DROP")

// DropTFOServerDataAndFIN: see its Description.
var DropTFOServerDataAndFIN = builtin("drop-tfo-server-data-and-fin",
	"Marks TFO flows (SYN with payload) and drops every later server segment that carries payload or FIN on "+
		"them: the client's request arrives in the SYN, the answer and the close never come back. Unlike "+
		"blackhole-after-handshake no lone FIN reaches the client, so the out-of-order-FIN check has nothing to see.",
	markSynData,
	"filter {BK} -p tcp --sport {PORT} -m connmark --mark {MARK} -m bpf --bytecode {DA} -j DROP",
	"filter {BK} -p tcp --sport {PORT} --tcp-flags FIN FIN -m connmark --mark {MARK} -j DROP")
