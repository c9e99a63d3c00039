// Package tfocookie is a pure model of TCP Fast Open cookies as a Linux
// server makes and checks them: the cookie a key gives a client for a
// server address (Make: SipHash-2-4, as __tcp_fastopen_cookie_gen_cipher
// in net/ipv4/tcp_fastopen.c computes it), named keys and key lists ("A",
// or "B,A" for primary B and backup A), and a Schedule of which key list
// each server of a pool holds over a timeline. With it a judge can tell
// which named key made a cookie seen on the wire, and what a server
// holding a given list does with it (Slot).
//
// Keys are tfo.Key, parsed and printed by lab/tfo. Nothing here needs
// root, touches a namespace or does I/O: the package is data and
// arithmetic, tested as such.
package tfocookie

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Make is the cookie a Linux server with key (16 raw bytes, as in
// tfo.Key.Primary) hands a client at address client for its address server:
// __tcp_fastopen_cookie_gen_cipher() computes SipHash-2-4 keyed with the
// key read as two little-endian 64-bit words over saddr‖daddr as they sit
// in the IP header (8 bytes for IPv4, 32 for IPv6), and stores the hash
// little-endian (cpu_to_le64) as an 8-byte cookie. Ports play no part: a
// client gets the same cookie from every server that holds the same key,
// whatever connection it makes. IPv4-mapped IPv6 addresses count as IPv4.
func Make(key [16]byte, client, server netip.Addr) []byte {
	client, server = client.Unmap(), server.Unmap()
	msg := append(client.AsSlice(), server.AsSlice()...)
	h := sipHash24(binary.LittleEndian.Uint64(key[0:]), binary.LittleEndian.Uint64(key[8:]), msg)
	return binary.LittleEndian.AppendUint64(nil, h)
}

// sipHash24 is SipHash-2-4 (Aumasson and Bernstein), as lib/siphash.c has it.
func sipHash24(k0, k1 uint64, msg []byte) uint64 {
	v0, v1 := k0^0x736f6d6570736575, k1^0x646f72616e646f6d
	v2, v3 := k0^0x6c7967656e657261, k1^0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13) ^ v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16) ^ v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21) ^ v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17) ^ v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	compress := func(m uint64) {
		v3 ^= m
		round()
		round()
		v0 ^= m
	}
	n := len(msg)
	for ; len(msg) >= 8; msg = msg[8:] {
		compress(binary.LittleEndian.Uint64(msg))
	}
	var last [8]byte
	copy(last[:], msg)
	last[7] = byte(n)
	compress(binary.LittleEndian.Uint64(last[:]))
	v2 ^= 0xff
	for range 4 {
		round()
	}
	return v0 ^ v1 ^ v2 ^ v3
}
