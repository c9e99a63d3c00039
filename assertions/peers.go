package assertions

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/observation"
)

// Expectations for real peers (curl, nginx, HAProxy, the seed's Python
// client and scapy probe, tshark): what their responses, their backend
// connections, their probes and a third-party dissector must show.

// ServedFile expects an HTTP response with status 200 whose body is
// exactly body (same size, same SHA-256, byte for byte). Header lines are
// the server's own (dates, case), so only the body is compared.
func ServedFile(body []byte) ConnCheck {
	sum := sha256.Sum256(body)
	return ConnCheck{
		desc: fmt.Sprintf("got HTTP 200 and the %d-byte body (sha256 %x…) intact", len(body), sum[:6]),
		check: func(o *observation.Observation, i int) (bool, string) {
			c := o.Conns[i]
			if c.Failed() {
				if c.Stalled {
					return false, fmt.Sprintf("stalled: %v", c.Error)
				}
				return false, fmt.Sprintf("failed: %v", c.Error)
			}
			return servedFile(c.Response, body)
		},
	}.by("ServedFile", body)
}

func servedFile(resp, want []byte) (bool, string) {
	r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(resp)), nil)
	if err != nil {
		return false, fmt.Sprintf("not an HTTP response (%v): %q", err, clip(resp, 120))
	}
	defer r.Body.Close()
	got, err := io.ReadAll(r.Body)
	if err != nil {
		return false, fmt.Sprintf("HTTP %d, body cut after %d bytes: %v", r.StatusCode, len(got), err)
	}
	if r.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("HTTP %d (%q)", r.StatusCode, clip(got, 120))
	}
	if bytes.Equal(got, want) {
		return true, ""
	}
	at := 0
	for at < len(got) && at < len(want) && got[at] == want[at] {
		at++
	}
	return false, fmt.Sprintf("body of %d bytes (sha256 %x…), want %d bytes (sha256 %x…): first difference at byte %d",
		len(got), sha(got), len(want), sha(want), at)
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:6] }

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Dissector runs a third-party dissector over one pcap file and returns
// the frame numbers (1-based, as Wireshark counts) it selects.
type Dissector func(ctx context.Context, pcap string) ([]int, error)

// dissectorTimeout bounds one dissector run (tshark reads a small file in
// well under a second; a loaded machine may take a few).
const dissectorTimeout = 30 * time.Second

// DissectorAgrees expects a third-party dissector (tshark with the seed's
// filter) to select, on every captured link, exactly the segments the
// lab's own decoder says are SYNs (SYN flag set: SYN or SYN-ACK) carrying
// TCP option 34: our pcaps and decoder agree with Wireshark's. Every
// link's frames go into one pcap, one link after the other, for one
// dissector run; under a DissectBatch (DeferDissection) that pcap joins the
// run's others and the verdict comes from the batch's single run.
func DissectorAgrees(name, filter string, d Dissector) obsMatcher {
	return obsMatcher{
		name: name,
		desc: fmt.Sprintf("%s (%s) lists exactly the SYNs and SYN-ACKs the lab's decoder says carry option 34, on every link", name, filter),
		check: func(o *observation.Observation) (bool, string) {
			item, frames := dissectItemOf(o, name)
			if len(frames) == 0 {
				return false, "no link captured a packet: nothing to compare"
			}
			if b := deferred.Load(); b != nil {
				if err := b.add(item, frames); err != nil {
					return false, err.Error()
				}
				return true, ""
			}
			dir, err := os.MkdirTemp("", "tfolab-dissect-")
			if err != nil {
				return false, err.Error()
			}
			defer os.RemoveAll(dir)
			path := filepath.Join(dir, "links.pcap")
			if err := observation.WritePcap(path, frames); err != nil {
				return false, err.Error()
			}
			ctx, cancel := context.WithTimeout(context.Background(), dissectorTimeout)
			defer cancel()
			selected, err := d(ctx, path)
			if err != nil {
				return false, err.Error()
			}
			return item.compare(selected, 0)
		},
	}.by("DissectorAgrees", name, filter, d)
}

// Option34SYNs returns the 1-based positions of the packets with the SYN
// flag set (SYN or SYN-ACK) whose options include kind 34, as decoded.
// The experimental form (kind 254) is not option 34.
func Option34SYNs(pkts []capture.Packet) []int {
	out := []int{}
	for i, p := range pkts {
		if !p.Flags.Has(capture.FlagSYN) {
			continue
		}
		for _, opt := range p.Options {
			if opt.OptionType == capture.OptionKindFastOpen {
				out = append(out, i+1)
				break
			}
		}
	}
	return out
}

// BackendConns reconstructs, from the captures alone, the connections
// some node made to service (a proxy's backend connections, which no
// client of the scenario made): one per source address, in order of
// their first SYN on the service's node. Each gets the link it left by as
// ClientLink (a link of another node that saw the SYN), the service's
// node's link as ServerLink, its first SYN's time as Start, and Connected
// and FirstByte from the packets on its client link.
func BackendConns(o *observation.Observation, service string) ([]observation.Conn, error) {
	svc, ok := o.Service(service)
	if !ok {
		return nil, fmt.Errorf("no service %q in the observation", service)
	}
	type backend struct {
		conn observation.Conn
		isn  uint32
	}
	var found []backend
	// A retransmitted SYN keeps its ISN; a new connection from the same
	// port (a reused 4-tuple) has another.
	seen := map[string]bool{}
	for _, key := range o.LinkNames() {
		if o.Links[key].Node != svc.Node {
			continue
		}
		for _, p := range o.Links[key].Packets {
			id := fmt.Sprintf("%s/%d", p.Src, p.Seq)
			if !p.IsSYN() || p.Dst != svc.Addr || seen[id] {
				continue
			}
			seen[id] = true
			found = append(found, backend{observation.Conn{
				Client: "backend of " + service, Service: service, Mode: "observed",
				Local: p.Src, Remote: p.Dst, Start: p.Time, ServerLink: key, Served: svc.Node,
			}, p.Seq})
		}
	}
	slices.SortStableFunc(found, func(a, b backend) int { return a.conn.Start.Compare(b.conn.Start) })
	out := make([]observation.Conn, len(found))
	for i := range found {
		c, isn := &found[i].conn, found[i].isn
		for _, key := range o.LinkNames() {
			l := o.Links[key]
			if l.Node == svc.Node {
				continue
			}
			for _, p := range l.Packets {
				switch {
				case c.ClientLink == "" && p.IsSYN() && p.Src == c.Local && p.Dst == c.Remote && p.Seq == isn:
					c.ClientLink, c.Node, c.Start = key, l.Node, p.Time
				case c.ClientLink == key && p.Src == c.Remote && p.Dst == c.Local && !p.Time.Before(c.Start):
					if p.IsSYNACK() && c.Connected == 0 {
						c.Connected = p.Time.Sub(c.Start)
					}
					if p.Length > 0 && c.FirstByte == 0 {
						c.FirstByte = p.Time.Sub(c.Start)
					}
				}
			}
			if c.ClientLink != "" {
				break
			}
		}
		out[i] = *c
	}
	return out, nil
}

// EveryBackend expects exactly n backend connections to service (see
// BackendConns) and applies checks to each, as EveryConn does to the
// clients' connections.
func EveryBackend(service string, n int, checks ...ConnCheck) obsMatcher {
	return obsMatcher{
		name: "every backend connection",
		desc: fmt.Sprintf("%d backend connections to %s, each: %s", n, service, descs(checks)),
		check: func(o *observation.Observation) (bool, string) {
			conns, err := BackendConns(o, service)
			if err != nil {
				return false, err.Error()
			}
			if len(conns) != n {
				var b strings.Builder
				for _, c := range conns {
					fmt.Fprintf(&b, "  %s -> %s at %s (seen on %s)\n", c.Local, c.Remote, c.Start.Format("15:04:05.000000"), c.ServerLink)
				}
				return false, fmt.Sprintf("%d backend connections to %s in the captures, want %d\n%s", len(conns), service, n, b.String())
			}
			derived := *o
			derived.Conns = conns
			for i := range conns {
				if ok, failure, _ := checkConn(&derived, i, checks); !ok {
					return false, fmt.Sprintf("backend connection %d (%s -> %s): %s", i, conns[i].Local, conns[i].Remote, failure)
				}
			}
			return true, ""
		},
	}.by("EveryBackend", service, n, checks)
}

// ProbesAgree expects every server TFO probe of the observation (lab/probe
// and the seed's scapy recipe, at least two) to have been answered and to
// say want (the server offers a cookie), with the same cookie, and the
// captures to say the same: connection 0's SYN-ACK on the client side
// offers that very cookie (a server hands one client address one cookie)
// when want, and no cookie otherwise.
func ProbesAgree(want bool) obsMatcher {
	verdict := wantDesc(want, "TFO supported, the same cookie", "no TFO")
	return obsMatcher{
		name: "probes",
		desc: fmt.Sprintf("every probe (lab/probe and scapy) says %s, and so does connection 0's SYN-ACK", verdict),
		check: func(o *observation.Observation) (bool, string) {
			var b strings.Builder
			for _, p := range o.Probes {
				fmt.Fprintf(&b, "  probe %s\n", p)
			}
			if len(o.Probes) < 2 {
				return false, fmt.Sprintf("%d probes, want the lab's and scapy's\n%s", len(o.Probes), b.String())
			}
			first := o.Probes[0]
			for _, p := range o.Probes {
				if !p.Answered || p.RST || p.SupportsTFO != want {
					return false, fmt.Sprintf("a probe disagrees\n%s", b.String())
				}
				if !bytes.Equal(p.Cookie, first.Cookie) {
					return false, fmt.Sprintf("the probes got different cookies\n%s", b.String())
				}
			}
			if len(o.Conns) == 0 {
				return false, "no connection to compare the probes with"
			}
			pkts := o.ConnPackets(0, AtClient)
			for _, p := range pkts {
				if !p.IsSYNACK() {
					continue
				}
				got := p.FastOpen != nil && !p.FastOpen.IsRequest()
				switch {
				case got != want:
					return false, fmt.Sprintf("connection 0's SYN-ACK disagrees with the probes: %s\n%s", p, b.String())
				case want && !bytes.Equal(p.FastOpen.Cookie, first.Cookie):
					return false, fmt.Sprintf("connection 0 was offered cookie %x, the probes %x\n%s", p.FastOpen.Cookie, []byte(first.Cookie), b.String())
				}
				return true, ""
			}
			return false, fmt.Sprintf("connection 0 got no SYN-ACK\n%s", listPackets(pkts, -1, o.LinkOf(0, AtClient)))
		},
	}.by("ProbesAgree", want)
}

// StrayGuard is the name of the observer a peers scenario puts on a
// peer's node (as a middlebox, from the start): iptables rules that drop
// and count every UDP datagram the node sends.
const StrayGuard = "stray-guard"

// NoStrayTraffic expects node to have sent nothing beyond the scenario's
// own traffic: no datagram (a DNS query to a resolver, which the StrayGuard
// on node dropped and counted) and no SYN on its links to an address no
// service of the scenario has.
func NoStrayTraffic(node string) obsMatcher {
	return obsMatcher{
		name: "no stray traffic",
		desc: fmt.Sprintf("%s sent no datagram and no SYN to anything but the scenario's services", node),
		check: func(o *observation.Observation) (bool, string) {
			var stray []string
			guarded := false
			for _, m := range o.Middleboxes {
				if m.Name != StrayGuard || m.Node != node {
					continue
				}
				guarded = true
				for _, r := range m.Rules {
					if r.Packets > 0 {
						stray = append(stray, fmt.Sprintf("  %d datagram(s) dropped by %s", r.Packets, r.Rule))
					}
				}
			}
			if !guarded {
				return false, fmt.Sprintf("no %s was installed on %s: nothing counted its datagrams", StrayGuard, node)
			}
			services := map[netip.Addr]bool{}
			for _, s := range o.Services {
				services[s.Addr.Addr()] = true
			}
			for _, key := range o.LinkNames() {
				if o.Links[key].Node != node {
					continue
				}
				for _, p := range o.Links[key].Packets {
					if p.IsSYN() && !services[p.Dst.Addr()] {
						stray = append(stray, fmt.Sprintf("  %s on %s", p, key))
					}
				}
			}
			if len(stray) > 0 {
				return false, fmt.Sprintf("%s sent:\n%s", node, strings.Join(stray, "\n"))
			}
			return true, ""
		},
	}.by("NoStrayTraffic", node)
}

// ToolVersion expects the observation to have been made with tool at a
// version starting with prefix: an expectation that describes what one
// version does (HAProxy 2.6's backend TFO) must not silently pass or fail
// for another, which has to be measured again.
func ToolVersion(tool, prefix string) obsMatcher {
	return obsMatcher{
		name: tool + " version",
		desc: fmt.Sprintf("the observation was made with %s %s*", tool, prefix),
		check: func(o *observation.Observation) (bool, string) {
			v, ok := o.Host.Tools[tool]
			switch {
			case !ok || v == "":
				return false, fmt.Sprintf("the observation records no %s version (tools: %v)", tool, o.Host.Tools)
			case !strings.HasPrefix(v, prefix):
				return false, fmt.Sprintf("%s %s: these expectations describe %s %s*; measure this version and record what it does", tool, v, tool, prefix)
			}
			return true, ""
		},
	}.by("ToolVersion", tool, prefix)
}
