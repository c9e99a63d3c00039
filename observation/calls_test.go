package observation

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A connection's socket calls survive the JSON round trip.
func TestCallsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	o := sample()
	o.Conns[0].Calls = []Call{
		{Side: "client", Op: "sendto", Ret: -1, Errno: "EINPROGRESS", At: 30 * time.Microsecond},
		{Side: "client", Op: "poll", Ret: 1, Detail: "POLLOUT", At: 90 * time.Microsecond},
		{Side: "server", Op: "tcp_info at accept", Ret: 0xa7, Detail: "CLOSE", At: time.Millisecond},
	}
	if _, err := o.Write(dir); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(o.Conns[0].Calls, got.Conns[0].Calls); d != "" {
		t.Fatalf("calls read back differ (-wrote +read):\n%s", d)
	}
	if got.Conns[1].Calls != nil {
		t.Errorf("a connection without calls read back with %v", got.Conns[1].Calls)
	}
}
