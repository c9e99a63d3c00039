package diagnose

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/tfolab/tfolab/lab/capture"
)

// Errors a caller can test for with errors.Is; they come wrapped in an
// *InputError naming the file.
var (
	// ErrNotCapture: the file is neither pcap nor pcapng (nor a gzipped one).
	ErrNotCapture = errors.New("not a pcap or pcapng capture")
	// ErrNoTCP: the capture holds no TCP segment over IPv4 or IPv6.
	ErrNoTCP = errors.New("no TCP segment in the capture")
	// ErrHeadersCut: the snap length cut the TCP headers of every SYN.
	ErrHeadersCut = errors.New("TCP headers cut by the snap length (capture again with tcpdump -s 0)")
)

// InputError is a file that could not be diagnosed at all: missing,
// unreadable, not a capture, or without TCP.
type InputError struct {
	File string
	Err  error
}

func (e *InputError) Error() string { return e.File + ": " + e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// File magics, as the first four bytes read little-endian.
const (
	magicPcapMicro   = 0xa1b2c3d4
	magicPcapMicroBE = 0xd4c3b2a1
	magicPcapNano    = 0xa1b23c4d
	magicPcapNanoBE  = 0x4d3cb2a1
	magicPcapNG      = 0x0a0d0d0a
)

// Link types beyond gopacket's names: DLT_RAW as some platforms number it.
const (
	linkRawBSD    layers.LinkType = 12 // DLT_RAW on most BSDs
	linkRawOpenBS layers.LinkType = 14 // DLT_RAW on OpenBSD
)

// packetReader is what pcapgo's two readers have in common.
type packetReader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// source is one capture file being read.
type source struct {
	idx  int
	path string
	f    *os.File
	rd   packetReader
	ng   bool
	link layers.LinkType // the pcap header's; pcapng gives one per packet
	sum  *FileSummary
	eth  []byte // scratch: a synthetic Ethernet frame around an IP packet
	// unsupported link types met, to warn once each.
	badLinks map[layers.LinkType]bool
	warn     func(string)
}

// openSource opens path and reads its file header. The format comes from
// the magic number, never the name.
func openSource(path string, idx int, warn func(string)) (*source, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the InputError already
		}
		return nil, &InputError{path, err}
	}
	s := &source{idx: idx, path: path, f: f, warn: warn, badLinks: map[layers.LinkType]bool{},
		sum: &FileSummary{Path: path}}
	if st, err := f.Stat(); err == nil {
		s.sum.Bytes = st.Size()
	}
	fail := func(err error) (*source, error) {
		f.Close()
		return nil, &InputError{path, err}
	}
	var r io.Reader = bufio.NewReaderSize(f, 1<<16)
	br := r.(*bufio.Reader)
	head, err := br.Peek(4)
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		gz, gerr := gzip.NewReader(br)
		if gerr != nil {
			return fail(fmt.Errorf("%w: gzip: %v", ErrNotCapture, gerr))
		}
		s.sum.Gzip = true
		br = bufio.NewReaderSize(gz, 1<<16)
		head, err = br.Peek(4)
	}
	if len(head) < 4 {
		if err == nil || errors.Is(err, io.EOF) {
			return fail(fmt.Errorf("%w: only %d bytes", ErrNotCapture, len(head)))
		}
		return fail(fmt.Errorf("read: %w", err))
	}
	switch binary.LittleEndian.Uint32(head) {
	case magicPcapMicro, magicPcapMicroBE, magicPcapNano, magicPcapNanoBE:
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return fail(fmt.Errorf("%w: pcap header: %v", ErrNotCapture, err))
		}
		s.rd, s.link, s.sum.Format = pr, pr.LinkType(), "pcap"
		s.sum.addLink(pr.LinkType())
	case magicPcapNG:
		nr, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fail(fmt.Errorf("%w: pcapng section header cut short", ErrNotCapture))
			}
			return fail(fmt.Errorf("%w: pcapng header: %v", ErrNotCapture, err))
		}
		s.rd, s.ng, s.sum.Format = nr, true, "pcapng"
	default:
		return fail(fmt.Errorf("%w (starts with %x)", ErrNotCapture, head))
	}
	return s, nil
}

func (s *source) close() { s.f.Close() }

// rawPacket is one record: its bytes (valid until the next read from the
// same source), capture info and link type.
type rawPacket struct {
	data []byte
	ci   gopacket.CaptureInfo
	link layers.LinkType
}

// next reads the next record. It returns false at the end of the file or
// at the first record it cannot read; a cut or corrupt tail is recorded in
// the summary and warned about, and what came before stands.
func (s *source) next() (rawPacket, bool) {
	data, ci, err := s.rd.ZeroCopyReadPacketData()
	if err != nil {
		switch {
		case errors.Is(err, io.EOF):
		case errors.Is(err, io.ErrUnexpectedEOF):
			s.sum.Truncated = true
			s.warn(fmt.Sprintf("%s: truncated: the last record is cut short after %d complete packets; diagnosing what was read", s.path, s.sum.Packets))
		default:
			s.sum.Truncated = true
			s.warn(fmt.Sprintf("%s: unreadable record after %d packets (%v); diagnosing what was read", s.path, s.sum.Packets, err))
		}
		return rawPacket{}, false
	}
	link := s.link
	if s.ng {
		if len(ci.AncillaryData) > 0 {
			if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
				link = lt
			}
		}
		s.sum.addLink(link)
	}
	s.sum.Packets++
	if s.sum.First.IsZero() || ci.Timestamp.Before(s.sum.First) {
		s.sum.First = ci.Timestamp
	}
	if ci.Timestamp.After(s.sum.Last) {
		s.sum.Last = ci.Timestamp
	}
	return rawPacket{data, ci, link}, true
}

// ipPacket strips the link layer: the IP packet inside a frame of the given
// link type, and its version (4 or 6). ok is false for anything else (ARP,
// a link type the package does not know, a frame too short).
func ipPacket(link layers.LinkType, data []byte) (ip []byte, version int, ok bool) {
	etherType := uint16(0)
	switch link {
	case layers.LinkTypeEthernet:
		if len(data) < 14 {
			return nil, 0, false
		}
		off, et := 12, binary.BigEndian.Uint16(data[12:])
		for (et == 0x8100 || et == 0x88a8 || et == 0x9100) && len(data) >= off+6 {
			off += 4
			et = binary.BigEndian.Uint16(data[off:])
		}
		etherType, ip = et, data[off+2:]
	case layers.LinkTypeLinuxSLL:
		if len(data) < 16 {
			return nil, 0, false
		}
		etherType, ip = binary.BigEndian.Uint16(data[14:]), data[16:]
	case layers.LinkTypeLinuxSLL2:
		if len(data) < 20 {
			return nil, 0, false
		}
		etherType, ip = binary.BigEndian.Uint16(data[0:]), data[20:]
	case layers.LinkTypeRaw, linkRawBSD, linkRawOpenBS, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		ip = data
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		// A 4-byte address family, in host order for NULL and network
		// order for LOOP, whose values differ between systems: the IP
		// version nibble says more.
		if len(data) < 4 {
			return nil, 0, false
		}
		ip = data[4:]
	default:
		return nil, 0, false
	}
	if len(ip) < 1 {
		return nil, 0, false
	}
	v := int(ip[0] >> 4)
	switch {
	case v == 4 && (etherType == 0 || etherType == 0x0800):
	case v == 6 && (etherType == 0 || etherType == 0x86dd):
	default:
		return nil, 0, false
	}
	return ip, v, true
}

// linkSupported reports whether ipPacket knows the link type.
func linkSupported(link layers.LinkType) bool {
	switch link {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2, layers.LinkTypeRaw,
		linkRawBSD, linkRawOpenBS, layers.LinkTypeIPv4, layers.LinkTypeIPv6, layers.LinkTypeNull, layers.LinkTypeLoop:
		return true
	}
	return false
}

// hdr is what a cheap look at the IP and TCP headers tells, enough to
// decide whether the packet needs a full decode.
type hdr struct {
	src, dst netip.AddrPort
	flags    capture.TCPFlags
	ttl      uint8
	v6       bool
	// slow: an IPv6 extension header sits before TCP; only a full
	// decode can tell what follows.
	slow     bool
	seq, ack uint32
	// payLen is the TCP payload's length as the IP header announces it.
	payLen int
}

// peekStatus is what peek found.
type peekStatus uint8

const (
	notTCP peekStatus = iota
	tcpCut            // TCP, but the header is cut before its flags
	tcpOK
)

// peek reads hdr from an IP packet.
func peek(ip []byte, version int) (h hdr, st peekStatus) {
	var tcp []byte
	if version == 4 {
		if len(ip) < 20 {
			return h, notTCP
		}
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 6 || ihl < 20 || binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
			return h, notTCP
		}
		if len(ip) < ihl+14 {
			return h, tcpCut
		}
		h.ttl = ip[8]
		tcp = ip[ihl:]
		src := netip.AddrFrom4([4]byte(ip[12:16]))
		dst := netip.AddrFrom4([4]byte(ip[16:20]))
		h.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:]))
		h.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:]))
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if tot == 0 { // segmentation offload: the capture has the real size
			tot = len(ip)
		}
		h.payLen = tot - ihl - int(tcp[12]>>4)*4
	} else {
		if len(ip) < 40 {
			return h, notTCP
		}
		h.v6, h.ttl = true, ip[7]
		switch ip[6] {
		case 6:
		case 0, 43, 60: // hop-by-hop, routing, destination options
			h.slow = true
			return h, tcpOK
		default:
			return h, notTCP
		}
		tcp = ip[40:]
		if len(tcp) < 14 {
			return h, tcpCut
		}
		src := netip.AddrFrom16([16]byte(ip[8:24]))
		dst := netip.AddrFrom16([16]byte(ip[24:40]))
		h.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:]))
		h.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:]))
		pl := int(binary.BigEndian.Uint16(ip[4:]))
		if pl == 0 { // a jumbogram, or segmentation offload
			pl = len(ip) - 40
		}
		h.payLen = pl - int(tcp[12]>>4)*4
	}
	h.payLen = max(h.payLen, 0)
	h.seq = binary.BigEndian.Uint32(tcp[4:])
	h.ack = binary.BigEndian.Uint32(tcp[8:])
	h.flags = capture.TCPFlags(binary.BigEndian.Uint16(tcp[12:]) & 0x1ff)
	return h, tcpOK
}

// decode fully decodes an IP packet with lab/capture: it is given as an
// Ethernet frame, so other link types get a synthetic Ethernet header.
// The returned Packet owns its memory. Frame and Payload are dropped: the
// diagnosis keeps packets only to print them.
func (s *source) decode(p rawPacket, ip []byte, version int) (capture.Packet, bool, error) {
	frame := p.data
	if p.link != layers.LinkTypeEthernet {
		s.eth = append(s.eth[:0], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00)
		if version == 6 {
			s.eth[12], s.eth[13] = 0x86, 0xdd
		}
		s.eth = append(s.eth, ip...)
		frame = s.eth
	}
	pkt, ok, err := capture.Decode(frame, p.ci)
	pkt.Frame, pkt.Payload = nil, nil
	return pkt, ok, err
}
