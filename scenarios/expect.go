package scenarios

import (
	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/topology"

	. "github.com/tfolab/tfolab/assertions"
)

// endpoints is what a middlebox's checks need to know of the client and
// server making the exchange: the request's length on the wire, the check
// that the reply arrived intact, and which socket facts can be asserted.
// The catalogue's middlebox scenarios and the real peers' share their
// checks through it.
type endpoints struct {
	// reqLen is the request the client puts on the wire.
	reqLen int
	// reply is the check that the response arrived intact.
	reply func() ConnCheck
	// labClient: tcp_info is known (SynData, ClientFail); labServer: the
	// accepted sockets' are (ServerAcceptedSynData). An external program
	// tells neither, so neither is asserted for it.
	labClient, labServer bool
}

// labEndpoints are the lab's own client and listener.
var labEndpoints = endpoints{reqLen: payloadLen, reply: Responded, labClient: true, labServer: true}

func (e endpoints) clientFacts(synData bool, fail tfo.ClientFail) []ConnCheck {
	if !e.labClient {
		return nil
	}
	return []ConnCheck{SynDataAcked(synData), ClientFail(fail)}
}

func (e endpoints) serverFacts(synData bool) []ConnCheck {
	if !e.labServer {
		return nil
	}
	return []ConnCheck{ServerAcceptedSynData(synData)}
}

// cookieLearned is connection 0 of every middlebox scenario whose firewall
// lets cookie requests through: a plain exchange that leaves a cookie.
func (e endpoints) cookieLearned() types.GomegaMatcher {
	return Conn(0,
		Dialogue(AtClient,
			ClientSYN().WithCookieRequest().WithoutPayload(),
			ServerSYNACK().WithCookie()),
		e.reply(),
		FirstByteAfterSynRetransmissions(0))
}

// cookieLearned is labEndpoints.cookieLearned.
func cookieLearned() types.GomegaMatcher { return labEndpoints.cookieLearned() }

// synDataDropped is a connection whose SYN with cookie and data a firewall
// in the router (or, serverSide, in the server's INPUT chain) dropped: one
// RTO, a plain SYN, the data after the handshake. On the server's link:
// nothing of the SYN with data if the router dropped it; the SYN with data,
// then the plain SYN, if the server's own INPUT chain did (AF_PACKET sees
// it before the chain drops it).
func (e endpoints) synDataDropped(serverSide bool) []ConnCheck {
	onServerLink := []ConnCheck{
		NoPacket(AtServer, ClientSYN().WithPayload(e.reqLen)),
		Dialogue(AtServer, ClientSYN().WithoutFastOpen().WithoutPayload()),
	}
	if serverSide {
		onServerLink = []ConnCheck{Dialogue(AtServer,
			ClientSYN().WithCookie().WithPayload(e.reqLen),
			ClientSYN().WithoutFastOpen().WithoutPayload())}
	}
	checks := append([]ConnCheck{
		Dialogue(AtClient,
			ClientSYN().WithCookie().WithPayload(e.reqLen),
			ClientSYN().WithoutFastOpen().WithoutPayload(),
			ServerSYNACK().AckingSYNOnly(),
			ClientData().WithPayload(e.reqLen)),
		e.reply(),
		FirstByteAfterSynRetransmissions(1),
	}, onServerLink...)
	return append(checks, append(e.clientFacts(false, tfo.ClientFailSynRetransmitted), e.serverFacts(false)...)...)
}

// synDataDroppedTotals is what two connections behind drop-syn-data leave:
// two failures and two SYN retransmissions on the client, no blackhole
// detected (one timeout per connection), one cookie request on the
// server and no passive TFO, the cookie still cached with two SYN drops.
func synDataDroppedTotals() []types.GomegaMatcher {
	return []types.GomegaMatcher{
		MiddleboxMatched(2),
		clientTFO(0, 2, 2, Delta(lab.TCPFastOpenBlackhole, 0)),
		serverTFO(0, 1),
		CookieCached(topology.Client, true),
		SynDropsCached(topology.Client, 2),
	}
}

// optionStripped is a connection whose SYN lost options 34/254 on the way:
// the server gets the data without a cookie and acknowledges only the SYN
// (RFC 7413 §4.2.2); the client resends the data after the handshake, at
// no RTO.
func (e endpoints) optionStripped() []ConnCheck {
	checks := []ConnCheck{
		Dialogue(AtClient,
			ClientSYN().WithCookie().WithPayload(e.reqLen),
			ServerSYNACK().WithoutFastOpen().AckingSYNOnly(),
			ClientData().WithPayload(e.reqLen)),
		Dialogue(AtServer,
			ClientSYN().WithoutFastOpen().WithPayload(e.reqLen),
			ServerSYNACK().AckingSYNOnly()),
		e.reply(),
		FirstByteAfterSynRetransmissions(0),
	}
	return append(checks, append(e.clientFacts(false, tfo.ClientFailDataNotAcked), e.serverFacts(false)...)...)
}

// optionStrippedTotals is what two connections with their option stripped
// leave: two client failures at no retransmission, neither a passive TFO
// nor a refused cookie on the server (it never saw one), the cookie cached.
func optionStrippedTotals() []types.GomegaMatcher {
	return []types.GomegaMatcher{
		MiddleboxMatched(2),
		clientTFO(0, 2, 0),
		serverTFO(0, 1, Delta(lab.TCPFastOpenPassiveFail, 0)),
		CookieCached(topology.Client, true),
	}
}

// cookieRequested is a first connection: a cookie request, answered with
// a cookie, the request after the handshake.
func (e endpoints) cookieRequested() []ConnCheck {
	checks := []ConnCheck{
		Dialogue(AtClient,
			ClientSYN().WithCookieRequest().Experimental(false).WithoutPayload(),
			ServerSYNACK().WithCookie().AckingSYNOnly()),
		e.reply(),
	}
	return append(checks, e.clientFacts(false, tfo.ClientFailNoCookie)...)
}

// cookieThenData is a cookie request, then a connection whose SYN carries
// the request with the cookie, accepted.
func (e endpoints) cookieThenData() []types.GomegaMatcher {
	return append([]types.GomegaMatcher{
		Conn(0, e.cookieRequested()...),
		Conn(1, e.tfoAccepted()...),
	}, cookieThenDataTotals()...)
}

// tfoAccepted is a connection whose SYN carried a cookie and the request,
// accepted by the server (RFC 7413 §3).
func (e endpoints) tfoAccepted() []ConnCheck {
	checks := []ConnCheck{
		Dialogue(AtClient,
			ClientSYN().WithCookie().WithPayload(e.reqLen),
			ServerSYNACK().AckingSYNData()),
		Dialogue(AtServer, ClientSYN().WithCookie().WithPayload(e.reqLen)),
		e.reply(),
		FirstByteAfterSynRetransmissions(0),
	}
	return append(checks, append(e.clientFacts(true, tfo.ClientFailUnspec), e.serverFacts(true)...)...)
}

// cookieThenDataTotals is what a cookie request and one accepted TFO
// connection leave on both ends.
func cookieThenDataTotals() []types.GomegaMatcher {
	return []types.GomegaMatcher{
		serverTFO(1, 1, Delta(lab.TCPFastOpenPassiveFail, 0)),
		clientTFO(1, 0, 0),
		CookieCached(topology.Client, true),
	}
}

// clientTFO expects the client's TFO counters to have moved by active
// (TCPFastOpenActive), fail (TCPFastOpenActiveFail) and synRetrans
// (TCPSynRetrans), and by the deltas in more.
func clientTFO(active, fail, synRetrans int64, more ...CounterDelta) types.GomegaMatcher {
	return CountersOf(topology.Client, HaveCounterDeltas(append([]CounterDelta{
		Delta(lab.TCPFastOpenActive, active),
		Delta(lab.TCPFastOpenActiveFail, fail),
		Delta(lab.TCPSynRetrans, synRetrans),
	}, more...)...))
}

// serverTFO expects the server's TFO counters to have moved by passive
// (TCPFastOpenPassive) and cookieReqd (TCPFastOpenCookieReqd), and by the
// deltas in more.
func serverTFO(passive, cookieReqd int64, more ...CounterDelta) types.GomegaMatcher {
	return CountersOf(topology.Server, HaveCounterDeltas(append([]CounterDelta{
		Delta(lab.TCPFastOpenPassive, passive),
		Delta(lab.TCPFastOpenCookieReqd, cookieReqd),
	}, more...)...))
}
