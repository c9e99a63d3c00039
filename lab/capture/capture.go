// Package capture records TCP traffic on an interface inside a network
// namespace with a pure-Go AF_PACKET socket (no libpcap, no cgo). It keeps
// the decoded segments in memory for test assertions, writes them as a
// classic pcap file for tcpdump and Wireshark, and decodes the TCP Fast Open
// option (RFC 7413). Linux only.
//
// # Why a plain packet socket and not afpacket.TPacket
//
// afpacket.TPacket reads an mmap'ed ring and waits in unix.Poll with a fixed
// timeout on a blocked OS thread. Nothing can wake that poll early, and Close
// unmaps the ring under a reader that may still be polling, so a clean stop
// costs up to one poll timeout and idle captures spin on the timeout. With
// TPACKET_V3 a frame is not even visible until its block retires (another
// timeout). A non-blocking socket read with recvmsg waits in Go's
// netpoller: an idle reader costs nothing, and Close wakes it at once. The
// socket is this package's own (socket.go) rather than
// pcapgo.EthernetHandle, so that its receive buffer can be sized and its
// filter attached before it is bound.
//
// # Losing nothing
//
// The socket's receive buffer is what holds frames while the reader waits
// for a CPU; when it is full the kernel drops frames and counts them
// (tp_drops). It is raised to DefaultReceiveBuffer with SO_RCVBUFFORCE, so
// that bursts on a loaded machine fit. Drops remain possible in principle;
// they are never silent: Complete returns an error wrapping
// ErrFramesDropped when any frame the filter accepted was lost, and a
// caller whose verdict rests on the packets must check it.
//
// # Draining on Stop
//
// Closing the socket discards whatever is still queued on it, and the
// reader, parked in the netpoller, cannot tell "queue empty" from "nothing
// yet". Stop therefore does not guess with timeouts; it counts. The
// kernel's PACKET_STATISTICS counter tp_packets is bumped under the
// receive-queue lock in the same step that queues a frame (drops are
// counted apart), so it says exactly how many frames were ever queued.
// Stop first swaps in a reject-all filter, so the count stops moving, reads
// the counters, and waits until the reader has dequeued that many frames.
// A frame the kernel handed to the socket before Stop was called is
// therefore never lost; that includes every frame whose effect the caller
// could have seen, since the kernel feeds packet sockets before the driver
// on transmit and before IP on receive. Stop returns then. The close itself
// costs the kernel an RCU grace period and runs in the background. An idle
// Stop takes tens of microseconds.
//
// # Timestamps
//
// Frame times are the kernel's (SO_TIMESTAMPNS: stamped when the frame was
// received or handed to the driver). Only if the kernel sends no timestamp
// is the time the frame was read used instead.
package capture

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"

	"github.com/tfolab/tfolab/lab/netnsx"
)

// DefaultSnapLen is the snap length used when Options.SnapLen is 0; it is
// libpcap's maximum, enough for any segmentation-offload super-frame.
const DefaultSnapLen = 262144

// drainGuard bounds Stop's wait for frames the kernel reports queued. The
// count is exact, so this only fires if the reader is stuck or the kernel
// contradicts itself; Stop then reports the shortfall as an error.
const drainGuard = 2 * time.Second

// maxReadErrors is how many consecutive read errors end the reader. Single
// errors happen (ENETDOWN when the link goes down is reported once).
const maxReadErrors = 100

// testHookRead, when set by a test, runs before every read; blocking in it
// lets frames pile up in the socket queue.
var testHookRead atomic.Pointer[func()]

// Options configure a capture.
type Options struct {
	// Link is a label copied into every Packet, e.g. "client-side".
	Link string
	// Filter is a classic BPF program run by the kernel; nil selects
	// DefaultFilter (TCP over IPv4 or IPv6).
	Filter []bpf.RawInstruction
	// SnapLen is the most bytes kept of each frame; 0 means DefaultSnapLen.
	SnapLen int
	// ReceiveBuffer is the socket's receive buffer in bytes, the room for
	// frames the reader has not taken yet; 0 means DefaultReceiveBuffer.
	ReceiveBuffer int
}

// frame is one raw frame as read from the socket.
type frame struct {
	ci   gopacket.CaptureInfo
	data []byte
}

// Capture is a running (or stopped) capture on one interface. Its methods
// are safe for concurrent use.
type Capture struct {
	link    string
	ifname  string
	ifindex int
	snapLen int
	handle  *packetSocket

	mu         sync.Mutex
	cond       *sync.Cond // broadcast when dequeued grows or the reader ends
	frames     []frame
	packets    []Packet
	dequeued   uint64 // frames taken off the socket, kept or not
	readerDone bool
	// drainExpired ends Stop's wait after drainGuard.
	drainExpired bool
	errs         []error // read and decode errors, for Err

	statsMu  sync.Mutex
	passed   uint64 // cumulative tp_packets: frames the filter accepted (queued or dropped)
	dropped  uint64 // cumulative tp_drops: accepted but lost to a full receive buffer
	statsErr error
	frozen   bool // set by Stop: the socket is drained or closed, the counters final

	closing  atomic.Bool // set just before Close, so the reader treats its error as the end
	stopOnce sync.Once
	stopErr  error
	done     chan struct{} // closed when the reader goroutine returns, after the socket closed
}

// sizeOption is a size from Options: v, or def when v is 0; a negative v
// is an error naming what it is.
func sizeOption(ifname, what string, v, def int) (int, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0:
		return 0, fmt.Errorf("capture on %s: negative %s %d", ifname, what, v)
	}
	return v, nil
}

// Start opens an AF_PACKET socket on ifname inside ns and starts reading it
// in the background. Frames in both directions are kept (AF_PACKET sees
// outgoing frames as PACKET_OUTGOING). Call Stop when done.
func Start(ns netns.NsHandle, ifname string, opts Options) (*Capture, error) {
	snapLen, err := sizeOption(ifname, "snap length", opts.SnapLen, DefaultSnapLen)
	if err != nil {
		return nil, err
	}
	rcvBuf, err := sizeOption(ifname, "receive buffer", opts.ReceiveBuffer, DefaultReceiveBuffer)
	if err != nil {
		return nil, err
	}
	filter := opts.Filter
	if filter == nil {
		if filter, err = DefaultFilter(uint32(snapLen)); err != nil {
			return nil, fmt.Errorf("capture on %s: %w", ifname, err)
		}
	}
	c := &Capture{
		link:    opts.Link,
		ifname:  ifname,
		snapLen: snapLen,
		done:    make(chan struct{}),
	}
	c.cond = sync.NewCond(&c.mu)

	// Interface lookup and socket creation must both happen on a thread
	// inside ns; the socket stays bound to ns and is read from anywhere.
	err = netnsx.Do(ns, func() error {
		iface, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("look up interface: %w", err)
		}
		c.ifindex = iface.Index
		c.handle, err = openPacketSocket(iface.Index, snapLen, filter, rcvBuf)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", ifname, err)
	}
	go c.read()
	return c, nil
}

// read runs in its own goroutine until the socket is closed.
func (c *Capture) read() {
	defer close(c.done)
	var fatal error
	for failures := 0; ; {
		if hook := testHookRead.Load(); hook != nil {
			(*hook)()
		}
		data, ci, err := c.handle.read()
		if err != nil {
			if c.closing.Load() {
				break
			}
			if failures++; failures >= maxReadErrors {
				fatal = fmt.Errorf("capture on %s: giving up after %d read errors, last: %w", c.ifname, failures, err)
				break
			}
			time.Sleep(time.Millisecond) // don't spin on a persistent error
			continue
		}
		failures = 0
		c.add(data, ci)
	}
	c.mu.Lock()
	c.readerDone = true
	if fatal != nil {
		c.errs = append(c.errs, fatal)
	}
	c.mu.Unlock()
	c.cond.Broadcast()
}

// add records one frame. The socket was bound to the interface after its
// filter was attached, so every frame on it passed the filter; the
// interface check only guards against a kernel that reports otherwise.
func (c *Capture) add(data []byte, ci gopacket.CaptureInfo) {
	keep := ci.InterfaceIndex == c.ifindex
	var (
		p      Packet
		ok     bool
		decErr error
	)
	if keep {
		p, ok, decErr = decode(data, ci, c.link)
	}

	c.mu.Lock()
	c.dequeued++
	if keep {
		c.frames = append(c.frames, frame{ci: ci, data: data})
		if ok {
			c.packets = append(c.packets, p)
		}
		if decErr != nil && len(c.errs) < 16 {
			c.errs = append(c.errs, fmt.Errorf("capture on %s: frame %d: %w", c.ifname, len(c.frames), decErr))
		}
	} else if len(c.errs) < 16 {
		c.errs = append(c.errs, fmt.Errorf("capture on %s: frame from ifindex %d on a socket bound to %d", c.ifname, ci.InterfaceIndex, c.ifindex))
	}
	c.mu.Unlock()
	c.cond.Broadcast()
}

// Stop ends the capture. It returns once every frame the kernel queued
// before Stop was called has been read; it never waits for a timeout. The
// socket, which by then accepts nothing, is closed in the background.
// Calling Stop again returns the first call's result.
func (c *Capture) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Capture) stop() error {
	var errs []error
	// A filter that rejects everything freezes the queue: after it is in
	// place no frame is queued, so the kernel's count stops moving.
	rejectAll, err := bpf.RetConstant{Val: 0}.Assemble()
	if err == nil {
		err = c.handle.setFilter([]bpf.RawInstruction{rejectAll})
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("freeze capture on %s: %w", c.ifname, err))
	}

	guard := time.AfterFunc(drainGuard, func() {
		c.mu.Lock()
		c.drainExpired = true
		c.mu.Unlock()
		c.cond.Broadcast()
	})
	defer guard.Stop()
	// Read the count, wait until the reader has dequeued that many frames,
	// and repeat until the count holds still: a frame already past the old
	// filter on another CPU may still be counted after the swap.
	for prev := uint64(0); ; {
		c.statsMu.Lock()
		err := c.pollStatsLocked()
		target := c.passed - c.dropped // frames that reached the queue
		c.statsMu.Unlock()
		if err != nil {
			errs = append(errs, err)
			break
		}
		if target == prev {
			break
		}
		c.mu.Lock()
		for c.dequeued < target && !c.readerDone && !c.drainExpired {
			c.cond.Wait()
		}
		got, expired := c.dequeued, c.drainExpired
		c.mu.Unlock()
		if got < target {
			errs = append(errs, fmt.Errorf("capture on %s: drained %d of %d queued frames", c.ifname, got, target))
			break
		}
		if expired { // only if the freeze failed and traffic keeps coming
			break
		}
		prev = target
	}

	c.statsMu.Lock()
	c.frozen = true
	c.statsMu.Unlock()
	// Closing a packet socket waits for an RCU grace period in the kernel
	// (synchronize_net in packet_release): 3 to 270 ms measured here. The
	// socket is drained and rejects everything, so nothing is lost by
	// letting a goroutine pay for it; the reader ends when it is closed.
	c.closing.Store(true)
	go func() {
		if err := c.handle.close(); err != nil {
			c.mu.Lock()
			c.errs = append(c.errs, fmt.Errorf("close capture on %s: %w", c.ifname, err))
			c.mu.Unlock()
		}
	}()
	return errors.Join(errs...)
}

// pollStatsLocked folds the kernel's counters into the totals. The kernel
// resets them on every read, so all reads go through here.
func (c *Capture) pollStatsLocked() error {
	if c.frozen {
		return nil
	}
	s, err := c.handle.stats()
	if err != nil {
		c.statsErr = fmt.Errorf("read PACKET_STATISTICS on %s: %w", c.ifname, err)
		return c.statsErr
	}
	c.passed += uint64(s.Packets)
	c.dropped += uint64(s.Drops)
	return nil
}

// Stats returns counters since Start. received counts the frames the
// filter accepted (tcpdump's "received by filter"), dropped those of them the
// kernel lost because the socket's receive buffer was full. After Stop every
// received frame that was not dropped is kept: Frames() == received-dropped,
// so dropped == 0 means Packets is complete.
func (c *Capture) Stats() (received, dropped uint64) {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	_ = c.pollStatsLocked() // on failure keep the last totals; Err reports it
	return c.passed, c.dropped
}

// ErrFramesDropped is wrapped by Complete's error when the kernel lost
// frames the filter had accepted.
var ErrFramesDropped = errors.New("capture incomplete: the kernel dropped frames")

// Complete reports whether the capture holds every frame the filter
// accepted: nil if so, an error wrapping ErrFramesDropped (with the counts)
// if the kernel dropped any because the receive buffer was full, or the
// error that kept the counters from being read. Call it after Stop; before,
// it speaks for the frames so far. An observation whose verdict rests on
// packets (a SYN that must be absent, a count of retransmissions) is only
// evidence when Complete returns nil. Stop itself does not fail on drops:
// it is also a cleanup, and most callers need the packets either way.
func (c *Capture) Complete() error {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	if err := c.pollStatsLocked(); err != nil {
		return err
	}
	if c.dropped > 0 {
		return fmt.Errorf("capture on %s: %w: %d of %d accepted frames lost (receive buffer %d bytes)",
			c.ifname, ErrFramesDropped, c.dropped, c.passed, c.handle.rcvBuf)
	}
	return nil
}

// Packets returns the TCP segments decoded so far, in capture order. It is
// safe to call while the capture runs; the returned slice is a snapshot and
// the byte slices inside must be treated as read-only.
func (c *Capture) Packets() []Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Packet(nil), c.packets...)
}

// Frames returns how many raw frames have been kept (TCP or not; with the
// default filter all are TCP).
func (c *Capture) Frames() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

// Err reports problems that did not stop Start: a reader that gave up, frames
// whose TCP header could not be decoded, counters that could not be read.
// nil means every kept frame is accounted for.
func (c *Capture) Err() error {
	c.mu.Lock()
	errs := append([]error(nil), c.errs...)
	c.mu.Unlock()
	c.statsMu.Lock()
	if c.statsErr != nil {
		errs = append(errs, c.statsErr)
	}
	c.statsMu.Unlock()
	return errors.Join(errs...)
}

// Link returns the label from Options.Link.
func (c *Capture) Link() string { return c.link }

// WritePcap writes every frame kept so far to path as a classic
// (microsecond) pcap file with link type Ethernet and the original
// timestamps. It may be called while the capture runs.
func (c *Capture) WritePcap(path string) error {
	c.mu.Lock()
	frames := append([]frame(nil), c.frames...)
	c.mu.Unlock()
	if err := writePcap(path, uint32(c.snapLen), frames); err != nil {
		return fmt.Errorf("write pcap of %s: %w", c.ifname, err)
	}
	return nil
}
