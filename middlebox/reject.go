package middlebox

import "github.com/tfolab/tfolab/lab"

// RejectSynData: see its Description.
var RejectSynData = builtin("reject-syn-data",
	"Like drop-syn-data, but answers a SYN with payload with an ICMP error instead of silently "+
		"dropping it: REJECT --reject-with icmp-admin-prohibited (IPv4, type 3 code 13) or icmp6-adm-prohibited "+
		"(IPv6, type 1 code 1), what firewalld's and most distributions' default reject rules send. In SYN-SENT the "+
		"kernel takes a destination-unreachable as a hard error (tcp_v4_err/tcp_v6_err): the connection ends at once "+
		"with EHOSTUNREACH (IPv4) or EACCES (IPv6), no fallback, no retransmission.",
	"filter {TS} -p tcp --syn --dport {PORT} -m bpf --bytecode {SD} -j REJECT --reject-with {RJ}")

// rejectWith is the ICMP error reject-syn-data answers with in family f.
func rejectWith(f lab.Family) string {
	if f == lab.IPv6 {
		return "icmp6-adm-prohibited"
	}
	return "icmp-admin-prohibited"
}
