package tcpmetrics

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
)

// encode builds attribute bytes the way tcp_metrics_fill_info lays them out.
func encode(t *testing.T, fill func(ae *netlink.AttributeEncoder)) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	fill(ae)
	b, err := ae.Encode()
	if err != nil {
		t.Fatalf("encode fixture: %v", err)
	}
	return b
}

// decoded encodes the attributes fill writes and decodes them as one entry.
func decoded(t *testing.T, fill func(ae *netlink.AttributeEncoder)) Entry {
	t.Helper()
	e, err := decodeEntry(encode(t, fill))
	if err != nil {
		t.Fatalf("decodeEntry: %v", err)
	}
	return e
}

// checkString checks e's line, as `ip tcp_metrics show` prints it.
func checkString(t *testing.T, e Entry, want string) {
	t.Helper()
	if got := e.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
}

func addrBytes(s string) []byte {
	return netip.MustParseAddr(s).AsSlice()
}

func TestDecodeIPv4WithCookieAndSynDrops(t *testing.T) {
	cookie := []byte{0x2c, 0xc5, 0x08, 0x6d, 0xe4, 0x02, 0xd8, 0x6a}
	e := decoded(t, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(attrAddrIPv4, addrBytes("10.34.2.2"))
		ae.Bytes(attrSAddrIPv4, addrBytes("10.34.1.2"))
		ae.Uint64(attrAge, 1200)
		ae.Nested(attrVals, func(nae *netlink.AttributeEncoder) error {
			nae.Uint32(1, 3)    // rtt ms (scaled by 8)
			nae.Uint32(2, 1)    // rttvar ms
			nae.Uint32(4, 10)   // cwnd
			nae.Uint32(6, 3456) // rtt_us
			nae.Uint32(7, 1596) // rttvar_us
			return nil
		})
		ae.Uint16(attrFOpenMSS, 1460)
		ae.Uint16(attrFOpenSynDrops, 1)
		ae.Uint64(attrFOpenSynDropT, 500)
		ae.Bytes(attrFOpenCookie, cookie)
	})
	if e.Dst != netip.MustParseAddr("10.34.2.2") || e.Src != netip.MustParseAddr("10.34.1.2") {
		t.Errorf("addresses = %v <- %v", e.Dst, e.Src)
	}
	if !e.Dst.Is4() {
		t.Errorf("Dst %v should be a 4-byte address", e.Dst)
	}
	if e.Age != 1200*time.Millisecond {
		t.Errorf("Age = %v", e.Age)
	}
	if e.FastOpenMSS != 1460 || e.FastOpenSynDrops != 1 || e.FastOpenSynDropAge != 500*time.Millisecond {
		t.Errorf("fastopen = mss %d drops %d age %v", e.FastOpenMSS, e.FastOpenSynDrops, e.FastOpenSynDropAge)
	}
	if !bytes.Equal(e.FastOpenCookie, cookie) {
		t.Errorf("cookie = %x", e.FastOpenCookie)
	}
	want := map[string]uint32{"rtt": 3, "rttvar": 1, "cwnd": 10, "rtt_us": 3456, "rttvar_us": 1596}
	if len(e.Values) != len(want) {
		t.Errorf("Values = %v, want %v", e.Values, want)
	}
	for k, v := range want {
		if e.Values[k] != v {
			t.Errorf("Values[%q] = %d, want %d", k, e.Values[k], v)
		}
	}
	if e.RTT() != 432*time.Microsecond || e.RTTVar() != 399*time.Microsecond {
		t.Errorf("RTT %v RTTVar %v", e.RTT(), e.RTTVar())
	}
	checkString(t, e, "10.34.2.2 age 1.200sec cwnd 10 rtt 432us rttvar 399us fo_mss 1460 fo_syn_drops 1/0.500sec ago fo_cookie 2cc5086de402d86a source 10.34.1.2")
}

func TestDecodeIPv6WithoutCookie(t *testing.T) {
	e := decoded(t, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(attrAddrIPv6, addrBytes("2001:db8::2"))
		ae.Bytes(attrSAddrIPv6, addrBytes("2001:db8::1"))
		ae.Uint64(attrAge, 65)
		ae.Uint16(attrFOpenMSS, 1440)
	})
	if e.Dst != netip.MustParseAddr("2001:db8::2") || e.Src != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("addresses = %v <- %v", e.Dst, e.Src)
	}
	if e.FastOpenCookie != nil {
		t.Errorf("cookie = %x, want nil", e.FastOpenCookie)
	}
	if e.FastOpenSynDrops != 0 || e.FastOpenSynDropAge != 0 || e.Values != nil {
		t.Errorf("unexpected fields: %+v", e)
	}
	checkString(t, e, "2001:db8::2 age 0.065sec fo_mss 1440 source 2001:db8::1")
}

func TestDecodeOldKernelRTTOnlyInMillis(t *testing.T) {
	// Kernels before 4.7 sent no rtt_us/rttvar_us and no source address.
	e := decoded(t, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(attrAddrIPv4, addrBytes("192.0.2.7"))
		ae.Uint64(attrAge, 3000)
		ae.Nested(attrVals, func(nae *netlink.AttributeEncoder) error {
			nae.Uint32(1, 8) // 8 ms scaled by 8 -> 1000us
			nae.Uint32(2, 4) // 4 ms scaled by 4 -> 1000us
			nae.Uint32(3, 7) // ssthresh
			return nil
		})
	})
	if e.Src.IsValid() {
		t.Errorf("Src = %v, want zero", e.Src)
	}
	checkString(t, e, "192.0.2.7 age 3.000sec ssthresh 7 rtt 1000us rttvar 1000us")
}

func TestDecodeIgnoresUnknownAttributes(t *testing.T) {
	e := decoded(t, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(attrTWTSVal, 12345) // pre-4.10 kernels
		ae.Int32(attrTWTSStamp, 3)
		ae.Bytes(attrAddrIPv4, addrBytes("10.0.0.9"))
		ae.Uint64(attrPad, 0)
		ae.Bytes(99, []byte("from a future kernel"))
		ae.Nested(attrVals, func(nae *netlink.AttributeEncoder) error {
			nae.Uint32(4, 10)
			nae.Uint32(12, 77) // unknown metric index 11
			return nil
		})
		ae.Uint16(attrFOpenMSS, 536)
	})
	if e.Dst != netip.MustParseAddr("10.0.0.9") || e.FastOpenMSS != 536 {
		t.Errorf("entry = %+v", e)
	}
	if e.Values["metric_11"] != 77 || e.Values["cwnd"] != 10 {
		t.Errorf("Values = %v", e.Values)
	}
	checkString(t, e, "10.0.0.9 age 0.000sec cwnd 10 metric_11 77 fo_mss 536")
}

func TestDecodeErrors(t *testing.T) {
	valid := encode(t, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(attrAddrIPv4, addrBytes("10.0.0.1"))
		ae.Uint64(attrAge, 1)
		ae.Bytes(attrFOpenCookie, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	})
	cases := map[string][]byte{
		"truncated attribute": valid[:len(valid)-4],
		"truncated header":    append(append([]byte{}, valid...), 0x08, 0x00),
		"no destination": encode(t, func(ae *netlink.AttributeEncoder) {
			ae.Uint64(attrAge, 1)
		}),
		"short IPv4 address": encode(t, func(ae *netlink.AttributeEncoder) {
			ae.Bytes(attrAddrIPv4, []byte{10, 0, 0})
		}),
		"short IPv6 address": encode(t, func(ae *netlink.AttributeEncoder) {
			ae.Bytes(attrAddrIPv6, addrBytes("10.0.0.1"))
		}),
		"age not u64": encode(t, func(ae *netlink.AttributeEncoder) {
			ae.Bytes(attrAddrIPv4, addrBytes("10.0.0.1"))
			ae.Uint32(attrAge, 1)
		}),
		"mss not u16": encode(t, func(ae *netlink.AttributeEncoder) {
			ae.Bytes(attrAddrIPv4, addrBytes("10.0.0.1"))
			ae.Uint32(attrFOpenMSS, 1460)
		}),
		"metric not u32": encode(t, func(ae *netlink.AttributeEncoder) {
			ae.Bytes(attrAddrIPv4, addrBytes("10.0.0.1"))
			ae.Nested(attrVals, func(nae *netlink.AttributeEncoder) error {
				nae.Uint16(4, 10)
				return nil
			})
		}),
		"truncated nested": encode(t, func(ae *netlink.AttributeEncoder) {
			ae.Bytes(attrAddrIPv4, addrBytes("10.0.0.1"))
			ae.Bytes(attrVals, []byte{0x08, 0x00, 0x04, 0x00, 0x0a, 0x00}) // says 8 bytes, has 6
		}),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			e, err := decodeEntry(b)
			if err == nil {
				t.Fatalf("decodeEntry succeeded with %+v, want an error", e)
			}
			if !strings.Contains(err.Error(), "tcp_metrics") {
				t.Errorf("error %q lacks context", err)
			}
		})
	}
}

func TestDecodeEmptyCookieIsNil(t *testing.T) {
	e := decoded(t, func(ae *netlink.AttributeEncoder) {
		ae.Bytes(attrAddrIPv4, addrBytes("10.0.0.1"))
		ae.Bytes(attrFOpenCookie, nil)
	})
	if e.FastOpenCookie != nil {
		t.Errorf("cookie = %#v, want nil", e.FastOpenCookie)
	}
}

func TestRejectsBadHandleWithoutTouchingCurrentNetns(t *testing.T) {
	// 0 would make mdlayher/netlink fall back to the calling thread's
	// namespace; a Flush there must never happen by accident.
	for _, ns := range []netns.NsHandle{0, netns.None()} {
		if err := Flush(ns); err == nil {
			t.Errorf("Flush(%d) succeeded, want an error", int(ns))
		}
		if _, err := Dump(ns); err == nil {
			t.Errorf("Dump(%d) succeeded, want an error", int(ns))
		}
		if _, _, err := Get(ns, netip.MustParseAddr("10.0.0.1")); err == nil {
			t.Errorf("Get(%d) succeeded, want an error", int(ns))
		}
	}
	if _, _, err := Get(netns.NsHandle(3), netip.Addr{}); err == nil {
		t.Error("Get with a zero address succeeded, want an error")
	}
}
