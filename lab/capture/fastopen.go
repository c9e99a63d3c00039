package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gopacket/gopacket/layers"
)

// TCP option kinds and the experiment ID that RFC 7413 uses. gopacket decodes
// these options generically (it calls kind 34 "Unknown"), so the package
// names them itself.
const (
	// OptionKindFastOpen is the IANA-assigned TCP Fast Open option kind (RFC 7413 §4.1.1).
	OptionKindFastOpen layers.TCPOptionKind = 34
	// OptionKindExperimental is the shared experimental option kind (RFC 6994)
	// that pre-IANA TFO implementations use together with ExperimentalMagicFastOpen.
	OptionKindExperimental layers.TCPOptionKind = 254
	// ExperimentalMagicFastOpen is the 16-bit experiment ID that marks a kind
	// 254 option as TCP Fast Open.
	ExperimentalMagicFastOpen uint16 = 0xF989
)

// Cookie size bounds from RFC 7413 §4.1.1: 4 to 16 bytes, an even number.
const (
	minCookieLen = 4
	maxCookieLen = 16
)

// ErrMalformedFastOpen is wrapped by every error ParseFastOpen returns, so a
// caller can tell a broken TFO option from other decode failures.
var ErrMalformedFastOpen = errors.New("malformed TCP Fast Open option")

// FastOpenOption is a decoded TCP Fast Open option.
type FastOpenOption struct {
	// Experimental is true for the kind 254 form with magic 0xF989
	// (RFC 7413 §4.1.1), false for kind 34.
	Experimental bool
	// Cookie is the cookie; empty means a cookie request (option length 2,
	// or 4 for the experimental form).
	Cookie []byte
}

// IsRequest reports whether the option is a cookie request (no cookie).
func (o FastOpenOption) IsRequest() bool { return len(o.Cookie) == 0 }

// String renders the option as tcpdump does inside "options [...]", except
// that kind 34 gets one space before "cookie" where tcpdump prints two.
func (o FastOpenOption) String() string {
	name := "tfo"
	if o.Experimental {
		name = "exp-tfo"
	}
	if o.IsRequest() {
		return name + " cookiereq"
	}
	return fmt.Sprintf("%s cookie %x", name, o.Cookie)
}

// ParseFastOpen finds the TCP Fast Open option among opts. It returns nil, nil
// when there is none. A kind 254 option only counts as TFO when its first two
// data bytes are the magic 0xF9 0x89; any other kind 254 option belongs to
// some other experiment and is skipped. A TFO option whose cookie length is
// not 0 or an even number from 4 to 16 yields an error wrapping
// ErrMalformedFastOpen. When several TFO options are present the first wins.
func ParseFastOpen(opts []layers.TCPOption) (*FastOpenOption, error) {
	for _, o := range opts {
		data, experimental, ok := fastOpenData(o)
		if !ok {
			continue
		}
		// OptionLength is what came off the wire; OptionData is what the
		// decoder sliced by it. Hand-built options may leave OptionLength 0.
		if o.OptionLength != 0 && int(o.OptionLength) != len(o.OptionData)+2 {
			return nil, fmt.Errorf("%w: kind %d says length %d but carries %d data bytes",
				ErrMalformedFastOpen, o.OptionType, o.OptionLength, len(o.OptionData))
		}
		if n := len(data); n != 0 && !ValidCookieLen(n) {
			return nil, fmt.Errorf("%w: kind %d (option length %d) carries a %d-byte cookie, want 0 or an even 4..16",
				ErrMalformedFastOpen, o.OptionType, len(o.OptionData)+2, n)
		}
		fo := &FastOpenOption{Experimental: experimental}
		if len(data) > 0 {
			fo.Cookie = append([]byte(nil), data...)
		}
		return fo, nil
	}
	return nil, nil
}

// FindFastOpen returns the first TFO option among opts as it came, with a
// cookie of any length (a prober judges a malformed cookie itself). The
// cookie is copied out of the packet buffer.
func FindFastOpen(opts []layers.TCPOption) (FastOpenOption, bool) {
	for _, o := range opts {
		if data, experimental, ok := fastOpenData(o); ok {
			return FastOpenOption{Experimental: experimental, Cookie: bytes.Clone(data)}, true
		}
	}
	return FastOpenOption{}, false
}

// fastOpenData is o's cookie (empty for a request) if o is a TFO option:
// kind 34, or kind 254 whose data starts with the magic 0xF989 (any other
// kind 254 belongs to another RFC 6994 experiment).
func fastOpenData(o layers.TCPOption) (cookie []byte, experimental, ok bool) {
	switch o.OptionType {
	case OptionKindFastOpen:
		return o.OptionData, false, true
	case OptionKindExperimental:
		if len(o.OptionData) >= 2 && binary.BigEndian.Uint16(o.OptionData) == ExperimentalMagicFastOpen {
			return o.OptionData[2:], true, true
		}
	}
	return nil, false, false
}

// ValidCookieLen reports whether a cookie of n bytes is one RFC 7413
// §4.1.1 allows a server to offer: 4 to 16 bytes, an even number.
func ValidCookieLen(n int) bool {
	return n >= minCookieLen && n <= maxCookieLen && n%2 == 0
}
