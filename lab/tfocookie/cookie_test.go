package tfocookie

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"
)

// TestMakeVectors: Make is SipHash-2-4 over saddr‖daddr, stored
// little-endian. Key 00..0f over the bytes 00..07 (IPv4) and 00..1f
// (IPv6) are the reference test vectors, as `openssl mac -macopt
// hexkey:000102030405060708090a0b0c0d0e0f -macopt size:8 SipHash` prints
// them; that the kernel makes its cookies this way the pool specs check
// on the wire (cookies issued).
func TestMakeVectors(t *testing.T) {
	var key [16]byte
	for i := range key {
		key[i] = byte(i)
	}
	seq := func(from, n int) netip.Addr {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(from + i)
		}
		a, _ := netip.AddrFromSlice(b)
		return a
	}
	for _, c := range []struct {
		client, server netip.Addr
		want           string
	}{
		{seq(0, 4), seq(4, 4), "6224939a79f5f593"},
		{seq(0, 16), seq(16, 16), "ce7cf2722f512771"},
	} {
		if got := hex.EncodeToString(Make(key, c.client, c.server)); got != c.want {
			t.Errorf("Make(%s, %s) = %s, want %s", c.client, c.server, got, c.want)
		}
	}
}

// TestMakeAddresses: the cookie depends on both addresses and their order,
// and an IPv4-mapped address makes the IPv4 cookie (the kernel sees an
// IPv4 header).
func TestMakeAddresses(t *testing.T) {
	key := [16]byte{1, 2, 3}
	cli, srv := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1")
	c := Make(key, cli, srv)
	if len(c) != 8 {
		t.Fatalf("cookie of %d bytes, want 8", len(c))
	}
	if bytes.Equal(c, Make(key, srv, cli)) {
		t.Error("swapping the addresses made the same cookie")
	}
	if bytes.Equal(c, Make([16]byte{1, 2, 4}, cli, srv)) {
		t.Error("another key made the same cookie")
	}
	mapped := netip.AddrFrom16(cli.As16())
	if !bytes.Equal(c, Make(key, mapped, srv)) {
		t.Errorf("IPv4-mapped client %s: another cookie than %s's", mapped, cli)
	}
}
