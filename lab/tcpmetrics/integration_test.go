package tcpmetrics

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/netnsx"
	"github.com/tfolab/tfolab/lab/tfo"
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

	tfoExchange(t, client, server)

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

// tfoExchange serves one "ping" with "pong" from a TCP_FASTOPEN listener
// in server, and sends it with one sendto(MSG_FASTOPEN) connect from
// client (lab/tfo). With no cookie cached the kernel sends a SYN carrying
// a cookie request and learns the cookie from the SYN-ACK. The client
// aborts with RST on close: a graceful close would make the kernel update
// the metrics entry later (TIME_WAIT / LAST_ACK), racing with the Flush
// assertion.
func tfoExchange(t *testing.T, client, server netns.NsHandle) {
	t.Helper()
	in := func(ns netns.NsHandle) tfo.Runner {
		return func(f func() error) error { return netnsx.Do(ns, f) }
	}
	srv, err := tfo.Listen(tfo.ServerOptions{Addr: netip.AddrPortFrom(netip.MustParseAddr(serverAddr), 0), Run: in(server), FastOpenQueue: 16, Reply: []byte("pong")})
	if err != nil {
		t.Fatalf("listen in server netns: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	r := tfo.Request(ctx, tfo.DialOptions{Mode: tfo.ModeSendto, Run: in(client), Abort: true}, srv.Addr(), []byte("ping\n"))
	if r.Err != nil || string(r.Response) != "pong" {
		t.Fatalf("TFO exchange: reply %q, %v", r.Response, r.Err)
	}
	if a := srv.Accepted(); len(a) != 1 || a[0].Err != nil || string(a[0].Request) != "ping\n" {
		t.Fatalf("server: accepted %+v, want one ping", a)
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
