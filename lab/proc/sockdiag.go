package proc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// TCP states as include/net/tcp_states.h numbers them, for StateMask.
const (
	StateSynRecv  = 3
	StateFinWait1 = 4
	StateTimeWait = 6
)

// LiveStates is every state of a connection with work left in the
// kernel (TCP_ESTABLISHED to TCP_CLOSING): all but TIME-WAIT, the
// mini-socket a closed connection leaves, and LISTEN.
const LiveStates = (1<<12 - 1) &^ (1 | 1<<StateTimeWait | 1<<StateListen)

// StateMask is the sock_diag state filter for states.
func StateMask(states ...uint8) uint32 {
	var m uint32
	for _, s := range states {
		m |= 1 << s
	}
	return m
}

// TCPSockets lists the TCP sockets of the calling thread's network
// namespace in the states of mask, both families, through sock_diag
// (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY): the kernel filters by state
// and namespace, and a LISTEN-only request walks only the listening hash,
// where reading /proc/net/tcp walks every bucket of the machine-wide
// established hash (most of a readiness poll's CPU with two dozen labs at
// once). Equivalent to: ss -tan state listening.
//
// Call it on a thread inside the namespace (the netlink socket binds to the
// namespace it is opened in); Local, Remote and State are filled.
func TCPSockets(mask uint32) ([]Socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(fd)
	var out []Socket
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := dumpTCP(fd, family, mask)
		if err != nil {
			return nil, err
		}
		out = append(out, socks...)
	}
	return out, nil
}

// sizes of struct inet_diag_req_v2 and the start of struct inet_diag_msg
// (include/uapi/linux/inet_diag.h).
const (
	diagReqLen    = 56
	diagMsgMinLen = 56
)

func dumpTCP(fd int, family uint8, mask uint32) ([]Socket, error) {
	req := make([]byte, unix.SizeofNlMsghdr+diagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // sequence
	body := req[unix.SizeofNlMsghdr:]
	body[0], body[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(body[4:], mask)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag request: %w", err)
	}
	var out []Socket
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sock_diag reply: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("sock_diag reply: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(ne.Uint32(m.Data)); errno != 0 {
						return nil, fmt.Errorf("sock_diag: %w", unix.Errno(-errno))
					}
				}
				return out, nil
			}
			s, ok := parseDiagMsg(m.Data)
			if ok {
				out = append(out, s)
			}
		}
	}
}

// parseDiagMsg reads family, state and the socket's addresses from a
// struct inet_diag_msg (ports and addresses in network order).
func parseDiagMsg(b []byte) (Socket, bool) {
	if len(b) < diagMsgMinLen {
		return Socket{}, false
	}
	family, state := b[0], b[1]
	id := b[4:52]
	sport, dport := binary.BigEndian.Uint16(id[0:2]), binary.BigEndian.Uint16(id[2:4])
	var src, dst netip.Addr
	switch family {
	case unix.AF_INET:
		src, dst = netip.AddrFrom4([4]byte(id[4:8])), netip.AddrFrom4([4]byte(id[20:24]))
	case unix.AF_INET6:
		src, dst = netip.AddrFrom16([16]byte(id[4:20])), netip.AddrFrom16([16]byte(id[20:36]))
	default:
		return Socket{}, false
	}
	return Socket{Local: netip.AddrPortFrom(src, sport), Remote: netip.AddrPortFrom(dst, dport), State: state}, true
}
