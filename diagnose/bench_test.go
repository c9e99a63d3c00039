package diagnose

import (
	"bufio"
	"container/heap"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/tfolab/tfolab/lab/capture"
)

// pktHeap orders pending packets by time.
type pktHeap []spkt

func (h pktHeap) Len() int           { return len(h) }
func (h pktHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h pktHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pktHeap) Push(x any)        { *h = append(*h, x.(spkt)) }
func (h *pktHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// bigCapture streams a client-side capture of about size bytes to dir: many
// connections from 256 clients to 16 servers, a mix of behaviours (TFO
// accepted, plain, cookie requests, data SYNs dropped, options stripped,
// stalls), each followed by bulk data. It returns the path, the real size
// and the number of connections.
func bigCapture(tb testing.TB, dir string, size int64) (string, int64, int) {
	tb.Helper()
	path := filepath.Join(dir, fmt.Sprintf("big-%d.pcap", size))
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		tb.Fatal(err)
	}
	var written int64 = 24
	h := &pktHeap{}
	var s synth
	emit := func(p spkt) {
		data := frame(layers.LinkTypeEthernet, p.ipBytes(tb))
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(p.at), Length: len(data), CaptureLength: len(data)}
		if err := w.WritePacket(ci, data); err != nil {
			tb.Fatal(err)
		}
		written += int64(16 + len(data))
	}
	conns := 0
	for i := 0; written < size; i++ {
		start := time.Duration(i) * 2 * time.Millisecond
		for h.Len() > 0 && (*h)[0].at < start {
			emit(heap.Pop(h).(spkt))
		}
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i % 256 / 16), byte(i % 16)}), uint16(10000+i%50000))
		server := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, 0, byte(1 + i%16)}), 80)
		s.pkts = s.pkts[:0]
		fl := s.flow(client.String(), server.String(), uint32(i)*2654435761)
		switch i % 20 {
		case 0, 1, 2, 3, 4, 5, 6, 7, 8, 9:
			fl.accepted(start, cookieA, 300)
		case 10, 11, 12:
			fl.plain(start)
		case 13, 14:
			fl.granted(start, cookieA)
		case 15:
			fl.syn(start, ptr(tfoOpt(cookieA, false)), 300).syn(start+time.Second, nil, 0).
				synack(start+time.Second+rtt, 0, nil).ack(start + time.Second + 2*rtt)
		case 16:
			fl.syn(start, ptr(tfoOpt(cookieA, false)), 300).synack(start+rtt, 0, nil).ack(start + 2*rtt)
		case 17:
			fl.syn(start, ptr(tfoOpt(nil, false)), 0).synack(start+rtt, 0, nil).ack(start + 2*rtt)
		case 18:
			fl.syn(start, ptr(tfoOpt(cookieA, false)), 300).syn(start+time.Second, nil, 0).syn(start+3*time.Second, nil, 0)
		case 19:
			fl.syn(start, nil, 0).synack(start+rtt, 0, nil).rst(start + 2*rtt)
		}
		// Bulk data once the handshake is done: the fast path's work.
		bulk := start + 5*time.Millisecond
		switch i % 20 {
		case 15:
			bulk += time.Second
		case 18, 19:
			bulk = -1
		}
		for k := 0; k < 5 && bulk > 0; k++ {
			at := bulk + time.Duration(k)*time.Millisecond
			s.pkts = append(s.pkts,
				spkt{at: at, src: fl.sv, dst: fl.c, flags: capture.FlagACK | capture.FlagPSH, seq: fl.sisn + 1 + uint32(k*900), ack: fl.isn + 301, win: 502, payload: 900, ttl: 63},
				spkt{at: at + 50*time.Microsecond, src: fl.c, dst: fl.sv, flags: capture.FlagACK, seq: fl.isn + 301, ack: fl.sisn + 1 + uint32((k+1)*900), win: 502, ttl: 64})
		}
		for _, p := range s.pkts {
			heap.Push(h, p)
		}
		conns++
	}
	for h.Len() > 0 {
		emit(heap.Pop(h).(spkt))
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	return path, written, conns
}

// bigOnce caches the 100 MB capture across benchmark runs of one process.
var bigOnce = map[int64]string{}
var bigMu sync.Mutex

func bigCaptureCached(tb testing.TB, size int64) (string, int64) {
	bigMu.Lock()
	defer bigMu.Unlock()
	if p, ok := bigOnce[size]; ok {
		if st, err := os.Stat(p); err == nil {
			return p, st.Size()
		}
	}
	dir, err := os.MkdirTemp("", "tfolab-diagnose-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	p, n, _ := bigCapture(tb, dir, size)
	bigOnce[size] = p
	return p, n
}

func BenchmarkDiagnose100MB(b *testing.B) {
	path, size := bigCaptureCached(b, 100<<20)
	defer os.RemoveAll(filepath.Dir(path))
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Diagnose(context.Background(), []string{path}, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// peakHeap runs f while sampling HeapInuse, and returns the peak.
func peakHeap(f func()) uint64 {
	runtime.GC()
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	return peak.Load()
}

// A 100 MB capture is diagnosed in under 10 s, in memory that does not
// grow with the file: the peak heap for 100 MB stays within a few MB of
// the peak for 20 MB, and under 64 MB.
func TestLargeCaptureBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 120 MB of captures")
	}
	dir := t.TempDir()
	peaks := map[int64]uint64{}
	for _, size := range []int64{20 << 20, 100 << 20} {
		path, n, conns := bigCapture(t, dir, size)
		var rep *Report
		var took time.Duration
		peaks[size] = peakHeap(func() {
			start := time.Now()
			var err error
			rep, err = Diagnose(context.Background(), []string{path}, Options{})
			took = time.Since(start)
			if err != nil {
				t.Error(err)
			}
		})
		if t.Failed() {
			return
		}
		total := 0
		for _, s := range rep.Servers {
			total += s.TotalConnections
		}
		t.Logf("%d MB, %d connections: %v (%.0f MB/s), peak heap in use %.1f MB, %d servers",
			n>>20, conns, took.Round(time.Millisecond), float64(n)/took.Seconds()/(1<<20), float64(peaks[size])/(1<<20), len(rep.Servers))
		if total != conns {
			t.Errorf("%d connections diagnosed, %d written", total, conns)
		}
		if size == 100<<20 && took > 10*time.Second {
			t.Errorf("100 MB took %v, want < 10 s", took)
		}
		os.Remove(path)
	}
	small, big := peaks[20<<20], peaks[100<<20]
	if big > 64<<20 || big > small+16<<20 {
		t.Errorf("peak heap %.1f MB for 100 MB against %.1f MB for 20 MB: memory grows with the file",
			float64(big)/(1<<20), float64(small)/(1<<20))
	}
}
