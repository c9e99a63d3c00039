//go:build ignore

// seed001.go writes seed 001's two tcpdump dialogues as pcap files, so
// that `tfolab diagnose` can be shown on them: the TFO one (a SYN with a
// cookie and 19 bytes, the SYN-ACK acking them) and the regular
// three-way handshake. Every field tcpdump printed is kept (times,
// sequence numbers, windows, options, lengths); the seed elides the
// addresses, so these use documentation prefixes (RFC 5737).
//
//	go run examples/captures/seed001.go
package main

import (
	"encoding/binary"
	"log"
	"net"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

var (
	client = net.IPv4(192, 0, 2, 10)
	server = net.IPv4(198, 51, 100, 20)
)

const clientPort, serverPort = 40000, 80

type seg struct {
	at          string // tcpdump's time of day
	fromClient  bool
	syn, ack    bool
	seq, ackNum uint32
	win         uint16
	opts        []layers.TCPOption
	payload     int
}

func ts(val, ecr uint32) layers.TCPOption {
	d := make([]byte, 8)
	binary.BigEndian.PutUint32(d, val)
	binary.BigEndian.PutUint32(d[4:], ecr)
	return layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: d}
}

var (
	nop    = layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}
	sackOK = layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2}
	eol    = layers.TCPOption{OptionType: layers.TCPOptionKindEndList, OptionLength: 1}
)

func mss(v uint16) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: binary.BigEndian.AppendUint16(nil, v)}
}

func wscale(v byte) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{v}}
}

func cookie(hex8 []byte) layers.TCPOption {
	return layers.TCPOption{OptionType: 34, OptionLength: byte(2 + len(hex8)), OptionData: hex8}
}

func write(path, day string, segs []seg) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		log.Fatal(err)
	}
	for _, s := range segs {
		at, err := time.Parse("2006-01-02 15:04:05.000000", day+" "+s.at)
		if err != nil {
			log.Fatal(err)
		}
		src, dst, sp, dp := client, server, clientPort, serverPort
		smac, dmac := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
		ttl := uint8(64)
		if !s.fromClient {
			src, dst, sp, dp = server, client, serverPort, clientPort
			smac, dmac = dmac, smac
			ttl = 57 // a few hops away, as seen at the client
		}
		eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst, Flags: layers.IPv4DontFragment}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: s.seq, Ack: s.ackNum,
			SYN: s.syn, ACK: s.ack, Window: s.win, Options: s.opts}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			log.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		payload := make([]byte, s.payload)
		for i := range payload {
			payload[i] = byte('a' + i%26)
		}
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, tcp, gopacket.Payload(payload)); err != nil {
			log.Fatal(err)
		}
		b := buf.Bytes()
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			log.Fatal(err)
		}
	}
}

func main() {
	c := []byte{0x2c, 0xc5, 0x08, 0x6d, 0xe4, 0x02, 0xd8, 0x6a}
	// With TFO: the SYN carries the cookie and 19 bytes; the SYN-ACK acks
	// them (ack = ISN + 1 + 19).
	write("examples/captures/seed001-tfo.pcap", "2017-03-21", []seg{
		{"07:03:45.442747", true, true, false, 3248579141, 0, 29200,
			[]layers.TCPOption{mss(1460), sackOK, ts(0, 0), nop, wscale(7), cookie(c), nop, nop}, 19},
		{"07:03:45.442876", false, true, true, 1989043609, 3248579161, 28960,
			[]layers.TCPOption{mss(1460), sackOK, ts(37965533, 0), nop, wscale(7)}, 0},
		{"07:03:45.443034", true, false, true, 3248579161, 1989043610, 229,
			[]layers.TCPOption{nop, nop, ts(1277090187, 37965533)}, 0},
	})
	// Without TFO: a regular three-way handshake.
	write("examples/captures/seed001-plain.pcap", "2017-03-21", []seg{
		{"19:36:19.471384", true, true, false, 1237548774, 0, 65535,
			[]layers.TCPOption{mss(1460), nop, wscale(5), nop, nop, ts(932576322, 0), sackOK, eol}, 0},
		{"19:36:19.471483", false, true, true, 3862688090, 1237548775, 28960,
			[]layers.TCPOption{mss(1460), sackOK, ts(83119562, 932576322), nop, wscale(7)}, 0},
		{"19:36:19.478781", true, false, true, 1237548775, 3862688091, 4117,
			[]layers.TCPOption{nop, nop, ts(932576329, 83119562)}, 0},
	})
}
