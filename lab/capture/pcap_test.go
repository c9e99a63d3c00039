package capture

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tfolab/tfolab/lab/labtest"
)

// sampleFrames is a handshake-like mix of IPv4 and IPv6 frames plus an ARP
// frame, each a millisecond apart.
func sampleFrames(t *testing.T) []frame {
	t.Helper()
	cli4, srv4 := netip.MustParseAddrPort("10.34.1.2:40000"), netip.MustParseAddrPort("10.34.2.2:7000")
	cli6, srv6 := netip.MustParseAddrPort("[fd34:1::2]:40000"), netip.MustParseAddrPort("[fd34:2::2]:7000")
	raw := [][]byte{
		labtest.TCPFrame(t, cli4, srv4, synWithCookie(), payload19),
		labtest.TCPFrame(t, srv4, cli4, &layers.TCP{Seq: 100, Ack: 3248579161, SYN: true, ACK: true, Window: 65160,
			Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionData: []byte{0x05, 0xb4}}}}, nil),
		labtest.TCPFrame(t, cli6, srv6, synWithCookie(), payload19),
		labtest.TCPFrame(t, cli6, srv6, &layers.TCP{Seq: 3248579161, Ack: 101, ACK: true, PSH: true, Window: 502}, []byte("hello")),
		labtest.Serialize(t, &layers.Ethernet{SrcMAC: labtest.MACA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
			&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: layers.ARPRequest, SourceHwAddress: labtest.MACA, SourceProtAddress: []byte{10, 34, 1, 2},
				DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 34, 1, 1}}),
	}
	frames := make([]frame, len(raw))
	for i, r := range raw {
		frames[i] = frame{data: r, ci: gopacket.CaptureInfo{
			Timestamp: stamp.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(r), Length: len(r)}}
	}
	return frames
}

func TestWritePcapRoundTrip(t *testing.T) {
	frames := sampleFrames(t)
	c := &Capture{ifname: "test0", snapLen: DefaultSnapLen, frames: frames}
	path := filepath.Join(t.TempDir(), "round.pcap")
	if err := c.WritePcap(path); err != nil {
		t.Fatal(err)
	}
	r := labtest.PcapReader(t, path)
	if r.LinkType() != layers.LinkTypeEthernet || r.Snaplen() != DefaultSnapLen {
		t.Errorf("link type %v, snaplen %d", r.LinkType(), r.Snaplen())
	}
	for i := 0; ; i++ {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			if i != len(frames) {
				t.Errorf("read %d frames, wrote %d", i, len(frames))
			}
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if i >= len(frames) {
			t.Fatalf("extra frame %d", i)
		}
		if !bytes.Equal(data, frames[i].data) {
			t.Errorf("frame %d differs", i)
		}
		// Classic pcap keeps microseconds.
		if want := frames[i].ci.Timestamp.Truncate(time.Microsecond); !ci.Timestamp.Equal(want) {
			t.Errorf("frame %d at %v, want %v", i, ci.Timestamp, want)
		}
		if ci.Length != len(frames[i].data) {
			t.Errorf("frame %d original length %d", i, ci.Length)
		}
	}
}

func TestWritePcapBadPath(t *testing.T) {
	c := &Capture{ifname: "test0", snapLen: DefaultSnapLen}
	if err := c.WritePcap(filepath.Join(t.TempDir(), "missing", "x.pcap")); err == nil {
		t.Error("WritePcap into a missing directory succeeded")
	}
}

// TestStringMatchesTcpdump feeds the sample frames through the real tcpdump
// and compares its lines with Packet.String, after removing the differences
// String documents: tcpdump's "IP "/"IP6 " prefix and its double space in
// "tfo  cookie".
func TestStringMatchesTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("tcpdump not installed")
	}
	frames := sampleFrames(t)
	path := filepath.Join(t.TempDir(), "sample.pcap")
	if err := writePcap(path, DefaultSnapLen, frames); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tcpdump, "-n", "-S", "-r", path, "tcp").Output()
	if err != nil {
		t.Fatalf("tcpdump -r: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var want []string
	for _, fr := range frames {
		if p, ok, err := Decode(fr.data, fr.ci); ok && err == nil {
			want = append(want, p.String())
		}
	}
	if len(lines) != len(want) {
		t.Fatalf("tcpdump printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, l := range lines {
		l = strings.Replace(l, " IP ", " ", 1)
		l = strings.Replace(l, " IP6 ", " ", 1)
		l = strings.ReplaceAll(l, "tfo  cookie", "tfo cookie")
		if l != want[i] {
			t.Errorf("line %d\ntcpdump %q\nString  %q", i, l, want[i])
		}
	}
}
