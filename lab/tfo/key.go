package tfo

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// keyLen is TCP_FASTOPEN_KEY_LENGTH.
const keyLen = 16

// Key is a TCP Fast Open cookie key for one listener (setsockopt
// TCP_FASTOPEN_KEY) or a namespace (/proc/sys/net/ipv4/tcp_fastopen_key).
//
// Primary and Backup hold the raw 16 bytes handed to setsockopt. The sysctl's
// text form writes each key as four 32-bit words in hex, and the kernel
// stores each word little-endian (sscanf_key in net/ipv4/sysctl_net_ipv4.c
// does cpu_to_le32), so "00112233-..." is the bytes 33 22 11 00 .... ParseKey
// and String follow that rule, so a Key parsed from the sysctl's text and set
// on a listener yields the same cookies as the sysctl itself.
//
// Cookies are made with the primary key; a cookie made with the backup key
// is still accepted (key rotation).
type Key struct {
	Primary [16]byte
	Backup  *[16]byte
}

// ParseKey parses the tcp_fastopen_key sysctl format: four groups of eight
// hex digits separated by '-', optionally followed by ',' and a backup key in
// the same format. Surrounding white space is ignored.
func ParseKey(s string) (Key, error) {
	var k Key
	s = strings.TrimSpace(s)
	if s == "" {
		return k, fmt.Errorf("parse TFO key: empty string")
	}
	parts := strings.Split(s, ",")
	if len(parts) > 2 {
		return k, fmt.Errorf("parse TFO key %q: %d comma-separated keys, at most 2 (primary,backup) allowed", s, len(parts))
	}
	p, err := parseOneKey(parts[0])
	if err != nil {
		return k, fmt.Errorf("parse TFO key %q: primary: %w", s, err)
	}
	k.Primary = p
	if len(parts) == 2 {
		b, err := parseOneKey(parts[1])
		if err != nil {
			return Key{}, fmt.Errorf("parse TFO key %q: backup: %w", s, err)
		}
		k.Backup = &b
	}
	return k, nil
}

func parseOneKey(s string) ([16]byte, error) {
	var out [16]byte
	s = strings.TrimSpace(s)
	groups := strings.Split(s, "-")
	if len(groups) != 4 {
		return out, fmt.Errorf("want 4 '-'-separated groups of 8 hex digits, got %d group(s) in %q", len(groups), s)
	}
	for i, g := range groups {
		if len(g) != 8 {
			return out, fmt.Errorf("group %d %q: want exactly 8 hex digits, got %d characters", i+1, g, len(g))
		}
		v, err := strconv.ParseUint(g, 16, 32)
		if err != nil {
			return out, fmt.Errorf("group %d %q: not hexadecimal", i+1, g)
		}
		binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
	}
	return out, nil
}

func formatOneKey(b [16]byte) string {
	return fmt.Sprintf("%08x-%08x-%08x-%08x",
		binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint32(b[4:]),
		binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint32(b[12:]))
}

// String formats the key the way the sysctl prints it:
// "xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxxxxx[,backup]".
func (k Key) String() string {
	s := formatOneKey(k.Primary)
	if k.Backup != nil {
		s += "," + formatOneKey(*k.Backup)
	}
	return s
}

// bytes returns the setsockopt(TCP_FASTOPEN_KEY) value: 16 bytes, or 32 with
// a backup key.
func (k Key) bytes() []byte {
	b := append([]byte(nil), k.Primary[:]...)
	if k.Backup != nil {
		b = append(b, k.Backup[:]...)
	}
	return b
}

// RandomKey returns a key with a random primary and no backup.
func RandomKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k.Primary[:]); err != nil {
		return Key{}, fmt.Errorf("random TFO key: %w", err)
	}
	return k, nil
}
