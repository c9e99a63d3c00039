package rawpeer

import (
	"bytes"
	"testing"
	"time"

	"github.com/tfolab/tfolab/lab/capture"
)

// With AckSynDataBytes the SYN-ACK acks only that much of the SYN's data;
// the rest, sent again after the handshake, is taken in order.
func TestEngineAckSynDataPartly(t *testing.T) {
	e := newTestEngine(nil, true)
	e.ackSynDataN = 9
	now := time.Unix(1000, 0)
	fo := &capture.FastOpenOption{Cookie: cookie8}
	part := clientISN + 1 + uint32(9)
	one(t, "SYN+data", e.handle(fromClient(t, capture.FlagSYN, clientISN, 0, fo, request), clientMAC, now), sa, serverISN, part, testData)
	end := uint32(serverISN + 1 + len(testData))
	rcv := clientISN + 1 + uint32(len(request))
	// The client sends the rest (with the request line's end): FIN follows.
	one(t, "rest", e.handle(fromClient(t, pa, part, end, nil, request[9:]), clientMAC, now), fa, end, rcv, nil)
	if r := e.records()[0]; !bytes.Equal(r.Received, request) || !r.FINSent {
		t.Errorf("record: %s", r)
	}
}
