package assertions

import (
	"fmt"

	"github.com/tfolab/tfolab/lab/tcpmetrics"
	"github.com/tfolab/tfolab/observation"
)

// CookieCached expects role's tcp_metrics to hold a TFO cookie of 4..16
// bytes for the scenario's first service address (want=true), or no cookie (false).
// This is the client-side cookie cache `ip tcp_metrics show` prints.
func CookieCached(role string, want bool) obsMatcher {
	desc := fmt.Sprintf("%s's tcp_metrics caches %s for the server", role, wantDesc(want, "a TFO cookie", "no TFO cookie"))
	return obsMatcher{
		name: role + " cookie cache",
		desc: desc,
		check: func(o *observation.Observation) (bool, string) {
			e, found := metricsFor(o, role)
			has := found && len(e.FastOpenCookie) >= 4 && len(e.FastOpenCookie) <= 16
			if has == want {
				return true, ""
			}
			return false, "Expected: " + desc + "\n" + o.MetricsSummary()
		},
	}.by("CookieCached", role, want)
}

// SynDropsCached expects role's tcp_metrics fo_syn_drops for the server to
// equal n.
func SynDropsCached(role string, n uint16) obsMatcher {
	return obsMatcher{
		name: role + " fo_syn_drops",
		desc: fmt.Sprintf("%s's tcp_metrics counts fo_syn_drops %d for the server", role, n),
		check: func(o *observation.Observation) (bool, string) {
			e, _ := metricsFor(o, role)
			if e.FastOpenSynDrops == n {
				return true, ""
			}
			return false, o.MetricsSummary()
		},
	}.by("SynDropsCached", role, n)
}

func metricsFor(o *observation.Observation, role string) (tcpmetrics.Entry, bool) {
	if len(o.Services) == 0 {
		return tcpmetrics.Entry{}, false
	}
	for _, e := range o.Metrics(role) {
		if e.Dst == o.Services[0].Addr.Addr() {
			return e, true
		}
	}
	return tcpmetrics.Entry{}, false
}

// MiddleboxMatched expects the middlebox's rules to have matched n packets
// in all: the firewall, not something else, caused what the other
// expectations see.
func MiddleboxMatched(n uint64) obsMatcher {
	return middleboxMatched(n, n).by("MiddleboxMatched", n)
}

// MiddleboxMatchedAtLeast is MiddleboxMatched for a firewall whose packet
// count depends on retransmission timing (a peer retransmitting into it):
// at least n.
func MiddleboxMatchedAtLeast(n uint64) obsMatcher {
	m := middleboxMatched(n, ^uint64(0))
	m.desc = fmt.Sprintf("the middlebox's rules matched at least %d packet(s)", n)
	return m.by("MiddleboxMatchedAtLeast", n)
}

func middleboxMatched(lo, hi uint64) obsMatcher {
	return obsMatcher{
		name: "middlebox hits",
		desc: fmt.Sprintf("the middlebox's rules matched %d packet(s)", lo),
		check: func(o *observation.Observation) (bool, string) {
			if len(o.Middleboxes) == 0 {
				return false, "no middlebox rule was installed"
			}
			total := o.MiddleboxHits()
			if lo <= total && total <= hi {
				return true, ""
			}
			return false, fmt.Sprintf("matched %d\n%s", total, o.MiddleboxSummary())
		},
	}
}
