package tfo

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{
		ModeSendto: "sendto", ModeConnect: "connect", ModePlain: "plain", Mode(9): "Mode(9)",
	} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", int(m), got, want)
		}
	}
}

func TestClientFailString(t *testing.T) {
	for c, want := range map[ClientFail]string{
		ClientFailUnspec:           "unspec",
		ClientFailNoCookie:         "cookie unavailable (no_cookie)",
		ClientFailDataNotAcked:     "data not acked (syn_data not acked)",
		ClientFailSynRetransmitted: "syn retransmitted",
		ClientFail(7):              "ClientFail(7)",
	} {
		if got := c.String(); got != want {
			t.Errorf("ClientFail(%d).String() = %q, want %q", uint8(c), got, want)
		}
	}
}

func TestParseKeyRoundTrip(t *testing.T) {
	for _, s := range []string{
		"00000000-00000000-00000000-00000000",
		"00112233-44556677-8899aabb-ccddeeff",
		"deadbeef-00000001-ffffffff-12345678,01020304-a0b0c0d0-0f0e0d0c-99999999",
	} {
		k, err := ParseKey(s)
		if err != nil {
			t.Fatalf("ParseKey(%q): %v", s, err)
		}
		if got := k.String(); got != s {
			t.Errorf("ParseKey(%q).String() = %q", s, got)
		}
		k2, err := ParseKey(k.String())
		if err != nil || k2.Primary != k.Primary || (k.Backup == nil) != (k2.Backup == nil) ||
			(k.Backup != nil && *k.Backup != *k2.Backup) {
			t.Errorf("round trip of %q: %+v, %v", s, k2, err)
		}
	}
}

func TestParseKeyByteOrder(t *testing.T) {
	// The kernel stores each hex group as a little-endian u32
	// (sscanf_key: cpu_to_le32), and setsockopt takes those raw bytes.
	k, err := ParseKey("00112233-44556677-8899aabb-ccddeeff\n")
	if err != nil {
		t.Fatal(err)
	}
	want := [16]byte{0x33, 0x22, 0x11, 0x00, 0x77, 0x66, 0x55, 0x44, 0xbb, 0xaa, 0x99, 0x88, 0xff, 0xee, 0xdd, 0xcc}
	if k.Primary != want {
		t.Errorf("Primary = % x, want % x", k.Primary, want)
	}
	if k.Backup != nil {
		t.Errorf("Backup = %v, want nil", k.Backup)
	}
	if got := len(k.bytes()); got != 16 {
		t.Errorf("len(bytes()) = %d, want 16", got)
	}
	kb, _ := ParseKey("00112233-44556677-8899aabb-ccddeeff,00000001-00000000-00000000-00000000")
	if b := kb.bytes(); len(b) != 32 || b[16] != 1 {
		t.Errorf("bytes() with backup = % x", b)
	}
}

func TestParseKeyErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"00000000-00000000-00000000", "got 3 group"},
		{"00000000-00000000-00000000-00000000-00000000", "got 5 group"},
		{"00000000", "got 1 group"},
		{"0000000g-00000000-00000000-00000000", "not hexadecimal"},
		{"00000000-0000000x-00000000-00000000", "not hexadecimal"},
		{"0000000-00000000-00000000-00000000", "exactly 8 hex digits"},
		{"000000000-00000000-00000000-00000000", "exactly 8 hex digits"},
		{"00000000-00000000-00000000-", "exactly 8 hex digits"},
		{"+0000000-00000000-00000000-00000000", "not hexadecimal"},
		{"00000000-00000000-00000000-00000000,", "backup"},
		{"00000000-00000000-00000000-00000000,00000000-00000000", "backup"},
		{"00000000-00000000-00000000-00000000,00000000-00000000-00000000-00000000,00000000-00000000-00000000-00000000", "at most 2"},
	} {
		_, err := ParseKey(tc.in)
		if err == nil {
			t.Errorf("ParseKey(%q) succeeded, want error", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseKey(%q) error %q does not mention %q", tc.in, err, tc.want)
		}
	}
}

func TestRandomKey(t *testing.T) {
	a, err := RandomKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := RandomKey()
	if err != nil {
		t.Fatal(err)
	}
	if a.Primary == b.Primary {
		t.Errorf("two random keys are equal: %s", a)
	}
	if a.Backup != nil {
		t.Errorf("random key has a backup")
	}
	if _, err := ParseKey(a.String()); err != nil {
		t.Errorf("ParseKey(RandomKey().String()): %v", err)
	}
}

// tcpInfoBytes builds a struct tcp_info prefix of length n.
func tcpInfoBytes(n int, state, options, flags7 byte, rttUS, totalRetrans uint32) []byte {
	b := make([]byte, n)
	b[0] = state
	b[5] = options
	b[6] = 0x77 // snd/rcv wscale: must not leak into anything
	b[7] = flags7
	binary.NativeEndian.PutUint32(b[68:], rttUS)
	binary.NativeEndian.PutUint32(b[72:], 0xffffffff) // rttvar next door
	binary.NativeEndian.PutUint32(b[100:], totalRetrans)
	binary.NativeEndian.PutUint32(b[96:], 0xffffffff) // rcv_space next door
	return b
}

func TestParseTCPInfo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		options byte
		flags7  byte
		synData bool
		fail    ClientFail
	}{
		{"nothing", 0x00, 0x00, false, ClientFailUnspec},
		{"syn data", 0x20, 0x00, true, ClientFailUnspec},
		{"syn data among others", 0x07 | 0x20 | 0x40, 0x00, true, ClientFailUnspec},
		{"other options only", 0xff &^ 0x20, 0x00, false, ClientFailUnspec},
		{"no cookie", 0x00, 1 << 1, false, ClientFailNoCookie},
		{"data not acked", 0x00, 2 << 1, false, ClientFailDataNotAcked},
		{"syn retransmitted", 0x00, 3 << 1, false, ClientFailSynRetransmitted},
		// delivery_rate_app_limited is bit 0 and must not leak in.
		{"app limited only", 0x00, 0x01, false, ClientFailUnspec},
		{"app limited + no cookie", 0x00, 0x01 | 1<<1, false, ClientFailNoCookie},
		// bits above fastopen_client_fail are unused padding today.
		{"high bits + data not acked", 0x20, 0xf8 | 2<<1, true, ClientFailDataNotAcked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti := parseTCPInfo(tcpInfoBytes(232, 1, tc.options, tc.flags7, 1234, 5))
			if ti.SynData() != tc.synData {
				t.Errorf("SynData = %v, want %v", ti.SynData(), tc.synData)
			}
			if ti.ClientFail != tc.fail {
				t.Errorf("ClientFail = %v, want %v", ti.ClientFail, tc.fail)
			}
			if ti.State != 1 || ti.RTT != 1234*time.Microsecond || ti.TotalRetrans != 5 || !ti.Complete {
				t.Errorf("got %+v", ti)
			}
		})
	}
}

func TestParseTCPInfoShort(t *testing.T) {
	// Never panics; decodes what is there.
	for _, n := range []int{0, 1, 6, 7, 8, 71, 72, 103} {
		b := tcpInfoBytes(104, 2, 0x20, 2<<1, 99, 3)[:n]
		ti := parseTCPInfo(b)
		if ti.Complete {
			t.Errorf("len %d: Complete = true", n)
		}
		if n >= 6 && !ti.SynData() {
			t.Errorf("len %d: SynData lost", n)
		}
		if n >= 8 && ti.ClientFail != ClientFailDataNotAcked {
			t.Errorf("len %d: ClientFail = %v", n, ti.ClientFail)
		}
		if (n >= 72) != (ti.RTT == 99*time.Microsecond) {
			t.Errorf("len %d: RTT = %v", n, ti.RTT)
		}
		if ti.TotalRetrans != 0 {
			t.Errorf("len %d: TotalRetrans = %d", n, ti.TotalRetrans)
		}
	}
	if ti := parseTCPInfo(nil); ti != (tcpInfo{}) {
		t.Errorf("parseTCPInfo(nil) = %+v", ti)
	}
}
