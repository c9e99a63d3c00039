package diagnose

import (
	"bufio"
	"compress/gzip"
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"io"
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

// t0 is the synthetic captures' start: the time of the seed evidence line.
var t0 = time.Date(2024, 3, 1, 7, 3, 45, 442747000, time.UTC)

// spkt is one synthetic TCP segment.
type spkt struct {
	at       time.Duration
	src, dst netip.AddrPort
	flags    capture.TCPFlags
	seq, ack uint32
	win      uint16
	opts     []layers.TCPOption
	payload  int
	ttl      uint8
}

// synth builds a capture in memory.
type synth struct {
	pkts []spkt
	// extra raw IP packets (not TCP), for the no-TCP case.
	udp int
}

// Option helpers, in the order Linux sends them.
func optMSS() layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}
}
func optSACKOK() layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2}
}
func optTS(val, ecr uint32) layers.TCPOption {
	d := make([]byte, 8)
	binary.BigEndian.PutUint32(d, val)
	binary.BigEndian.PutUint32(d[4:], ecr)
	return layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: d}
}
func optNOP() layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}
}
func optWS(n byte) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{n}}
}

// tfoOpt is a TFO option: a request (nil cookie) or a cookie, kind 34 or
// the experimental 254/0xF989.
func tfoOpt(ck []byte, exp bool) layers.TCPOption {
	if exp {
		d := append([]byte{0xf9, 0x89}, ck...)
		return layers.TCPOption{OptionType: 254, OptionLength: uint8(len(d) + 2), OptionData: d}
	}
	return layers.TCPOption{OptionType: 34, OptionLength: uint8(len(ck) + 2), OptionData: append([]byte(nil), ck...)}
}

// synOpts are a Linux SYN's options with tfo (if any) after wscale, padded.
func synOpts(tsval uint32, tfo *layers.TCPOption) []layers.TCPOption {
	o := []layers.TCPOption{optMSS(), optSACKOK(), optTS(tsval, 0), optNOP(), optWS(7)}
	if tfo != nil {
		o = append(o, *tfo)
		// pad to 4 bytes as Linux does
		n := 4 + 2 + 10 + 1 + 3 + int(tfo.OptionLength)
		for ; n%4 != 0; n++ {
			o = append(o, optNOP())
		}
	}
	return o
}

func ptr[T any](v T) *T { return &v }

var (
	cookieA = []byte{0x2c, 0xc5, 0x08, 0x6d, 0xe4, 0x02, 0xd8, 0x6a}
	cookieB = []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	cookieC = []byte{0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00}
)

// flow is one connection's packets as one capture sees them.
type flow struct {
	s          *synth
	c, sv      netip.AddrPort
	isn, sisn  uint32
	cTTL, sTTL uint8
}

// atClient / atServer set the TTLs a capture at that end sees.
func (f *flow) atServer() *flow { f.cTTL, f.sTTL = 63, 64; return f }

func (s *synth) flow(client, server string, isn uint32) *flow {
	return &flow{s: s, c: netip.MustParseAddrPort(client), sv: netip.MustParseAddrPort(server),
		isn: isn, sisn: isn ^ 0x5a5a5a5a, cTTL: 64, sTTL: 63}
}

func (f *flow) add(p spkt) *flow { f.s.pkts = append(f.s.pkts, p); return f }

// syn sends a SYN with an optional TFO option and data.
func (f *flow) syn(at time.Duration, tfo *layers.TCPOption, data int) *flow {
	return f.add(spkt{at: at, src: f.c, dst: f.sv, flags: capture.FlagSYN, seq: f.isn, win: 29200,
		opts: synOpts(0, tfo), payload: data, ttl: f.cTTL})
}

// synack answers, acking acked bytes of data beyond the SYN.
func (f *flow) synack(at time.Duration, acked int, tfo *layers.TCPOption) *flow {
	return f.add(spkt{at: at, src: f.sv, dst: f.c, flags: capture.FlagSYN | capture.FlagACK, seq: f.sisn,
		ack: f.isn + 1 + uint32(acked), win: 65160, opts: synOpts(0, tfo), ttl: f.sTTL})
}

// ack is the client's handshake ACK, then a data segment and the server's
// answer (skipped by the fast path).
func (f *flow) ack(at time.Duration) *flow {
	f.add(spkt{at: at, src: f.c, dst: f.sv, flags: capture.FlagACK, seq: f.isn + 1, ack: f.sisn + 1, win: 502, ttl: f.cTTL})
	f.add(spkt{at: at + 10*time.Microsecond, src: f.c, dst: f.sv, flags: capture.FlagACK | capture.FlagPSH, seq: f.isn + 1, ack: f.sisn + 1, win: 502, payload: 100, ttl: f.cTTL})
	return f.add(spkt{at: at + 50*time.Microsecond, src: f.sv, dst: f.c, flags: capture.FlagACK | capture.FlagPSH, seq: f.sisn + 1, ack: f.isn + 101, win: 502, payload: 200, ttl: f.sTTL})
}

func (f *flow) rst(at time.Duration) *flow {
	return f.add(spkt{at: at, src: f.sv, dst: f.c, flags: capture.FlagRST | capture.FlagACK, ack: f.isn + 1, ttl: f.sTTL})
}

// Common conversations (client side: server answers after rtt).
const rtt = 300 * time.Microsecond

// granted: a cookie request answered with cookie ck.
func (f *flow) granted(at time.Duration, ck []byte) *flow {
	return f.syn(at, ptr(tfoOpt(nil, false)), 0).synack(at+rtt, 0, ptr(tfoOpt(ck, false))).ack(at + rtt + 20*time.Microsecond)
}

// accepted: cookie and data, data acked.
func (f *flow) accepted(at time.Duration, ck []byte, data int) *flow {
	return f.syn(at, ptr(tfoOpt(ck, false)), data).synack(at+rtt, data, nil).ack(at + rtt + 20*time.Microsecond)
}

// plain: a handshake without TFO.
func (f *flow) plain(at time.Duration) *flow {
	return f.syn(at, nil, 0).synack(at+rtt, 0, nil).ack(at + rtt + 20*time.Microsecond)
}

// ipBytes serializes a segment as an IP packet.
func (p spkt) ipBytes(t testing.TB) []byte {
	tcp := &layers.TCP{SrcPort: layers.TCPPort(p.src.Port()), DstPort: layers.TCPPort(p.dst.Port()),
		Seq: p.seq, Ack: p.ack, Window: p.win, Options: p.opts,
		SYN: p.flags.Has(capture.FlagSYN), ACK: p.flags.Has(capture.FlagACK), RST: p.flags.Has(capture.FlagRST),
		FIN: p.flags.Has(capture.FlagFIN), PSH: p.flags.Has(capture.FlagPSH)}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	payload := gopacket.Payload(make([]byte, p.payload))
	var err error
	ttl := p.ttl
	if ttl == 0 {
		ttl = 64
	}
	if p.src.Addr().Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Protocol: layers.IPProtocolTCP,
			SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice(), Flags: layers.IPv4DontFragment}
		tcp.SetNetworkLayerForChecksum(ip)
		err = gopacket.SerializeLayers(buf, opts, ip, tcp, payload)
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolTCP,
			SrcIP: p.src.Addr().AsSlice(), DstIP: p.dst.Addr().AsSlice()}
		tcp.SetNetworkLayerForChecksum(ip)
		err = gopacket.SerializeLayers(buf, opts, ip, tcp, payload)
	}
	if err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

// udpBytes is an IPv4 UDP datagram.
func udpBytes(t testing.TB) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: []byte{10, 9, 9, 1}, DstIP: []byte{10, 9, 9, 2}}
	udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload("hello")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// frame wraps an IP packet for a link type.
func frame(link layers.LinkType, ip []byte) []byte {
	v6 := ip[0]>>4 == 6
	et := []byte{0x08, 0x00}
	if v6 {
		et = []byte{0x86, 0xdd}
	}
	var h []byte
	switch link {
	case layers.LinkTypeEthernet:
		h = append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}, et...)
	case layers.LinkTypeLinuxSLL:
		h = append([]byte{0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}, et...)
	case layers.LinkTypeLinuxSLL2:
		h = append(append([]byte(nil), et...), 0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0)
	case layers.LinkTypeNull:
		h = []byte{2, 0, 0, 0} // AF_INET, little-endian host order
		if v6 {
			h = []byte{24, 0, 0, 0} // AF_INET6 on NetBSD/OpenBSD
		}
	case layers.LinkTypeLoop:
		h = []byte{0, 0, 0, 2}
		if v6 {
			h = []byte{0, 0, 0, 24}
		}
	}
	return append(h, ip...)
}

// capOpts say how to write a synthetic capture.
type capOpts struct {
	ng      bool
	link    layers.LinkType
	snaplen int // 0: whole packets
	gzip    bool
	nanos   bool
	// offset shifts every timestamp (another host's clock).
	offset time.Duration
}

// write writes the capture to dir/name and returns its path.
func (s *synth) write(t testing.TB, dir, name string, o capOpts) string {
	t.Helper()
	if o.link == 0 && !o.ng {
		o.link = layers.LinkTypeEthernet
	}
	if o.link == 0 {
		o.link = layers.LinkTypeEthernet
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w io.Writer = f
	var gz *gzip.Writer
	if o.gzip {
		gz = gzip.NewWriter(f)
		w = gz
	}
	bw := bufio.NewWriter(w)
	snap := o.snaplen
	if snap == 0 {
		snap = 262144
	}
	var writePkt func(ci gopacket.CaptureInfo, data []byte) error
	var ngw *pcapgo.NgWriter
	if o.ng {
		intf := pcapgo.DefaultNgInterface
		intf.LinkType, intf.SnapLength = o.link, uint32(snap)
		ngw, err = pcapgo.NewNgWriterInterface(bw, intf, pcapgo.DefaultNgWriterOptions)
		if err != nil {
			t.Fatal(err)
		}
		writePkt = ngw.WritePacket
	} else {
		pw := pcapgo.NewWriter(bw)
		if o.nanos {
			pw = pcapgo.NewWriterNanos(bw)
		}
		if err := pw.WriteFileHeader(uint32(snap), o.link); err != nil {
			t.Fatal(err)
		}
		writePkt = pw.WritePacket
	}
	put := func(at time.Duration, ip []byte) {
		data := frame(o.link, ip)
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(at + o.offset), Length: len(data), CaptureLength: min(len(data), snap)}
		if err := writePkt(ci, data[:ci.CaptureLength]); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < s.udp; i++ {
		put(time.Duration(i)*time.Millisecond, udpBytes(t))
	}
	sorted := append([]spkt(nil), s.pkts...)
	sortByTime(sorted)
	for _, p := range sorted {
		put(p.at, p.ipBytes(t))
	}
	if ngw != nil {
		if err := ngw.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func sortByTime(ps []spkt) {
	// insertion sort keeps equal times in insertion order
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].at < ps[j-1].at; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

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
