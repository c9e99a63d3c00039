// Package diagnose gives each TCP server in one or two packet captures a
// TCP Fast Open (RFC 7413) verdict, from the captures alone: no lab, no
// root, no kernel state. It is what `tfolab diagnose` runs. It imports
// lab/capture (packet decoding, the TFO option) and nothing of the lab
// above it.
//
// # Model
//
// A capture is streamed once, packet by packet:
//
//	read.go      pcap / pcapng (by magic, optionally gzipped), link types
//	             Ethernet (with VLAN tags), Linux SLL and SLL2, raw IP (101,
//	             12, 14, 228, 229), BSD NULL / LOOP. A cheap look at the IP
//	             and TCP headers decides which packets get a full decode
//	             (lab/capture.Decode): SYNs, and the packets of connections
//	             still in their handshake; bulk data costs almost nothing.
//	conn.go      one connection, keyed by the 4-tuple and the client's ISN:
//	             its SYNs (option 34 or 254/0xF989, cookie, data; the IP
//	             total length gives the data length of a snaplen-cut SYN),
//	             SYN-ACKs (what they ack, what cookie they carry), RST, the
//	             handshake's last ACK. Nothing after the handshake matters
//	             to TFO, so a connection is finished when the client acks
//	             the SYN-ACK, on RST, after idleTimeout (75 s) without a
//	             packet, or at the end of the capture. It is then
//	             classified into one Kind, folded into its server's
//	             aggregate, and forgotten.
//	match.go     two captures of the same traffic (client side and server
//	             side): a pre-pass over their first connections tells which
//	             is which and how far apart their clocks are; then both are
//	             read merged in time, each connection paired with its other
//	             copy by client ISN and server port (by ISN alone, within
//	             3 s, when a NAT also rewrote the port). The pair shows what
//	             the path did: option stripped, SYN data dropped, SYN-ACK
//	             lost. Copies without a partner are judged on their own.
//	patterns.go  what only a sequence of connections shows, in packet
//	             order: the kernel's blackhole pause (the third timeout of a
//	             TFO SYN, then plain SYNs from a client that holds a cookie,
//	             then TFO again; pauses doubling), a pool whose servers do not
//	             share their key (one client's cookie accepted by some
//	             connections, refused and replaced by others), clients that
//	             stop offering a cookie they hold.
//	verdict.go   per server (the SYN's destination ADDR:PORT as the client
//	             saw it): counts per Kind, cost, evidence; one Verdict.
//	render.go    Markdown for people, JSON for tools, tcpdump-style lines
//	             (UTC, `tcpdump -n -S` format).
//	reproduce.go per verdict the catalogue scenario that shows the same
//	             behaviour, and for the firewall verdicts an iptables-save
//	             ruleset (the lab middlebox's own rules for the port).
//
// Memory is bounded by what is open at once, not by the file's size: the
// handshakes under way (a few hundred bytes each, finished after 75 s of
// silence), per server a fixed set of counters and at most 3 connections'
// evidence per Kind, per TFO-using client a small history (forgotten after
// 10 minutes of silence past 100000 clients), and in two-capture mode the
// finished copies waiting up to 105 s for their partner.
//
// Which end a capture was taken at matters (data in a SYN without option 34
// means "stripped" at the server, "cookie-less client" at the client). Each
// connection's side comes from the IP TTL / hop limit (the local host's
// packets carry an initial TTL of 32, 64, 128 or 255; the remote's arrive
// decremented) and, when that cannot tell, from the handshake's timing (at
// the client the SYN to SYN-ACK gap is the round trip, at the server the
// SYN-ACK to ACK gap is), and then from the rest of the file. With two
// captures the side is settled per file.
//
// # Verdict precedence
//
// When several findings apply to one server, the worst wins, in the order
// of Precedence: blackhole-paused, synack-lost, syn-data-dropped,
// option-stripped, cookie-rejected, server-no-tfo, then the non-problems
// tfo-works, client-no-tfo, inconclusive. Worst means widest damage: a
// blackhole pause turns TFO off for every destination of the client, for
// periods that double; a lost SYN-ACK stalls a connection for seconds; a
// dropped data SYN costs one SYN RTO per connection; a stripped option or a
// refused cookie costs one round trip; a server without TFO costs nothing
// but the saving. The findings below the winner are reported too (Also).
// A problem other than blackhole-paused counts only when it affects at
// least one TFO attempt in twenty (any, when there are at most twenty), so
// one random loss in a busy capture does not condemn a path: below that it
// is a note. Inconclusive is the verdict only when nothing else applies.
//
// Problems (exit 1 in the command) are every verdict but tfo-works,
// client-no-tfo and inconclusive; server-no-tfo is a configuration fact,
// and counts as a finding.
//
// # Cost
//
// A verdict's cost is the mean extra time per affected connection: for a
// fallback, the time from the first SYN to the SYN-ACK that was answered
// minus that handshake's round trip (that is, the SYN timeouts); for a
// stall, how long the client kept retransmitting; for a refused cookie or a
// stripped option, one round trip (the data goes after the handshake); for
// a blackhole, the detecting connections' stall.
package diagnose
