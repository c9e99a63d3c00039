package assertions

// Matchers on a pool's cookies: every cookie a server issued is the one
// its scheduled primary key makes (tfocookie.Make), each client carries the
// cookie it was last given, and a cookie is accepted exactly where it was
// issued when the servers' keys differ.

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/tfolab/tfolab/lab/tfocookie"
	"github.com/tfolab/tfolab/observation"
)

// CookiesIssued expects every cookie a pool server's SYN-ACK carried to be
// the one the scheduled primary key on that server (at that moment) makes
// for the client and the service address: SipHash-2-4 of the addresses
// (tfocookie.Make). A server left with a key of its own fails it.
func CookiesIssued(keys *tfocookie.Schedule) obsMatcher {
	return obsMatcher{
		name: "cookies issued",
		desc: "every cookie a server issued is SipHash-2-4(its planned primary key, client address, service address)",
		check: func(o *observation.Observation) (bool, string) {
			if keys == nil {
				return false, "the scenario has no key plan"
			}
			n := 0
			for _, key := range o.LinkNames() {
				l := o.Links[key]
				if _, planned := keys.Start[l.Node]; !planned {
					continue
				}
				for k, p := range l.Packets {
					if !p.IsSYNACK() || p.FastOpen == nil || p.FastOpen.IsRequest() {
						continue
					}
					n++
					list := listsAt(o, keys, p.Time)[l.Node]
					k0, err := keys.Key(list)
					if err != nil {
						return false, err.Error()
					}
					want := tfocookie.Make(k0.Primary, p.Dst.Addr(), p.Src.Addr())
					if !bytes.Equal(p.FastOpen.Cookie, want) {
						by := keys.Issuer(p.FastOpen.Cookie, p.Dst.Addr(), p.Src.Addr())
						if by == "" {
							by = "no key of the plan"
						}
						return false, fmt.Sprintf("%s sent cookie %x (made with %s), want %x (its primary key %s of %q)\n%s",
							l.Node, p.FastOpen.Cookie, by, want, tfocookie.Names(list)[0], list, listPackets(l.Packets, k, key))
					}
				}
			}
			if n == 0 {
				return false, "no server issued a cookie"
			}
			return true, ""
		},
	}.by("CookiesIssued", keys)
}

// CookieCachePerDestination expects each client to behave as one cookie
// per destination (tcp_metrics): a connection asks for a cookie while none
// is cached, otherwise its SYN carries exactly the cookie of the latest
// SYN-ACK (from any server of the pool) that carried one, which replaces
// the cached one; after the timeline the client's tcp_metrics holds that
// last cookie for the service address. Clients in no-cookie mode (0x4) are
// skipped.
func CookieCachePerDestination() obsMatcher {
	return obsMatcher{
		name: "client cookie cache",
		desc: "each client's SYN carries the cookie of the latest SYN-ACK that carried one (a request before any), one cookie per destination, and tcp_metrics keeps the last",
		check: perClient(func(o *observation.Observation, node string, idx []int) string {
			if mode, err := nodeTFOMode(o, node); err == nil && mode&tfoClientNoCookie != 0 {
				return ""
			}
			var cached []byte
			for _, i := range idx {
				pkts := o.ConnPackets(i, AtClient)
				syn, synack := o.Handshake(i, pkts)
				if syn == nil {
					return fmt.Sprintf("connection %d: no SYN on the client side", i)
				}
				fo := syn.FastOpen
				switch {
				case cached == nil && (fo == nil || !fo.IsRequest()):
					return fmt.Sprintf("connection %d (%s): no cookie cached, yet its SYN has %s\n%s", i, node, describeTFO(fo), listPackets(pkts, -1, o.Conns[i].ClientLink))
				case cached != nil && (fo == nil || !bytes.Equal(fo.Cookie, cached)):
					return fmt.Sprintf("connection %d (%s): cached cookie %x, yet its SYN has %s\n%s", i, node, cached, describeTFO(fo), listPackets(pkts, -1, o.Conns[i].ClientLink))
				}
				if synack != nil && synack.FastOpen != nil && !synack.FastOpen.IsRequest() {
					cached = synack.FastOpen.Cookie
				}
			}
			if cached != nil && len(o.Services) > 0 {
				svc := o.Services[0].Addr.Addr()
				var got []byte
				for _, e := range o.Metrics(node) {
					if e.Dst == svc {
						got = e.FastOpenCookie
					}
				}
				if !bytes.Equal(got, cached) {
					return fmt.Sprintf("%s's tcp_metrics holds cookie %x for %s, want the last one issued, %x\n%s", node, got, svc, cached, o.MetricsSummary())
				}
			}
			return ""
		}),
	}.by("CookieCachePerDestination")
}

// AcceptedIffIssuer expects, client by client, every connection whose SYN
// carried a cookie to have had its data accepted in the SYN exactly when it
// landed on the server that issued that cookie (the server of the latest
// connection whose SYN-ACK carried one): what unsynchronised keys and a
// cache of one cookie per destination make of a pool.
func AcceptedIffIssuer() obsMatcher {
	return obsMatcher{
		name: "accepted iff cached cookie's issuer",
		desc: "a connection's cookie is accepted exactly when it lands on the server that issued the cached cookie",
		check: perClient(func(o *observation.Observation, node string, idx []int) string {
			issuer := ""
			for _, i := range idx {
				c := o.Conns[i]
				syn, synack := o.Handshake(i, o.ConnPackets(i, AtClient))
				if syn != nil && syn.FastOpen != nil && !syn.FastOpen.IsRequest() {
					if want := c.Served == issuer; c.SynData != want {
						return fmt.Sprintf("connection %d (%s) landed on %s, cookie issued by %s: SYN data accepted %t, want %t\n%s",
							i, node, c.Served, issuer, c.SynData, want, o.ConnSummary())
					}
				}
				if synack != nil && synack.FastOpen != nil && !synack.FastOpen.IsRequest() {
					issuer = c.Served
				}
			}
			return ""
		}),
	}.by("AcceptedIffIssuer")
}

// perClient is a check made client by client: check gets each client node
// (in name order) with the indexes of its connections, in the order they
// started, and says why that client fails it ("" if it does not). The
// first client that fails fails the whole.
func perClient(check func(o *observation.Observation, node string, idx []int) string) func(o *observation.Observation) (bool, string) {
	return func(o *observation.Observation) (bool, string) {
		byClient := map[string][]int{}
		for i, c := range o.Conns {
			byClient[c.Node] = append(byClient[c.Node], i)
		}
		for _, node := range slices.Sorted(maps.Keys(byClient)) {
			idx := byClient[node]
			sort.SliceStable(idx, func(a, b int) bool { return o.Conns[idx[a]].Start.Before(o.Conns[idx[b]].Start) })
			if why := check(o, node, idx); why != "" {
				return false, why
			}
		}
		return true, ""
	}
}
