package delay_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/delay"
	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/proc"
	"github.com/tfolab/tfolab/lab/rules"
	"github.com/tfolab/tfolab/topology"
)

// These tests build a Routed lab (client—router—server), hold every TCP
// packet leaving the router for oneWay, and measure from the client what
// a person would: the TCP handshake time, which is the round trip.

type routed struct {
	lab    *lab.Lab
	topo   *topology.Topology
	server netip.AddrPort
	queue  *delay.Queue  // in-process reader
	reader *delay.Reader // reader process
}

// How newRouted installs the delay.
type mode int

const (
	none      mode = iota
	inProcess      // delay.Start: a reader in this process
	spawned        // delay.Spawn: a reader process, as the lab uses it
)

// stats are the reader's figures so far.
func (r *routed) stats(tb testing.TB) delay.Stats {
	if r.reader != nil {
		st, err := r.reader.Stats(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		return st
	}
	return r.queue.Stats()
}

// newRouted builds the lab, a sink/echo server on the server node and the
// delay in the router, as m says.
func newRouted(tb testing.TB, f lab.Family, oneWay time.Duration, m mode) *routed {
	tb.Helper()
	labtest.NeedRoot(tb, "builds network namespaces and iptables rules")
	l := labtest.Lab(tb)
	topo, err := topology.Build(context.Background(), l, topology.Routed())
	if err != nil {
		tb.Fatal(err)
	}
	addr, err := topo.Addr(topology.Server, f)
	if err != nil {
		tb.Fatal(err)
	}
	r := &routed{lab: l, topo: topo, server: netip.AddrPortFrom(addr, 7000)}
	var ln net.Listener
	if err := topo.Namespace(topology.Server).Do(func() (err error) {
		ln, err = net.Listen("tcp", r.server.String())
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	l.Defer("listener", ln.Close)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	router := topo.Namespace(topology.Router)
	opts := delay.Options{Queue: 7, Delay: oneWay, Family: f, Run: router.Runner()}
	switch m {
	case none:
		return r
	case inProcess:
		if r.queue, err = delay.Start(opts); err != nil {
			tb.Fatal(err)
		}
		l.Defer("delay queue", r.queue.Close)
	case spawned:
		if r.reader, err = delay.Spawn(context.Background(), opts); err != nil {
			tb.Fatal(err)
		}
		l.Defer("delay reader", func() error { _, err := r.reader.Stop(); return err })
	}
	if err := rules.Apply(l, router, f, []rules.Rule{delay.Rule(7)}); err != nil {
		tb.Fatal(err)
	}
	return r
}

// handshake dials from the client and returns the round trip of its
// handshake as the kernel measured it (tcpi_rtt after connect: the SYN's
// transmission to the SYN-ACK's arrival, in microseconds), so that the
// test's own scheduling on a busy machine is not counted as delay.
func (r *routed) handshake(tb testing.TB) time.Duration {
	tb.Helper()
	var d time.Duration
	err := r.topo.Namespace(topology.Client).Do(func() error {
		c, err := net.DialTimeout("tcp", r.server.String(), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return err
		}
		var ti *unix.TCPInfo
		cerr := raw.Control(func(fd uintptr) {
			ti, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		})
		if err = errors.Join(cerr, err); err != nil {
			return fmt.Errorf("tcp_info: %w", err)
		}
		d = time.Duration(ti.Rtt) * time.Microsecond
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// quiet waits until every connection the server accepted is gone: the
// server has seen the client's last ACK, so no packet of an earlier
// handshake can still reach a queue. go-nfqueue reads its configuration
// replies on the socket queued packets arrive on, so binding a reader while
// the rule queues traffic can fail ("mismatched sequence in netlink
// reply"); the lab binds before it installs the rule (middlebox.Delay), and
// a test that binds with the rule in place waits for this first.
func (r *routed) quiet(tb testing.TB) {
	tb.Helper()
	file := "/proc/thread-self/net/tcp"
	if r.server.Addr().Is6() {
		file += "6"
	}
	// The server's close runs on the client's FIN and its last ACK comes
	// one round trip later; a lost FIN is resent after the 200 ms minimum
	// RTO, so 3 s is several of those.
	deadline := time.Now().Add(3 * time.Second)
	for {
		var busy []proc.Socket
		err := r.topo.Namespace(topology.Server).Do(func() error {
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			socks, err := proc.ParseNetTCP(b)
			for _, s := range socks {
				if s.Local.Port() == r.server.Port() && s.State != proc.StateListen {
					busy = append(busy, s)
				}
			}
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
		if len(busy) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("server connections still open after 3 s: %v", busy)
		}
		time.Sleep(time.Millisecond)
	}
}

func quantiles(ds []time.Duration) (lo, med, hi time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[0], s[len(s)/2], s[len(s)-1]
}

// TestRTT: a 25 ms hold each way makes a 50 ms round trip, never less, and
// within 2 jiffies at the median under the load of a full `go test ./...`,
// in both families, with the reader in this process and as a process of
// its own (as the lab runs it). BenchmarkRTT measures the precision.
func TestRTT(t *testing.T) {
	for _, m := range []struct {
		name string
		mode mode
	}{{"in-process", inProcess}, {"process", spawned}} {
		for _, f := range []lab.Family{lab.IPv4, lab.IPv6} {
			t.Run(m.name+"/"+f.String(), func(t *testing.T) {
				const oneWay = 25 * time.Millisecond
				r := newRouted(t, f, oneWay, m.mode)
				var rtts []time.Duration
				for range 20 {
					rtts = append(rtts, r.handshake(t))
				}
				lo, med, hi := quantiles(rtts)
				st := r.stats(t)
				t.Logf("RTT min/median/max %v / %v / %v; reader: %s", lo, med, hi, st)
				if st.Packets == 0 {
					t.Error("the reader held no packet")
				}
				if lo < 2*oneWay-time.Millisecond {
					t.Errorf("a round trip of %v is shorter than the %v the queue holds", lo, 2*oneWay)
				}
				// The precision target (within 1 ms at 50 ms) is measured by
				// BenchmarkRTT on an otherwise idle machine: 50.62 ms median
				// here. This test runs beside other packages' root tests
				// (and, in the stability runs, CPU hogs) on the same 2
				// cores. The round trip is the kernel's own measure, so
				// only the reader's lateness counts: it must hold the delay
				// to what the report needs, within 2 jiffies at the median,
				// far below the RTOs (≥ 200 ms) and RTTs it is compared
				// with. That is the lab's reader, a real-time process of its
				// own; a reader inside this test process shares its fair
				// scheduler with the hogs (medians of 61 ms were seen under
				// two of them) and is held only to the lower bound.
				if slack := 2 * lab.Jiffy; m.mode == spawned && med-2*oneWay > slack {
					t.Errorf("median RTT %v: more than %v above %v", med, slack, 2*oneWay)
				}
			})
		}
	}
}

// TestReaderProcessStops: the reader process ends at Stop, leaving the
// rule to pass traffic at once.
func TestReaderProcessStops(t *testing.T) {
	r := newRouted(t, lab.IPv4, 30*time.Millisecond, spawned)
	if d := r.handshake(t); d < 60*time.Millisecond {
		t.Errorf("reader running: handshake took %v, want ≥ 60 ms", d)
	}
	st, err := r.reader.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets == 0 {
		t.Errorf("final stats %s: no packet held", st)
	}
	if d := r.handshake(t); d > 20*time.Millisecond {
		t.Errorf("reader stopped: handshake took %v, want it to pass at once", d)
	}
}

// TestBypassWithoutReader: with the rule in place and no reader bound,
// --queue-bypass lets traffic through undelayed; the same after the
// reader is closed.
func TestBypassWithoutReader(t *testing.T) {
	r := newRouted(t, lab.IPv4, 0, none)
	router := r.topo.Namespace(topology.Router)
	if err := rules.Apply(r.lab, router, lab.IPv4, []rules.Rule{delay.Rule(9)}); err != nil {
		t.Fatal(err)
	}
	if d := r.handshake(t); d > 20*time.Millisecond {
		t.Errorf("no reader: handshake took %v, want it to pass at once", d)
	}
	r.quiet(t)
	q, err := delay.Start(delay.Options{Queue: 9, Delay: 30 * time.Millisecond, Family: lab.IPv4, Run: router.Runner()})
	if err != nil {
		t.Fatal(err)
	}
	if d := r.handshake(t); d < 60*time.Millisecond {
		t.Errorf("reader bound: handshake took %v, want ≥ 60 ms", d)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if d := r.handshake(t); d > 20*time.Millisecond {
		t.Errorf("reader closed: handshake took %v, want it to pass at once", d)
	}
}

// TestStartNeedsNamespace: the queue must be bound where its rule is.
func TestStartNeedsNamespace(t *testing.T) {
	if _, err := delay.Start(delay.Options{Queue: 1, Delay: time.Millisecond}); err == nil {
		t.Fatal("Start without a namespace runner succeeded")
	}
}

// BenchmarkRTT reports the emulated round trip's error at 50 ms (25 ms
// each way), with the reader process the lab uses: metrics err-min-µs,
// err-median-µs and err-max-µs over b.N handshakes.
func BenchmarkRTT(b *testing.B) {
	const oneWay = 25 * time.Millisecond
	r := newRouted(b, lab.IPv4, oneWay, spawned)
	var rtts []time.Duration
	b.ResetTimer()
	for range b.N {
		rtts = append(rtts, r.handshake(b))
	}
	b.StopTimer()
	lo, med, hi := quantiles(rtts)
	b.ReportMetric(float64((lo - 2*oneWay).Microseconds()), "err-min-µs")
	b.ReportMetric(float64((med - 2*oneWay).Microseconds()), "err-median-µs")
	b.ReportMetric(float64((hi - 2*oneWay).Microseconds()), "err-max-µs")
	b.Logf("%d handshakes: RTT %v / %v / %v (min/median/max); reader: %s", len(rtts), lo, med, hi, r.stats(b))
}

// BenchmarkQueueRate streams data client→server through a queue holding
// 1 ms each way and reports the packets per second the queue sustained
// (both directions: data and ACKs).
func BenchmarkQueueRate(b *testing.B) {
	r := newRouted(b, lab.IPv4, time.Millisecond, spawned)
	chunk := make([]byte, 64<<10)
	var conn net.Conn
	if err := r.topo.Namespace(topology.Client).Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", r.server.String(), 3*time.Second)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	go func() { _, _ = io.Copy(io.Discard, conn) }()
	before := r.stats(b).Packets
	start := time.Now()
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for range b.N {
		if _, err := conn.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	elapsed := time.Since(start)
	st := r.stats(b)
	pps := float64(st.Packets-before) / elapsed.Seconds()
	b.ReportMetric(pps, "packets/s")
	b.Logf("%s in %v: %.0f packets/s", st, elapsed.Round(time.Millisecond), pps)
}
