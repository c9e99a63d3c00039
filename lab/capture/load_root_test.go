package capture

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/bpf"

	"github.com/tfolab/tfolab/lab/netnsx"
)

// TestReceiveBufferSized checks that the socket got the buffer it asked for
// (the kernel reports twice the value set) rather than the default.
func TestReceiveBufferSized(t *testing.T) {
	v := newVethPair(t)
	c := startCapture(t, v.A, "c0", "client-side")
	if got := c.handle.rcvBuf; got < 2*DefaultReceiveBuffer {
		t.Errorf("SO_RCVBUF = %d, want >= %d", got, 2*DefaultReceiveBuffer)
	}
	if _, err := Start(v.A, "c0", Options{ReceiveBuffer: -1}); err == nil {
		t.Error("Start with a negative receive buffer succeeded")
	}
}

// TestCompleteReportsDrops overflows a deliberately tiny receive buffer
// while the reader is held: the loss must show in Complete, Stop must
// still succeed, and what was kept must match the kernel's count.
func TestCompleteReportsDrops(t *testing.T) {
	v := newVethPair(t)
	release := holdReads(t)
	c, err := Start(v.B, "s0", Options{Link: "server-side", ReceiveBuffer: 1}) // the kernel's minimum
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { c.Stop() })

	exchange(t, v, "tcp4", addrB4.Addr(), burst(300), segLen)
	close(release)
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	received, dropped := c.Stats()
	if dropped == 0 {
		t.Fatalf("no drops with a %d-byte buffer and the reader held (%d frames): the test did not overflow", c.handle.rcvBuf, received)
	}
	err = c.Complete()
	if !errors.Is(err, ErrFramesDropped) {
		t.Fatalf("Complete = %v, want an error wrapping ErrFramesDropped", err)
	}
	t.Logf("Complete: %v", err)
	if got := uint64(c.Frames()); got != received-dropped {
		t.Errorf("kept %d frames, kernel queued %d", got, received-dropped)
	}
}

// udpDstFilter accepts IPv4 UDP datagrams (first fragments) to port.
func udpDstFilter(tb testing.TB, port uint16) []bpf.RawInstruction {
	tb.Helper()
	raw, err := bpf.Assemble([]bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: offEtherType, Size: 2},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIPv4, SkipFalse: 8},
		/* 2 */ bpf.LoadAbsolute{Off: offIPv4Proto, Size: 1},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17, SkipFalse: 6},
		/* 4 */ bpf.LoadAbsolute{Off: offIPv4Frag, Size: 2},
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: ipv4FragOffset, SkipTrue: 4},
		/* 6 */ bpf.LoadMemShift{Off: 14}, // X = IPv4 header length
		/* 7 */ bpf.LoadIndirect{Off: 14 + 2, Size: 2}, // UDP destination port
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(port), SkipFalse: 1},
		/* 9 */ bpf.RetConstant{Val: DefaultSnapLen},
		/* 10 */ bpf.RetConstant{Val: 0},
	})
	if err != nil {
		tb.Fatalf("assemble UDP filter: %v", err)
	}
	return raw
}

// BenchmarkCaptureSustained10kpps sends 10,000 UDP datagrams per second
// from A to B for 10 s per op and captures them on B's interface; every
// one of them must be captured and none dropped. Run it with
// `go test -run '^$' -bench CaptureSustained ./lab/capture/` as root.
func BenchmarkCaptureSustained10kpps(b *testing.B) {
	const (
		rate    = 10000 // datagrams per second
		perOp   = 10 * time.Second
		port    = 9034
		payload = 64
	)
	v := newVethPair(b)

	var rx *net.UDPConn
	if err := netnsx.Do(v.B, func() (err error) {
		rx, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrB4.Addr(), port)))
		return err
	}); err != nil {
		b.Fatalf("listen in B: %v", err)
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(8 << 20)
	var delivered uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // drain the receiver, so B answers nothing and drops nothing
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
			delivered++
		}
	}()
	var tx *net.UDPConn
	if err := netnsx.Do(v.A, func() (err error) {
		tx, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrB4.Addr(), port)))
		return err
	}); err != nil {
		b.Fatalf("dial from A: %v", err)
	}
	defer tx.Close()

	c, err := Start(v.B, "s0", Options{Link: "server-side", Filter: udpDstFilter(b, port)})
	if err != nil {
		b.Fatalf("Start: %v", err)
	}
	defer c.Stop()

	b.ResetTimer()
	total := time.Duration(b.N) * perOp
	msg := make([]byte, payload)
	var sent uint64
	tick := time.NewTicker(time.Millisecond)
	start := time.Now()
	for now := start; now.Sub(start) < total; now = <-tick.C {
		// Catch up to the schedule: a late tick sends its backlog at once,
		// so the average rate holds even when the sender lost its CPU.
		due := uint64(now.Sub(start).Seconds() * rate)
		for ; sent < due; sent++ {
			binary.BigEndian.PutUint64(msg, sent)
			if _, err := tx.Write(msg); err != nil {
				b.Fatalf("send datagram %d: %v", sent, err)
			}
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	if err := c.Stop(); err != nil {
		b.Fatalf("Stop: %v", err)
	}
	b.StopTimer()
	received, dropped := c.Stats()
	frames := c.Frames()
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "sent/s")
	b.ReportMetric(float64(frames), "frames")
	b.ReportMetric(float64(dropped), "dropped")
	b.ReportMetric(float64(c.handle.rcvBuf), "rcvbuf-bytes")
	b.Logf("sent %d datagrams in %v; capture accepted %d, kept %d, dropped %d", sent, elapsed.Round(time.Millisecond), received, frames, dropped)
	if err := c.Complete(); err != nil {
		b.Error(err)
	}
	if uint64(frames) != sent {
		b.Errorf("captured %d frames, sent %d datagrams", frames, sent)
	}
	rx.Close()
	wg.Wait()
	b.Logf("receiver read %d datagrams", delivered)
}
