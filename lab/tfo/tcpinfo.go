package tfo

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tcpiOptSynData is TCPI_OPT_SYN_DATA from include/uapi/linux/tcp.h: set in
// tcpi_options when tp->syn_data_acked, i.e. on an active opener when the
// peer's SYN-ACK acknowledged the data in our SYN, and on a passive child
// when the SYN's data was accepted (tcp_fastopen_add_skb).
const tcpiOptSynData = 0x20

// Offsets into struct tcp_info (include/uapi/linux/tcp.h). The layout is
// append-only ABI; the first 104 bytes have not moved since Linux 2.6.
const (
	tcpiOffState        = 0   // __u8 tcpi_state
	tcpiOffOptions      = 5   // __u8 tcpi_options
	tcpiOffFlags7       = 7   // delivery_rate_app_limited:1, fastopen_client_fail:2
	tcpiOffRTT          = 68  // __u32 tcpi_rtt (usec, smoothed)
	tcpiOffTotalRetrans = 100 // __u32 tcpi_total_retrans
	tcpiMinLen          = 104 // bytes needed to hold everything above
)

// TCP states as reported in tcpi_state (include/net/tcp_states.h).
const (
	tcpSynSent = 2
	tcpClose   = 7
)

// ClientFail is tcpi_fastopen_client_fail: why an active TFO attempt did not
// carry its data through (enum tcp_fastopen_client_fail in uapi/linux/tcp.h).
type ClientFail uint8

const (
	// ClientFailUnspec (TFO_STATUS_UNSPEC): no failure recorded.
	ClientFailUnspec ClientFail = iota
	// ClientFailNoCookie (TFO_COOKIE_UNAVAILABLE): no cookie was cached for
	// the destination, so the SYN only asked for one and carried no data.
	ClientFailNoCookie
	// ClientFailDataNotAcked (TFO_DATA_NOT_ACKED): the SYN carried data but
	// the SYN-ACK did not acknowledge it (e.g. the server rejected the cookie).
	ClientFailDataNotAcked
	// ClientFailSynRetransmitted (TFO_SYN_RETRANSMITTED): the data was not
	// acknowledged and the SYN had been retransmitted.
	ClientFailSynRetransmitted
)

// String returns a short human-readable name of the failure reason.
func (c ClientFail) String() string {
	switch c {
	case ClientFailUnspec:
		return "unspec"
	case ClientFailNoCookie:
		return "cookie unavailable (no_cookie)"
	case ClientFailDataNotAcked:
		return "data not acked (syn_data not acked)"
	case ClientFailSynRetransmitted:
		return "syn retransmitted"
	}
	return fmt.Sprintf("ClientFail(%d)", uint8(c))
}

// tcpInfo holds the few tcp_info fields this package uses.
type tcpInfo struct {
	State        uint8
	Options      uint8
	ClientFail   ClientFail
	RTT          time.Duration
	TotalRetrans uint32
	// Complete is false when the buffer was too short for every field above;
	// fields the buffer did not cover are zero.
	Complete bool
}

// SynData reports tcpi_options & TCPI_OPT_SYN_DATA.
func (ti tcpInfo) SynData() bool { return ti.Options&tcpiOptSynData != 0 }

// parseTCPInfo decodes a raw struct tcp_info as returned by
// getsockopt(IPPROTO_TCP, TCP_INFO). It never panics: a short buffer yields
// zero values for the fields it does not cover.
func parseTCPInfo(b []byte) tcpInfo {
	var ti tcpInfo
	if len(b) > tcpiOffState {
		ti.State = b[tcpiOffState]
	}
	if len(b) > tcpiOffOptions {
		ti.Options = b[tcpiOffOptions]
	}
	if len(b) > tcpiOffFlags7 {
		ti.ClientFail = ClientFail((b[tcpiOffFlags7] >> 1) & 0x3)
	}
	if len(b) >= tcpiOffRTT+4 {
		ti.RTT = time.Duration(binary.NativeEndian.Uint32(b[tcpiOffRTT:])) * time.Microsecond
	}
	if len(b) >= tcpiOffTotalRetrans+4 {
		ti.TotalRetrans = binary.NativeEndian.Uint32(b[tcpiOffTotalRetrans:])
	}
	ti.Complete = len(b) >= tcpiMinLen
	return ti
}

// getsockoptBytes is getsockopt(2) into a caller-supplied byte buffer; it
// returns the prefix the kernel filled. (unix.GetsockoptString would cut the
// binary value at its first NUL byte.)
func getsockoptBytes(fd uintptr, level, name int, buf []byte) ([]byte, error) {
	if len(buf) == 0 {
		return nil, unix.EINVAL
	}
	l := uint32(len(buf))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(name),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return nil, errno
	}
	if int(l) > len(buf) {
		l = uint32(len(buf))
	}
	return buf[:l], nil
}

// readTCPInfo fetches and decodes tcp_info for a TCP socket.
func readTCPInfo(fd uintptr) (tcpInfo, error) {
	var buf [512]byte
	b, err := getsockoptBytes(fd, unix.IPPROTO_TCP, unix.TCP_INFO, buf[:])
	if err != nil {
		return tcpInfo{}, err
	}
	ti := parseTCPInfo(b)
	if !ti.Complete {
		return ti, fmt.Errorf("tcp_info: kernel returned %d bytes, need %d", len(b), tcpiMinLen)
	}
	return ti, nil
}
