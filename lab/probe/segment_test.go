package probe

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/tfolab/tfolab/lab/capture"
)

// The ends of synthetic segments: the test lab's client (see lab_test.go)
// at port 40001 and its server at port 80.
var (
	client4 = netip.AddrPortFrom(ipv4.client, 40001)
	server4 = netip.AddrPortFrom(ipv4.server, 80)
	client6 = netip.AddrPortFrom(ipv6.client, 40001)
	server6 = netip.AddrPortFrom(ipv6.server, 80)
)

const testISN = 0xfffffffe // ISN+1 wraps: ack 0xffffffff

// families runs f once per address family.
func families(t *testing.T, f func(t *testing.T, local, remote netip.AddrPort)) {
	t.Run("IPv4", func(t *testing.T) { f(t, client4, server4) })
	t.Run("IPv6", func(t *testing.T) { f(t, client6, server6) })
}

// checksumOK verifies seg's TCP checksum over the pseudo-header, computed
// independently of gopacket: the one's-complement sum of pseudo-header and
// segment, checksum included, is 0xffff.
func checksumOK(seg []byte, src, dst netip.Addr) bool {
	var pseudo []byte
	pseudo = append(pseudo, src.AsSlice()...)
	pseudo = append(pseudo, dst.AsSlice()...)
	if src.Is4() {
		pseudo = append(pseudo, 0, 6)
		pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(seg)))
	} else {
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(seg)))
		pseudo = append(pseudo, 0, 0, 0, 6)
	}
	data := append(pseudo, seg...)
	if len(data)%2 == 1 {
		data = append(data, 0)
	}
	var sum uint32
	for i := 0; i < len(data); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(data[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func TestBuildSYN(t *testing.T) {
	for _, tc := range []struct {
		name         string
		experimental bool
		tfo          []byte
	}{
		// RFC 7413 §4.1.1: a cookie request is kind 34 length 2; Linux pads
		// it with two NOPs.
		{"kind34", false, []byte{34, 2, 1, 1}},
		{"experimental", true, []byte{254, 4, 0xF9, 0x89}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			families(t, func(t *testing.T, local, remote netip.AddrPort) {
				const tsval = 0x01020304
				seg, err := buildSYN(synParams{local: local, remote: remote, isn: testISN, tsval: tsval, mss: 1460, experimental: tc.experimental})
				if err != nil {
					t.Fatal(err)
				}
				want := []byte{
					2, 4, 0x05, 0xb4, // MSS 1460
					4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, // SACK-permitted, timestamps (TSecr 0)
					1, 3, 3, synWScale, // NOP, window scale
				}
				want = append(want, tc.tfo...)
				if len(seg) != 20+len(want) {
					t.Fatalf("SYN is %d bytes, want %d: % x", len(seg), 20+len(want), seg)
				}
				if got := seg[20:]; !bytes.Equal(got, want) {
					t.Errorf("options\n got % x\nwant % x", got, want)
				}
				if off := seg[12] >> 4; off != 11 {
					t.Errorf("data offset %d words, want 11", off)
				}
				if seg[13] != 0x02 {
					t.Errorf("flags %#02x, want SYN only", seg[13])
				}
				if got := binary.BigEndian.Uint32(seg[4:]); got != testISN {
					t.Errorf("seq %#x, want %#x", got, testISN)
				}
				if got := binary.BigEndian.Uint32(seg[8:]); got != 0 {
					t.Errorf("ack %#x, want 0", got)
				}
				if got := binary.BigEndian.Uint16(seg[14:]); got != synWindow {
					t.Errorf("window %d, want %d", got, synWindow)
				}
				if sp, dp := binary.BigEndian.Uint16(seg), binary.BigEndian.Uint16(seg[2:]); sp != local.Port() || dp != remote.Port() {
					t.Errorf("ports %d > %d, want %d > %d", sp, dp, local.Port(), remote.Port())
				}
				if !checksumOK(seg, local.Addr(), remote.Addr()) {
					t.Errorf("bad TCP checksum %#04x", binary.BigEndian.Uint16(seg[16:]))
				}
			})
		})
	}
}

func TestBuildRST(t *testing.T) {
	families(t, func(t *testing.T, local, remote netip.AddrPort) {
		seg, err := buildRST(local, remote, testISN+1)
		if err != nil {
			t.Fatal(err)
		}
		if len(seg) != 20 {
			t.Fatalf("RST is %d bytes, want a bare 20-byte header: % x", len(seg), seg)
		}
		if seg[13] != 0x04 {
			t.Errorf("flags %#02x, want RST only (no ACK)", seg[13])
		}
		if got := binary.BigEndian.Uint32(seg[4:]); got != testISN+1 {
			t.Errorf("seq %#x, want ISN+1 %#x", got, uint32(testISN+1))
		}
		if !checksumOK(seg, local.Addr(), remote.Addr()) {
			t.Errorf("bad TCP checksum")
		}
	})
}

func TestBuildMixedFamilies(t *testing.T) {
	if _, err := buildRST(client4, server6, 1); err == nil {
		t.Error("segment from IPv4 to IPv6 built without error")
	}
}

// answer describes a segment the server sends back.
type answer struct {
	syn, ack, rst bool
	ackNum        uint32
	srcPort       uint16 // 0: the server's port
	opts          []layers.TCPOption
}

// frame serializes a as a raw socket would hand it over: with the IPv4
// header for IPv4, the bare segment for IPv6.
func (a answer) frame(t *testing.T, local, remote netip.AddrPort) []byte {
	t.Helper()
	sport := remote.Port()
	if a.srcPort != 0 {
		sport = a.srcPort
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(local.Port()),
		Seq: 0x11223344, Ack: a.ackNum, SYN: a.syn, ACK: a.ack, RST: a.rst,
		Window: 65160, Options: a.opts,
	}
	layersOut := []gopacket.SerializableLayer{tcp}
	var ip gopacket.NetworkLayer
	if remote.Addr().Is4() {
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: remote.Addr().AsSlice(), DstIP: local.Addr().AsSlice()}
		layersOut = append([]gopacket.SerializableLayer{ip4}, layersOut...)
		ip = ip4
	} else {
		ip = &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, SrcIP: remote.Addr().AsSlice(), DstIP: local.Addr().AsSlice()}
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, layersOut...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// linuxSynAckOptions are the options of a Linux SYN-ACK, followed by tfo.
func linuxSynAckOptions(tfo ...layers.TCPOption) []layers.TCPOption {
	return append([]layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionData: []byte{0x05, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted},
		{OptionType: layers.TCPOptionKindTimestamps, OptionData: make([]byte, 8)},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindWindowScale, OptionData: []byte{7}},
	}, tfo...)
}

func cookieOf(n int) []byte {
	c := make([]byte, n)
	for i := range c {
		c[i] = byte(0xc0 + i)
	}
	return c
}

func tfoOpt(cookie []byte) layers.TCPOption {
	return layers.TCPOption{OptionType: capture.OptionKindFastOpen, OptionData: cookie}
}

func expOpt(cookie []byte) layers.TCPOption {
	return layers.TCPOption{OptionType: capture.OptionKindExperimental, OptionData: append([]byte{0xF9, 0x89}, cookie...)}
}

func TestMatchAndJudge(t *testing.T) {
	synAck := func(opts ...layers.TCPOption) answer {
		return answer{syn: true, ack: true, ackNum: testISN + 1, opts: linuxSynAckOptions(opts...)}
	}
	for _, tc := range []struct {
		name         string
		a            answer
		experimental bool // the probe asked in the experimental form
		want         Result
	}{
		{"cookie4", synAck(tfoOpt(cookieOf(4))), false, Result{Answered: true, SupportsTFO: true, Cookie: cookieOf(4),
			Reason: "SYN-ACK carries option 34 with a 4-byte cookie"}},
		{"cookie8", synAck(tfoOpt(cookieOf(8))), false, Result{Answered: true, SupportsTFO: true, Cookie: cookieOf(8),
			Reason: "SYN-ACK carries option 34 with an 8-byte cookie"}},
		{"cookie16", synAck(tfoOpt(cookieOf(16))), false, Result{Answered: true, SupportsTFO: true, Cookie: cookieOf(16),
			Reason: "SYN-ACK carries option 34 with a 16-byte cookie"}},
		{"experimental", synAck(expOpt(cookieOf(8))), true, Result{Answered: true, SupportsTFO: true, Experimental: true, Cookie: cookieOf(8),
			Reason: "SYN-ACK carries option 254/0xF989 (experimental TFO) with an 8-byte cookie"}},
		{"other-experiment", synAck(layers.TCPOption{OptionType: capture.OptionKindExperimental, OptionData: []byte{0x12, 0x34, 1, 2, 3, 4}}), true,
			Result{Answered: true, Reason: "SYN-ACK without option 254/0xF989: TFO off or the option was stripped on the way"}},
		{"no-option", synAck(), false, Result{Answered: true,
			Reason: "SYN-ACK without option 34: TFO off or the option was stripped on the way"}},
		{"stripped-to-nops", synAck(layers.TCPOption{OptionType: layers.TCPOptionKindNop}, layers.TCPOption{OptionType: layers.TCPOptionKindNop}), false,
			Result{Answered: true, Reason: "SYN-ACK without option 34: TFO off or the option was stripped on the way"}},
		{"echoed-request", synAck(tfoOpt(nil)), false, Result{Answered: true,
			Reason: "SYN-ACK carries option 34 without a cookie: an echoed request, not an offer"}},
		{"odd-cookie", synAck(tfoOpt(cookieOf(5))), false, Result{Answered: true, Cookie: cookieOf(5),
			Reason: "SYN-ACK carries option 34 with a 5-byte cookie, not the even 4..16 bytes of RFC 7413 §4.1.1"}},
		{"short-cookie", synAck(tfoOpt(cookieOf(2))), false, Result{Answered: true, Cookie: cookieOf(2),
			Reason: "SYN-ACK carries option 34 with a 2-byte cookie, not the even 4..16 bytes of RFC 7413 §4.1.1"}},
		{"rst", answer{rst: true, ack: true, ackNum: testISN + 1}, false, Result{Answered: true, RST: true, Reason: "RST: port closed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			families(t, func(t *testing.T, local, remote netip.AddrPort) {
				r, ok := matchReply(tc.a.frame(t, local, remote), local.Addr().Is4(), local, remote, testISN)
				if !ok {
					t.Fatal("answer not recognised")
				}
				var got Result
				judge(&got, r, tc.experimental)
				if got.Answered != tc.want.Answered || got.RST != tc.want.RST || got.SupportsTFO != tc.want.SupportsTFO ||
					got.Experimental != tc.want.Experimental || !bytes.Equal(got.Cookie, tc.want.Cookie) || got.Reason != tc.want.Reason {
					t.Errorf("\n got %+v\nwant %+v", got, tc.want)
				}
			})
		})
	}
}

func TestMatchIgnoresOthers(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    answer
	}{
		{"wrong-ack", answer{syn: true, ack: true, ackNum: testISN}},
		{"wrong-port", answer{syn: true, ack: true, ackNum: testISN + 1, srcPort: 81}},
		{"syn-without-ack", answer{syn: true, ackNum: testISN + 1}},
		{"rst-without-ack", answer{rst: true, ackNum: testISN + 1}}, // RFC 793: not acceptable in SYN-SENT
		{"plain-ack", answer{ack: true, ackNum: testISN + 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			families(t, func(t *testing.T, local, remote netip.AddrPort) {
				if r, ok := matchReply(tc.a.frame(t, local, remote), local.Addr().Is4(), local, remote, testISN); ok {
					t.Errorf("matched as %+v", r)
				}
			})
		})
	}
	t.Run("IPv4-other-source", func(t *testing.T) {
		other := netip.MustParseAddrPort("10.34.1.3:80")
		b := answer{syn: true, ack: true, ackNum: testISN + 1}.frame(t, client4, other)
		if _, ok := matchReply(b, true, client4, server4, testISN); ok {
			t.Error("matched a SYN-ACK from another host")
		}
	})
	t.Run("garbage", func(t *testing.T) {
		for _, b := range [][]byte{nil, {0x45}, make([]byte, 19)} {
			if _, ok := matchReply(b, true, client4, server4, testISN); ok {
				t.Errorf("matched %x", b)
			}
			if _, ok := matchReply(b, false, client6, server6, testISN); ok {
				t.Errorf("matched %x", b)
			}
		}
	})
}

func TestResultJSON(t *testing.T) {
	r := Result{Target: server4, Source: client4, Answered: true, SupportsTFO: true, Cookie: HexBytes{0xde, 0xad, 0xbe, 0xef},
		RTT: 1500 * time.Microsecond, SYNs: 1, Reason: "SYN-ACK carries option 34 with a 4-byte cookie"}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"cookie":"deadbeef"`, `"target":"10.34.1.2:80"`, `"supports_tfo":true`, `"rtt_ns":1500000`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Target != r.Target || !bytes.Equal(back.Cookie, r.Cookie) || back.RTT != r.RTT || back.Reason != r.Reason {
		t.Errorf("round trip: got %+v, want %+v", back, r)
	}
	if b, _ := json.Marshal(Result{}); strings.Contains(string(b), "cookie") {
		t.Errorf("empty cookie not omitted: %s", b)
	}
}

func TestResultString(t *testing.T) {
	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Result{Target: server4, Answered: true, SupportsTFO: true, Cookie: HexBytes{1, 2, 3, 4}, RTT: time.Millisecond,
			Reason: "SYN-ACK carries option 34 with a 4-byte cookie"},
			"10.34.1.2:80: TFO supported, cookie 01020304 (SYN-ACK carries option 34 with a 4-byte cookie), rtt 1ms"},
		{Result{Target: server6, Answered: true, RST: true, RTT: time.Millisecond, Reason: "RST: port closed"},
			"[fd34:1::2]:80: refused (RST: port closed), rtt 1ms"},
		{Result{Target: server4, Reason: "no answer within 1s"}, "10.34.1.2:80: unknown (no answer within 1s)"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

func TestNoAnswerReason(t *testing.T) {
	if got := noAnswer(time.Second, 1); got != "no answer within 1s" {
		t.Errorf("got %q", got)
	}
	if got := noAnswer(2*time.Second, 2); got != "no answer within 2s to 2 SYNs" {
		t.Errorf("got %q", got)
	}
}
