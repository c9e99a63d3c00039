package scenarios

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/observation"
)

// Pure logic of the peers: no root, no network.

// needsKind is a service kind that needs a program.
type needsKind struct {
	Listener
	prog Program
}

func (k needsKind) Requires() []Program { return []Program{k.prog} }

func TestCheckProgramsSkipsOrFailsUnderCI(t *testing.T) {
	s := PeerCookieThenData(peerPairs()[0], 4)
	missing := Program{"tfolab-no-such-package", "/nonexistent/tfolab-peer"}
	s.Services[0].Kind = needsKind{prog: missing}

	t.Setenv("CI", "")
	skip, err := CheckPrograms(s)
	if err != nil || !strings.Contains(skip, "/nonexistent/tfolab-peer (Debian package tfolab-no-such-package)") || !strings.Contains(skip, "make deps") {
		t.Errorf("developer machine: skip %q, err %v; want a skip naming the program and make deps", skip, err)
	}
	t.Setenv("CI", "true")
	skip, err = CheckPrograms(s)
	if err == nil || skip != "" || !strings.Contains(err.Error(), "CI=true") {
		t.Errorf("under CI: skip %q, err %v; want an error", skip, err)
	}

	s.Services[0].Kind = needsKind{prog: Program{"dash", "/bin/sh"}}
	s.Clients[0].Kind = LabClient{}
	s.Expect = nil
	if skip, err := CheckPrograms(s); skip != "" || err != nil {
		t.Errorf("everything installed: skip %q, err %v", skip, err)
	}
}

func TestProgramsOfThePeersCatalogue(t *testing.T) {
	for _, s := range Peers() {
		if !s.HasLabel("peers") {
			t.Errorf("%s: no peers label", s.Name)
		}
		progs := Programs(s)
		// The middlebox variants leave the tshark check to cookie-then-data.
		variant := (strings.Contains(s.Name, "/drop-syn-data/") || strings.Contains(s.Name, "/strip-tfo-option/")) &&
			!strings.HasPrefix(s.Name, "peers/haproxy-backend/") && !strings.HasPrefix(s.Name, "peers/scapy-probe/")
		if !variant && !slices.Contains(progs, ProgTshark) {
			t.Errorf("%s: does not require tshark, which its dissector check runs", s.Name)
		}
		if strings.HasPrefix(s.Name, "peers/scapy-probe/") && !slices.Contains(progs, ProgScapy) {
			t.Errorf("%s: does not require python3-scapy", s.Name)
		}
		found := false
		for _, m := range s.Expect {
			found = found || assertions.NameOf(m) == "tshark agrees"
		}
		if found == variant {
			t.Errorf("%s: tshark check %t, want %t", s.Name, found, !variant)
		}
	}
	s := PeerCookieThenData(peerPairs()[4], 4) // the Python client
	if progs := Programs(s); len(progs) < 2 || progs[0] != ProgPython || !strings.HasSuffix(progs[1].Path, DefaultPythonScript) {
		t.Errorf("python pair requires %v", progs)
	}
}

func TestParseAccessLine(t *testing.T) {
	for _, tc := range []struct {
		line, remote, request string
		at                    time.Time
	}{
		{`tfolab 10.34.1.2 41252 1764622522.372 "GET /body.bin HTTP/1.1"`, "10.34.1.2:41252", "GET /body.bin HTTP/1.1", time.Unix(1764622522, 372e6)},
		{`tfolab fd34:1::2 7080 1764622522.5 "GET / HTTP/1.1" 200 3088 -:-`, "[fd34:1::2]:7080", "GET / HTTP/1.1", time.Unix(1764622522, 500e6)},
	} {
		a, ok := parseAccessLine(tc.line)
		if !ok || a.Remote.String() != tc.remote || string(a.Request) != tc.request || !a.Time.Equal(tc.at) {
			t.Errorf("%q: %+v ok=%t", tc.line, a, ok)
		}
	}
	for _, bad := range []string{"", "[NOTICE] haproxy version is 2.6.12", `tfolab nonsense 1 2 "x"`} {
		if _, ok := parseAccessLine(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestCurlWriteLine(t *testing.T) {
	m := reCurlWrite.FindStringSubmatch("\ntfolab-curl 7 000 10.34.1.2 41264 0.000000 0.000000 Failed to connect to 10.34.2.2 port 7000 after 0 ms: Connection refused\n")
	if m == nil || m[1] != "7" || m[4] != "41264" || curlErrno(7, m[7]) != "ECONNREFUSED" {
		t.Fatalf("parsed %q", m)
	}
	m = reCurlWrite.FindStringSubmatch("tfolab-curl 0 200 fd34:1::2 5000 0.000064 0.000258 \n")
	if m == nil || m[3] != "fd34:1::2" || secs(m[6]) != 258*time.Microsecond {
		t.Fatalf("parsed %q", m)
	}
	if m := rePythonErrno.FindStringSubmatch("python client exited 1: ConnectionRefusedError: [Errno 111] Connection refused"); m == nil || m[1] != "111" {
		t.Errorf("python errno: %q", m)
	}
	if got := len(Curl{}.Request()); got != 73 {
		t.Errorf("curl's request is %d bytes, the scenarios expect the 73 measured", got)
	}
}

func TestPeerConfigs(t *testing.T) {
	v4 := netip.MustParseAddrPort("10.34.2.2:7000")
	v6 := netip.MustParseAddrPort("[fd34:2::2]:7000")
	if c := (Nginx{FastOpen: 16}).config(v6); !strings.Contains(c, "listen [fd34:2::2]:7000 fastopen=16;") {
		t.Errorf("nginx config:\n%s", c)
	}
	if c := (Nginx{}).config(v4); strings.Contains(c, "fastopen") {
		t.Errorf("nginx without FastOpen still has fastopen=:\n%s", c)
	}
	if c := (HAProxy{}).config(v4, netip.AddrPort{}); !strings.Contains(c, "bind 10.34.2.2:7000 tfo\n") || strings.Contains(c, "resolvers") {
		t.Errorf("haproxy server config:\n%s", c)
	}
	if c := (HAProxy{NoTFO: true}).config(v4, netip.AddrPort{}); !strings.Contains(c, "bind 10.34.2.2:7000\n") {
		t.Errorf("haproxy without tfo:\n%s", c)
	}
	proxy := HAProxy{Backend: &HAProxyBackend{}}
	c := proxy.config(netip.MustParseAddrPort("10.34.1.2:7080"), v4)
	for _, want := range []string{"server s1 10.34.2.2:7000 tfo\n", "retry-on conn-failure empty-response response-timeout", "default-server init-addr none", "http-reuse never"} {
		if !strings.Contains(c, want) {
			t.Errorf("haproxy proxy config lacks %q:\n%s", want, c)
		}
	}
	if strings.Contains(c, "resolvers") {
		t.Errorf("a resolvers section without Resolver:\n%s", c)
	}
	if err := (HAProxy{Backend: &HAProxyBackend{Resolver: netip.MustParseAddrPort("10.255.255.53:53")}}).Validate(); err == nil {
		t.Error("a resolver outside the lab's plan was accepted")
	}
	if err := (HAProxy{Backend: &HAProxyBackend{Resolver: netip.MustParseAddrPort("10.34.1.1:53")}}).Validate(); err != nil {
		t.Errorf("a lab resolver refused: %v", err)
	}
}

func TestDefaultBody(t *testing.T) {
	a, b := DefaultBody(), DefaultBody()
	if len(a) != DefaultBodySize || !bytes.Equal(a, b) || bytes.Count(a, []byte{0}) > len(a)/50 {
		t.Errorf("DefaultBody: %d bytes, equal twice %t", len(a), bytes.Equal(a, b))
	}
	r := HTTPReply([]byte("abc"))
	if !bytes.HasSuffix(r, []byte("Content-Length: 3\r\nConnection: close\r\n\r\nabc")) {
		t.Errorf("HTTPReply: %q", r)
	}
}

// TestTsharkReadsOurPcaps runs the real tshark (no root needed) over a pcap
// the lab writes: a SYN with option 34, a SYN-ACK with a cookie, a SYN
// with the experimental 254 form, a plain SYN.
func TestTsharkReadsOurPcaps(t *testing.T) {
	if err := ProgTshark.check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("tshark: %v (CI=true: install it with `make deps`)", err)
		}
		t.Skipf("tshark: %v: `make deps` installs it", err)
	}
	c := netip.MustParseAddrPort("10.34.1.2:40000")
	s := netip.MustParseAddrPort("10.34.2.2:7000")
	mss := layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 0xb4}}
	pkts := []capture.Packet{
		tcpFrame(t, c, s, true, false, mss, layers.TCPOption{OptionType: 34, OptionLength: 2}),
		tcpFrame(t, s, c, true, true, mss, layers.TCPOption{OptionType: 34, OptionLength: 10, OptionData: []byte{1, 2, 3, 4, 5, 6, 7, 8}}),
		tcpFrame(t, c, s, false, true),
		tcpFrame(t, c, s, true, false, mss, layers.TCPOption{OptionType: 254, OptionLength: 4, OptionData: []byte{0xf9, 0x89}}),
		tcpFrame(t, c, s, true, false, mss),
	}
	path := filepath.Join(t.TempDir(), "synthetic.pcap")
	if err := observation.WritePcap(path, pkts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := TsharkFrames(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if want := assertions.Option34SYNs(pkts); !slices.Equal(got, want) || !slices.Equal(want, []int{1, 2}) {
		t.Errorf("tshark lists %v, the lab's decoder %v, want both [1 2]", got, want)
	}
	if v := TsharkVersion(); v == "" {
		t.Error("no tshark version")
	}
}

func tcpFrame(t *testing.T, src, dst netip.AddrPort, syn, ack bool, opts ...layers.TCPOption) capture.Packet {
	t.Helper()
	b := labtest.TCPFrame(t, src, dst, &layers.TCP{Seq: 100, Window: 64240, SYN: syn, ACK: ack, Options: opts}, nil)
	p, ok, err := capture.Decode(b, gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: len(b), Length: len(b)})
	if err != nil || !ok {
		t.Fatalf("decode: %t %v", ok, err)
	}
	return p
}
