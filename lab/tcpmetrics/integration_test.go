package tcpmetrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/netnsx"
)

const (
	clientAddr = "10.34.250.1"
	serverAddr = "10.34.250.2"
	ioTimeout  = 5 * time.Second
)

// TestIntegrationFastOpenCookie learns a real TFO cookie between two
// throwaway namespaces, reads it back with Get and Dump, and flushes it.
// Nothing is created or changed in the root namespace.
func TestIntegrationFastOpenCookie(t *testing.T) {
	labtest.NeedRoot(t, "creates network namespaces, a veth pair and sets per-netns sysctls")
	v := labtest.NewVethPair(t, labtest.End{Name: "tfoc0", Addrs: []netip.Prefix{netip.MustParsePrefix(clientAddr + "/24")}},
		labtest.End{Name: "tfos0", Addrs: []netip.Prefix{netip.MustParsePrefix(serverAddr + "/24")}})
	client, server := v.A, v.B
	for _, ns := range []netns.NsHandle{client, server} {
		labtest.WriteSysctl(t, ns, "net/ipv4/tcp_fastopen", "3")
	}

	dst := netip.MustParseAddr(serverAddr)
	if _, found, err := Get(client, dst); err != nil || found {
		t.Fatalf("fresh namespace: Get = found %v, err %v; want nothing cached", found, err)
	}

	port, serverErr := startTFOServer(t, server)
	if err := tfoExchange(client, port); err != nil {
		t.Fatalf("TFO exchange: %v", err)
	}
	if err := <-serverErr; err != nil {
		t.Fatalf("server: %v", err)
	}

	e, found, err := Get(client, dst)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !found {
		t.Fatalf("Get(%s): no entry after a TFO connect", dst)
	}
	t.Logf("client cache: %s", e)
	if n := len(e.FastOpenCookie); n < 4 || n > 16 {
		t.Errorf("cookie %x has %d bytes, want 4..16", e.FastOpenCookie, n)
	}
	if e.FastOpenMSS == 0 {
		t.Errorf("FastOpenMSS = 0, want the server's MSS")
	}
	if e.Src != netip.MustParseAddr(clientAddr) {
		t.Errorf("Src = %v, want %s", e.Src, clientAddr)
	}

	all, err := Dump(client)
	if err != nil {
		t.Fatalf("Dump: %v", err)
	}
	if d, ok := find(all, dst); !ok || !bytes.Equal(d.FastOpenCookie, e.FastOpenCookie) {
		t.Errorf("Dump = %v; want %s with cookie %x", all, dst, e.FastOpenCookie)
	}

	crossCheckWithIP(t, client, e)

	if err := Flush(client); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	all, err = Dump(client)
	if err != nil {
		t.Fatalf("Dump after Flush: %v", err)
	}
	if d, ok := find(all, dst); ok {
		t.Errorf("after Flush the dump still has %s", d)
	}
	if _, found, err := Get(client, dst); err != nil || found {
		t.Errorf("after Flush: Get = found %v, err %v; want not found", found, err)
	}
	if err := Flush(client); err != nil {
		t.Errorf("Flush of an empty cache: %v", err)
	}
}

func find(entries []Entry, dst netip.Addr) (Entry, bool) {
	for _, e := range entries {
		if e.Dst == dst {
			return e, true
		}
	}
	return Entry{}, false
}

// startTFOServer listens with TCP_FASTOPEN in ns and serves exactly one
// connection: read "ping", answer "pong". The channel yields the outcome.
func startTFOServer(t *testing.T, ns netns.NsHandle) (int, <-chan error) {
	t.Helper()
	var ln net.Listener
	err := netnsx.Do(ns, func() error {
		lc := labtest.FastOpenListenConfig(16)
		var err error
		ln, err = lc.Listen(context.Background(), "tcp4", net.JoinHostPort(serverAddr, "0"))
		return err
	})
	if err != nil {
		t.Fatalf("listen in server netns: %v", err)
	}
	t.Cleanup(func() { ln.Close() })

	done := make(chan error, 1)
	go func() {
		done <- func() error {
			if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(ioTimeout)); err != nil {
				return err
			}
			c, err := ln.Accept()
			if err != nil {
				return fmt.Errorf("accept: %w", err)
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
				return err
			}
			buf := make([]byte, 4)
			if _, err := readFull(c, buf); err != nil {
				return fmt.Errorf("read: %w", err)
			}
			if string(buf) != "ping" {
				return fmt.Errorf("read %q, want ping", buf)
			}
			if _, err := c.Write([]byte("pong")); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			return nil
		}()
	}()
	return ln.Addr().(*net.TCPAddr).Port, done
}

func readFull(c net.Conn, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// tfoExchange does one sendto(MSG_FASTOPEN) connect from ns to the server.
// With no cookie cached the kernel sends a SYN carrying a cookie request and
// learns the cookie from the SYN-ACK.
//
// The socket is non-blocking and every wait is a bounded poll: a blocking
// socket with SO_SNDTIMEO turns any signal during connect into EINTR (the
// kernel does not restart timed waits), which leaves a half-done connect.
func tfoExchange(ns netns.NsHandle, port int) error {
	return netnsx.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		// Abort with RST on close: a graceful close would make the kernel
		// update the metrics entry later (TIME_WAIT / LAST_ACK), racing
		// with the Flush assertion.
		if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
			return fmt.Errorf("SO_LINGER: %w", err)
		}

		sa := &unix.SockaddrInet4{Port: port, Addr: netip.MustParseAddr(serverAddr).As4()}
		err = unix.Sendto(fd, []byte("ping"), unix.MSG_FASTOPEN, sa)
		sent := err == nil // only if a cookie was already cached
		if err != nil && !errors.Is(err, unix.EINPROGRESS) {
			return fmt.Errorf("sendto MSG_FASTOPEN: %w", err)
		}
		deadline := time.Now().Add(ioTimeout)
		if err := waitFD(fd, unix.POLLOUT, deadline); err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		if soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			return fmt.Errorf("connect: SO_ERROR %v, %v", syscall.Errno(soerr), err)
		}
		if !sent {
			if _, err := unix.Write(fd, []byte("ping")); err != nil {
				return fmt.Errorf("write after connect: %w", err)
			}
		}
		var got []byte
		buf := make([]byte, 16)
		for len(got) < 4 {
			if err := waitFD(fd, unix.POLLIN, deadline); err != nil {
				return fmt.Errorf("wait for reply: %w", err)
			}
			n, err := unix.Read(fd, buf)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read reply: %w", err)
			}
			if n == 0 {
				return fmt.Errorf("server closed after %q", got)
			}
			got = append(got, buf[:n]...)
		}
		if string(got) != "pong" {
			return fmt.Errorf("reply %q, want pong", got)
		}
		return nil
	})
}

// waitFD polls fd for events until deadline, retrying on EINTR.
func waitFD(fd int, events int16, deadline time.Time) error {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("timed out after %v", ioTimeout)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			return nil // errors surface through SO_ERROR / read
		}
	}
}

// crossCheckWithIP compares e with what ip(8) prints for the same namespace,
// when ip is installed. Age changes between the two reads, so only the
// stable fields are compared.
func crossCheckWithIP(t *testing.T, ns netns.NsHandle, e Entry) {
	t.Helper()
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Log("ip(8) not installed; skipping the cross-check")
		return
	}
	var out []byte
	err = netnsx.Do(ns, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		var err error
		out, err = exec.CommandContext(ctx, ipPath, "tcp_metrics", "show", e.Dst.String()).Output()
		return err
	})
	if err != nil {
		t.Fatalf("ip tcp_metrics show: %v", err)
	}
	line := strings.TrimSpace(string(out))
	t.Logf("ip(8) says:   %s", line)
	for _, want := range []string{
		e.Dst.String() + " age ",
		fmt.Sprintf(" fo_mss %d", e.FastOpenMSS),
		fmt.Sprintf(" fo_cookie %x", e.FastOpenCookie),
		" source " + e.Src.String(),
	} {
		if !strings.Contains(line, want) {
			t.Errorf("ip(8) line %q lacks %q (ours: %q)", line, want, e.String())
		}
	}
	// Everything after the age field must match exactly.
	_, ipRest, _ := strings.Cut(line, "sec ")
	_, ourRest, _ := strings.Cut(e.String(), "sec ")
	if ipRest != ourRest {
		t.Errorf("after age: ip(8) %q, ours %q", ipRest, ourRest)
	}
}
