package capture

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

func tfoOpt(kind layers.TCPOptionKind, data ...byte) layers.TCPOption {
	return layers.TCPOption{OptionType: kind, OptionLength: uint8(len(data) + 2), OptionData: data}
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(0xa0 + i)
	}
	return b
}

func TestParseFastOpen(t *testing.T) {
	magic := []byte{0xF9, 0x89}
	mss := layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}
	nop := layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}
	tests := []struct {
		name    string
		opts    []layers.TCPOption
		want    *FastOpenOption
		wantErr bool
	}{
		{name: "absent", opts: []layers.TCPOption{mss, nop}},
		{name: "no options"},
		{name: "request kind 34", opts: []layers.TCPOption{mss, tfoOpt(34)}, want: &FastOpenOption{}},
		{name: "cookie 4", opts: []layers.TCPOption{tfoOpt(34, seq(4)...)}, want: &FastOpenOption{Cookie: seq(4)}},
		{name: "cookie 8", opts: []layers.TCPOption{nop, tfoOpt(34, seq(8)...)}, want: &FastOpenOption{Cookie: seq(8)}},
		{name: "cookie 16", opts: []layers.TCPOption{tfoOpt(34, seq(16)...)}, want: &FastOpenOption{Cookie: seq(16)}},
		{name: "cookie 2", opts: []layers.TCPOption{tfoOpt(34, seq(2)...)}, wantErr: true},
		{name: "cookie 3 (odd length 5)", opts: []layers.TCPOption{tfoOpt(34, seq(3)...)}, wantErr: true},
		{name: "cookie 1 (odd length 3)", opts: []layers.TCPOption{tfoOpt(34, seq(1)...)}, wantErr: true},
		{name: "cookie 9 (odd length 11)", opts: []layers.TCPOption{tfoOpt(34, seq(9)...)}, wantErr: true},
		{name: "cookie 18", opts: []layers.TCPOption{tfoOpt(34, seq(18)...)}, wantErr: true},
		{name: "length byte disagrees with data", opts: []layers.TCPOption{{OptionType: 34, OptionLength: 10, OptionData: seq(4)}}, wantErr: true},
		{name: "hand-built without length", opts: []layers.TCPOption{{OptionType: 34, OptionData: seq(6)}}, want: &FastOpenOption{Cookie: seq(6)}},
		{name: "experimental request", opts: []layers.TCPOption{tfoOpt(254, magic...)}, want: &FastOpenOption{Experimental: true}},
		{name: "experimental cookie 8", opts: []layers.TCPOption{tfoOpt(254, append(magic, seq(8)...)...)},
			want: &FastOpenOption{Experimental: true, Cookie: seq(8)}},
		{name: "experimental cookie 3", opts: []layers.TCPOption{tfoOpt(254, append(magic, seq(3)...)...)}, wantErr: true},
		{name: "experimental other magic", opts: []layers.TCPOption{tfoOpt(254, 0x12, 0x34, 1, 2, 3, 4)}},
		{name: "experimental without magic bytes", opts: []layers.TCPOption{tfoOpt(254)}},
		{name: "other experiment then TFO", opts: []layers.TCPOption{tfoOpt(254, 0x12, 0x34), tfoOpt(34, seq(4)...)},
			want: &FastOpenOption{Cookie: seq(4)}},
		{name: "first TFO option wins", opts: []layers.TCPOption{tfoOpt(34), tfoOpt(254, append(magic, seq(4)...)...)},
			want: &FastOpenOption{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFastOpen(tt.opts)
			if tt.wantErr {
				if err == nil || !errors.Is(err, ErrMalformedFastOpen) {
					t.Fatalf("ParseFastOpen = %+v, %v; want an ErrMalformedFastOpen error", got, err)
				}
				if got != nil {
					t.Errorf("ParseFastOpen returned %+v along with error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFastOpen: %v", err)
			}
			if (got == nil) != (tt.want == nil) {
				t.Fatalf("ParseFastOpen = %+v, want %+v", got, tt.want)
			}
			if got == nil {
				return
			}
			if got.Experimental != tt.want.Experimental || !bytes.Equal(got.Cookie, tt.want.Cookie) {
				t.Errorf("ParseFastOpen = %+v, want %+v", got, tt.want)
			}
			if got.IsRequest() != (len(tt.want.Cookie) == 0) {
				t.Errorf("IsRequest() = %v for cookie %x", got.IsRequest(), got.Cookie)
			}
		})
	}
}

func TestParseFastOpenCopiesCookie(t *testing.T) {
	data := seq(8)
	fo, err := ParseFastOpen([]layers.TCPOption{tfoOpt(34, data...)})
	if err != nil || fo == nil {
		t.Fatalf("ParseFastOpen = %v, %v", fo, err)
	}
	data[0] = 0
	if fo.Cookie[0] == 0 {
		t.Error("cookie aliases the option data")
	}
}

func TestFastOpenOptionString(t *testing.T) {
	for _, tt := range []struct {
		o    FastOpenOption
		want string
	}{
		{FastOpenOption{}, "tfo cookiereq"},
		{FastOpenOption{Cookie: []byte{0x2c, 0xc5, 0x08, 0x6d}}, "tfo cookie 2cc5086d"},
		{FastOpenOption{Experimental: true}, "exp-tfo cookiereq"},
		{FastOpenOption{Experimental: true, Cookie: []byte{1, 2, 3, 4}}, "exp-tfo cookie 01020304"},
	} {
		if got := tt.o.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.o, got, tt.want)
		}
	}
}
