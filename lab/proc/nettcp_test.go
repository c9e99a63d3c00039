package proc

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// Captured on this kernel (x86-64, little-endian).
const (
	sampleTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1187 1 0000000036384684 100 0 0 10 0
   1: 0202220A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000036384684 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000036384684 20 4 30 10 -1
`
	sampleTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20146 1 00000000c7567f48 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F93 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20147 1 00000000d02bba53 100 0 0 10 0
   2: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20145 1 00000000cfdc0397 100 0 0 10 0
   3: 020034FD000000000000000002000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20148 1 00000000cfdc0397 100 0 0 10 0
`
)

func littleEndian(t *testing.T) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("samples were captured on a little-endian machine")
	}
}

func TestParseNetTCP(t *testing.T) {
	littleEndian(t)
	socks, err := ParseNetTCP([]byte(sampleTCP))
	if err != nil {
		t.Fatal(err)
	}
	want := []Socket{
		{Local: netip.MustParseAddrPort("0.0.0.0:2024"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: StateListen, Inode: 1187},
		{Local: netip.MustParseAddrPort("10.34.2.2:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: StateListen, Inode: 4242},
		{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:54321"), State: 1, UID: 1000, Inode: 4243},
	}
	if len(socks) != len(want) {
		t.Fatalf("got %d sockets, want %d: %+v", len(socks), len(want), socks)
	}
	for i := range want {
		if socks[i] != want[i] {
			t.Errorf("socket %d: got %+v, want %+v", i, socks[i], want[i])
		}
	}
}

func TestParseNetTCP6(t *testing.T) {
	littleEndian(t)
	socks, err := ParseNetTCP([]byte(sampleTCP6))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"[::]:8082", "[::ffff:127.0.0.1]:8083", "[::1]:8081", "[fd34:2::2]:443"}
	if len(socks) != len(want) {
		t.Fatalf("got %d sockets, want %d: %+v", len(socks), len(want), socks)
	}
	for i, w := range want {
		if got := socks[i].Local; got != netip.MustParseAddrPort(w) {
			t.Errorf("socket %d: local %v, want %v", i, got, w)
		}
		if socks[i].State != StateListen {
			t.Errorf("socket %d: state %#x, want LISTEN", i, socks[i].State)
		}
	}
}

func TestParseNetTCPRejectsGarbage(t *testing.T) {
	for _, bad := range []string{
		"   0: 0100007F 00000000:0000 0A 0 0 0 0 0 1",          // no port
		"   0: 0100007:1F90 00000000:0000 0A 0 0 0 0 0 1",      // 7 digits
		"   0: 0100007G:1F90 00000000:0000 0A 0 0 0 0 0 1",     // not hex
		"   0: 0100007F:1F90 00000000:0000 0A",                 // short
		"   0: 0100007F:1F90 00000000:0000 XY 0 0 0 0 0 1",     // state
		"   0: 0100007F:11F90 00000000:0000 0A 0 0 0 0 0 1",    // port > 16 bits
		"   0: 0100007F:1F90 00000000:0000 0A 0 0 0 0 0 inode", // inode
	} {
		if socks, err := ParseNetTCP([]byte(bad)); err == nil {
			t.Errorf("ParseNetTCP(%q) = %+v, want an error", bad, socks)
		}
	}
}

func TestServes(t *testing.T) {
	for _, c := range []struct {
		listener, want string
		ok             bool
	}{
		{"10.34.2.2:80", "10.34.2.2:80", true},
		{"10.34.2.2:80", "10.34.2.2:81", false},
		{"10.34.2.3:80", "10.34.2.2:80", false},
		{"0.0.0.0:80", "10.34.2.2:80", true},
		{"0.0.0.0:80", "[fd34:2::2]:80", false},
		{"[::]:80", "10.34.2.2:80", true}, // dual-stack
		{"[::]:80", "[fd34:2::2]:80", true},
		{"[::]:81", "[fd34:2::2]:80", false},
		{"[::ffff:10.34.2.2]:80", "10.34.2.2:80", true},
		{"10.34.2.2:80", "[::ffff:10.34.2.2]:80", true},
		{"[::ffff:0.0.0.0]:80", "10.34.2.2:80", true},
		{"[::ffff:0.0.0.0]:80", "[fd34:2::2]:80", false},
		{"[fd34:2::2]:80", "[fd34:2::2]:80", true},
		{"[fd34:2::2]:80", "10.34.2.2:80", false},
		{"[fe80::1]:80", "[fe80::1%veth0]:80", true},
	} {
		l, w := netip.MustParseAddrPort(c.listener), netip.MustParseAddrPort(c.want)
		if got := serves(l, w); got != c.ok {
			t.Errorf("serves(%v, %v) = %v, want %v", l, w, got, c.ok)
		}
	}
}

func TestListeningNeedsListenState(t *testing.T) {
	littleEndian(t)
	socks, err := ParseNetTCP([]byte(sampleTCP))
	if err != nil {
		t.Fatal(err)
	}
	// 127.0.0.1:8080 is only an established connection in the sample.
	if Listening(socks, netip.MustParseAddrPort("127.0.0.1:8080")) {
		t.Error("an ESTABLISHED socket counted as a listener")
	}
	if !Listening(socks, netip.MustParseAddrPort("10.34.2.2:8080")) {
		t.Error("the listener on 10.34.2.2:8080 was not found")
	}
	if !Listening(socks, netip.MustParseAddrPort("10.34.9.9:2024")) {
		t.Error("the wildcard listener on 0.0.0.0:2024 was not found")
	}
}
