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
//	             total length gives the data length of a snaplen-cut SYN;
//	             a fingerprint of how the SYN was built), SYN-ACKs (what
//	             they ack, what cookie they carry), RST, the handshake's
//	             last ACK. The handshake is finished when the client acks
//	             the SYN-ACK, on RST, after idleTimeout (75 s) without a
//	             packet, or at the end of the capture. It is then
//	             classified into one Kind, folded into its server's
//	             aggregate, and forgotten.
//	post.go      a TFO connection (option or data in its first SYN) past
//	             its handshake, on a few counters read from the IP and TCP
//	             headers (no decode): the highest sequence each side sent
//	             and the other acked, retransmissions at the ack point,
//	             whether the server sent data or a FIN, when the client
//	             closed. A middlebox can let a TFO flow's handshake through
//	             and drop what follows; the client's kernel watches for
//	             that (see Blackholes). The connection is forgotten as soon
//	             as the client acks anything the server sent (the data
//	             flows: nothing more to learn), or on RST, both FINs,
//	             idleTimeout, or the end of the capture, and what went wrong
//	             is folded in as a Kind that refines the connection
//	             (server-data-lost, client-data-lost, no-answer) without
//	             adding to its server's totals.
//	match.go     two captures of the same traffic (client side and server
//	             side): a pre-pass over their first connections tells which
//	             is which and how far apart their clocks are; then both are
//	             read merged in time, each connection paired with its other
//	             copy by client ISN and server port (by ISN alone, within
//	             3 s, when a NAT also rewrote the port). The pair shows what
//	             the path did: option stripped, SYN data dropped, SYN-ACK
//	             lost, the option arriving intact. Copies without a partner
//	             are judged on their own. A client copy that got a SYN-ACK
//	             reached some server, so it is never "dropped"; and when the
//	             server side lacks half the client's connections or more
//	             (the pre-pass tells, or the end), it captured one server of a
//	             pool: a warning says so, and what it lacks is judged from
//	             the client side alone.
//	patterns.go  what only a sequence of connections shows, in packet
//	             order: the kernel's blackhole pause (a detection, then
//	             plain SYNs from a client that holds a cookie, then TFO
//	             again; pauses doubling), a pool whose servers do not share
//	             their key (one client's cookie accepted by some
//	             connections, refused and replaced by others), clients that
//	             stop offering a cookie they hold, and a client that asks
//	             again for a cookie it was given, with the same SYN.
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
// silence), the TFO connections past their handshake whose server's data
// has not reached the client yet (a few hundred bytes of counters, and for
// at most 32 of them per server the SYN and SYN-ACK to print), per server
// a fixed set of counters and at most 3 connections' evidence per Kind,
// per TFO-using client a small history (forgotten after
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
// # Blackholes
//
// Linux pauses active TFO for every destination when it suspects a
// middlebox blackhole (net/ipv4/tcp_fastopen.c; the pause lasts
// net.ipv4.tcp_fastopen_blackhole_timeout_sec, doubling with each new
// detection; 0, the default since Linux 5.14, turns detection off). It
// detects one on a TFO socket (one that sent a cookie request, a cookie or
// data in its SYN) at:
//
//   - the third timeout, during the handshake or after it
//     (tcp_fastopen_active_detect_blackhole): the fourth SYN of a
//     connection whose SYN-ACK never came, or the third retransmission of
//     the client's oldest unacked data after the handshake;
//   - an earlier timeout when the socket expires then (tcp_syn_retries,
//     TCP_USER_TIMEOUT). That leaves no mark on the wire of its own: it is
//     inferred when the client's next SYN to a destination it used TFO with
//     goes out plain while one of its TFO connections, unanswered, could
//     just have given up (before its next backed-off timeout). Nothing else
//     makes a new connection leave out a cookie while an old one is still
//     unanswered: the per-destination backoff after SYN losses needs a
//     SYN-ACK;
//   - the socket's destruction, when a FIN is alone in its out-of-order
//     queue and no data was received (tcp_fastopen_active_disable_ofo_check):
//     the server's FIN arrived after bytes that never did. Taken at the
//     client's FIN or RST.
//
// A detection followed by plain SYNs is blackhole-paused. A detection
// followed by a TFO SYN that still carries the cookie means detection is
// off on the client: the reason says so. The data lost after the handshake
// is data-blackholed in any case (below blackhole-paused when the kernel
// did pause): the server's data or FIN never acked by a client that showed
// it did not get it (it closed without acking it, or the server
// retransmitted it twice); the client's data retransmitted twice and never
// acked (client side); or the server, having acked the SYN's data, sending
// nothing at all while the client waited at least a second before closing
// (client side; only when some other TFO connection to that server did get
// data back, else it is a note: the application may just not answer).
//
// # Refusals, and who refused
//
// A data SYN whose SYN-ACK acks only the SYN is a refusal; the SYN-ACK's
// option and, with both captures, the SYN as it arrived say whose:
//
//   - the SYN-ACK carries a different cookie: the server found the cookie
//     wrong (a changed key, a pool without a shared one): cookie-rejected.
//     A refused cookie is never a lost packet, so one counts.
//   - the SYN arrived with its cookie (server side, or a matched pair) and
//     the SYN-ACK carries no option or the same cookie: the server took no
//     TFO connection then. Linux answers so when its TFO queue is full
//     (tcp_fastopen_queue_check: the listen backlog, max_qlen), when TFO is
//     off, or when it could not create the child socket: server-no-tfo,
//     whose reason names a full queue when the same server accepted other
//     data SYNs. Once a matched pair shows the option reaching the server
//     intact, the client-side copies without a partner that were refused
//     the same way count as this too.
//   - the client side alone, no option back: the option was stripped on
//     the way, or the server refused as above (a listener without TFO
//     answers exactly so): option-stripped, whose reason names both, and
//     what the capture adds: this port handed out cookies itself (its
//     listener had TFO then), or only another port of the same host did
//     (the client's cookie cache is per host, so every port is offered
//     that cookie, and a listener without TFO fits as well).
//   - the SYN arrived without the option: option-stripped.
//   - no cookie sent (cookie-less TFO, tcp_fastopen 0x4) and refused:
//     cookie-rejected.
//
// A SYN-ACK that acks part of the SYN's data is a partial refusal
// (partial-ack): Linux's client marks the rest lost, resends it right
// after the handshake and counts TCPFastOpenActiveFail
// (tcp_rcv_fastopen_synack). The cookie worked: tfo-works, whose reason
// names it.
//
// A RST answering a TFO SYN is syn-data-dropped (a firewall that resets
// SYNs with data) only when the port answered other SYNs and reset none
// without data: a closed port resets every SYN, data or not. When it
// reset plain SYNs too, or answered no SYN with a SYN-ACK, the RSTs are
// the port's refusal, which says nothing about TFO: inconclusive (or a
// note under another verdict), whose reason says, when only TFO SYNs were
// tried, that such a firewall in front of the port would look the same.
//
// A client that was granted a cookie and only ever asks for one again with
// the same SYN (same options, window scale, MSS, window, initial TTL),
// never sending data in a SYN, is client-no-tfo though the server works:
// Linux falls back to a cookie request at once when its data SYN cannot
// leave the host (a local firewall), or its cookie cache is not kept. SYNs
// built differently (a probe tool, another stack) asking again are not
// that client.
//
// # Verdict precedence
//
// When several findings apply to one server, the worst wins, in the order
// of Precedence: blackhole-paused, synack-lost, data-blackholed,
// syn-data-dropped, option-stripped, cookie-rejected, server-no-tfo, then
// the non-problems tfo-works, client-no-tfo, inconclusive. Worst means
// widest damage: a blackhole pause turns TFO off for every destination of
// the client, for periods that double; a lost SYN-ACK stalls a connection
// for seconds; blackholed data after the handshake stalls the connection
// until the application gives up, on every TFO connection while the
// kernel keeps using TFO; a dropped data SYN costs one SYN RTO per
// connection; a stripped option or a refused cookie costs one round trip;
// a server without TFO costs nothing but the saving. The findings below
// the winner are reported too (Also). A problem other than
// blackhole-paused and a refused cookie counts only when it affects at
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
// data blackholed after the handshake, how long the client waited between
// its handshake and its close; for a blackhole, the detecting connections'
// stall.
package diagnose
