package diagnose

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"io"
	"net/netip"
	"os"
	"path/filepath"
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
