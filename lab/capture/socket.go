package capture

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// DefaultReceiveBuffer is the receive buffer asked for when
// Options.ReceiveBuffer is 0. The kernel's default (net.core.rmem_default,
// 208 KiB here) holds a few hundred small frames: a burst of 1000 segments
// arriving while the reader waited for a CPU lost 7 to 517 frames. The
// value is a limit, not an allocation: memory is only used by frames
// actually queued.
const DefaultReceiveBuffer = 16 << 20

// packetSocket is an AF_PACKET socket read through Go's netpoller, like
// pcapgo.EthernetHandle, which this package used before: that handle hides
// its file descriptor, so its receive buffer could not be sized, and it
// binds before its filter is attached, so frames of any kind slipped in
// until it was. Here every option is set before bind(2), and a socket
// opened with protocol 0 receives nothing until it is bound.
type packetSocket struct {
	file    *os.File
	raw     syscall.RawConn
	ifindex int
	buf     []byte
	oob     []byte
	rcvBuf  int // SO_RCVBUF as the kernel reports it (twice what was set)
}

// openPacketSocket opens a socket for ifindex in the calling thread's
// network namespace, with filter attached and a receive buffer of rcvBuf
// bytes (SO_RCVBUFFORCE as root; without CAP_NET_ADMIN SO_RCVBUF, which the
// kernel caps at net.core.rmem_max).
func openPacketSocket(ifindex, snapLen int, filter []bpf.RawInstruction, rcvBuf int) (_ *packetSocket, err error) {
	if len(filter) == 0 {
		return nil, errors.New("open packet socket: empty filter")
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open packet socket: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		if !errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("set SO_RCVBUFFORCE %d: %w", rcvBuf, err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf); err != nil {
			return nil, fmt.Errorf("set SO_RCVBUF %d: %w", rcvBuf, err)
		}
	}
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return nil, fmt.Errorf("read SO_RCVBUF: %w", err)
	}
	// PACKET_AUXDATA carries the frame's length before the snap length cut
	// it; SO_TIMESTAMPNS the kernel's receive (or transmit) time.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return nil, fmt.Errorf("set PACKET_AUXDATA: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return nil, fmt.Errorf("set SO_TIMESTAMPNS: %w", err)
	}
	if err := attachFilter(fd, filter); err != nil {
		return nil, err
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("bind packet socket to ifindex %d: %w", ifindex, err)
	}
	// A non-blocking descriptor makes os.NewFile register it with the
	// netpoller: a waiting reader parks without a thread, and Close wakes it.
	file := os.NewFile(uintptr(fd), fmt.Sprintf("packet socket on ifindex %d", ifindex))
	raw, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	return &packetSocket{
		file:    file,
		raw:     raw,
		ifindex: ifindex,
		buf:     make([]byte, snapLen),
		oob:     make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.TpacketAuxdata{})))+unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))),
		rcvBuf:  got,
	}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func attachFilter(fd int, filter []bpf.RawInstruction) error {
	prog := make([]unix.SockFilter, len(filter))
	for i, ins := range filter {
		prog[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	fprog := &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, fprog); err != nil {
		return fmt.Errorf("attach BPF filter: %w", err)
	}
	return nil
}

// setFilter replaces the socket's filter.
func (s *packetSocket) setFilter(filter []bpf.RawInstruction) error {
	var err error
	if cerr := s.raw.Control(func(fd uintptr) { err = attachFilter(int(fd), filter) }); cerr != nil {
		return cerr
	}
	return err
}

// stats reads PACKET_STATISTICS, which the kernel resets on every read.
func (s *packetSocket) stats() (*unix.TpacketStats, error) {
	var (
		st  *unix.TpacketStats
		err error
	)
	if cerr := s.raw.Control(func(fd uintptr) {
		st, err = unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS)
	}); cerr != nil {
		return nil, cerr
	}
	return st, err
}

// read waits for the next frame and returns a copy of it. It is not safe
// for concurrent use (one reader goroutine owns the buffers).
func (s *packetSocket) read() ([]byte, gopacket.CaptureInfo, error) {
	var (
		n, oobn int
		from    unix.Sockaddr
		rerr    error
	)
	err := s.raw.Read(func(fd uintptr) bool {
		// MSG_TRUNC: n is the frame's length even when the buffer cut it.
		n, oobn, _, from, rerr = unix.Recvmsg(int(fd), s.buf, s.oob, unix.MSG_TRUNC)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return nil, gopacket.CaptureInfo{}, err
	}
	if rerr != nil {
		return nil, gopacket.CaptureInfo{}, fmt.Errorf("recvmsg: %w", rerr)
	}
	ci := gopacket.CaptureInfo{CaptureLength: min(n, len(s.buf)), Length: n, InterfaceIndex: s.ifindex}
	if ll, ok := from.(*unix.SockaddrLinklayer); ok {
		ci.InterfaceIndex = ll.Ifindex
	}
	if msgs, err := unix.ParseSocketControlMessage(s.oob[:oobn]); err == nil {
		for _, m := range msgs {
			switch {
			case m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})):
				aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
				ci.Length = int(aux.Len)
			case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})):
				ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
				ci.Timestamp = time.Unix(ts.Unix())
			}
		}
	}
	if ci.Timestamp.IsZero() {
		ci.Timestamp = time.Now() // the kernel sent no stamp; second best
	}
	data := make([]byte, ci.CaptureLength)
	copy(data, s.buf)
	return data, ci, nil
}

func (s *packetSocket) close() error { return s.file.Close() }
