package diagnose

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Every format and link type reads the same verdict, IPv4 and IPv6.
func TestFormatsAndLinkTypes(t *testing.T) {
	links := []struct {
		link layers.LinkType
		v4   bool // carries IPv4
		v6   bool
	}{
		{layers.LinkTypeEthernet, true, true},
		{layers.LinkTypeLinuxSLL, true, true},
		{layers.LinkTypeLinuxSLL2, true, true},
		{layers.LinkTypeRaw, true, true},
		{linkRawBSD, true, true},
		{linkRawOpenBS, true, true},
		{layers.LinkTypeIPv4, true, false},
		{layers.LinkTypeIPv6, false, true},
		{layers.LinkTypeNull, true, true},
		{layers.LinkTypeLoop, true, true},
	}
	dir := t.TempDir()
	for _, ng := range []bool{false, true} {
		for _, l := range links {
			for _, v6 := range []bool{false, true} {
				if (v6 && !l.v6) || (!v6 && !l.v4) {
					continue
				}
				c, s := cli, srv
				if v6 {
					c, s = "[2001:db8::1]:40000", "[2001:db8::2]:443"
				}
				name := fmt.Sprintf("ng=%v/link=%d/v6=%v", ng, l.link, v6)
				t.Run(name, func(t *testing.T) {
					var sy synth
					dropSynData(&sy, c, s)
					path := sy.write(t, dir, strings.ReplaceAll(name, "/", "_")+".cap", capOpts{ng: ng, link: l.link})
					rep := run(t, path)
					r := wantVerdict(t, rep, s, SynDataDropped)
					if len(r.Evidence) != 3 {
						t.Errorf("evidence %q", r.Evidence)
					}
					wantFormat := "pcap"
					if ng {
						wantFormat = "pcapng"
					}
					if f := rep.Files[0]; f.Format != wantFormat || f.Conns != 2 || len(rep.Warnings) > 0 {
						t.Errorf("file %+v, warnings %q", f, rep.Warnings)
					}
				})
			}
		}
	}
}

func TestGzipAndNanoseconds(t *testing.T) {
	var s synth
	tfoWorks(&s, cli, srv)
	dir := t.TempDir()
	for _, o := range []capOpts{{gzip: true}, {nanos: true}, {gzip: true, nanos: true}} {
		rep := run(t, s.write(t, dir, fmt.Sprintf("c-%v-%v.pcap", o.gzip, o.nanos), o))
		wantVerdict(t, rep, srv, TFOWorks)
		if rep.Files[0].Gzip != o.gzip {
			t.Errorf("gzip %v", rep.Files[0].Gzip)
		}
	}
}

// A pcapng file with two interfaces of different link types.
func TestPcapngMixedLinkTypes(t *testing.T) {
	var a, b synth
	tfoWorks(&a, cli, srv)
	dropSynData(&b, "10.0.0.5:40000", "10.0.0.6:80")
	dir := t.TempDir()
	// Written as two files, then the second's packets appended as a second
	// section: pcapng allows several sections, each with its interfaces.
	pa := a.write(t, dir, "a.pcapng", capOpts{ng: true, link: layers.LinkTypeEthernet})
	pb := b.write(t, dir, "b.pcapng", capOpts{ng: true, link: layers.LinkTypeLinuxSLL2})
	ba, _ := os.ReadFile(pa)
	bb, _ := os.ReadFile(pb)
	both := filepath.Join(dir, "both.pcapng")
	if err := os.WriteFile(both, append(ba, bb...), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := run(t, both)
	wantVerdict(t, rep, srv, TFOWorks)
	wantVerdict(t, rep, "10.0.0.6:80", SynDataDropped)
	if got := strings.Join(rep.Files[0].LinkTypes, ","); got != "Ethernet,Linux SLL2" {
		t.Errorf("link types %q", got)
	}
}

// Snaplen-cut packets: the payload comes from the IP total length.
func TestSnaplenCut(t *testing.T) {
	var s synth
	dropSynData(&s, cli, srv)
	// Ethernet 14 + IP 20 + TCP 52 (options with a cookie) = 86 of the
	// SYN's 105 bytes: the payload is cut, the headers are whole.
	for _, ng := range []bool{false, true} {
		path := s.write(t, t.TempDir(), "cut.pcap", capOpts{ng: ng, snaplen: 96})
		rep := run(t, path)
		r := wantVerdict(t, rep, srv, SynDataDropped)
		if !strings.Contains(r.Evidence[0], "seq 3248579141:3248579160") || !strings.HasSuffix(r.Evidence[0], "length 19") {
			t.Errorf("evidence %q", r.Evidence[0])
		}
	}
	// Cut inside the TCP header: nothing to judge, bad input.
	for _, snap := range []int{40, 60} {
		path := s.write(t, t.TempDir(), "cut2.pcap", capOpts{snaplen: snap})
		rep, err := Diagnose(context.Background(), []string{path}, Options{})
		if !errors.Is(err, ErrHeadersCut) || rep.Files[0].Cut == 0 {
			t.Errorf("snaplen %d: err %v, file %+v", snap, err, rep.Files[0])
		}
	}
	// Some headers cut (the SYN-ACKs with a cookie, at 80 bytes): a warning.
	rep := run(t, s.write(t, t.TempDir(), "cut3.pcap", capOpts{snaplen: 80}))
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "cut by the snap length") {
		t.Errorf("warnings %q", rep.Warnings)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var udp synth
	udp.udp = 5
	cases := []struct {
		name string
		path string
		want error
	}{
		{"missing", filepath.Join(dir, "nope.pcap"), fs.ErrNotExist},
		{"text", write("notes.txt", []byte("this is not a capture\n")), ErrNotCapture},
		{"empty", write("empty.pcap", nil), ErrNotCapture},
		{"short", write("short.pcap", []byte{0xd4, 0xc3}), ErrNotCapture},
		{"cut header", write("hdr.pcap", []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0}), ErrNotCapture},
		{"cut ng header", write("hdr.pcapng", []byte{0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0}), ErrNotCapture},
		{"bad gzip", write("x.pcap.gz", []byte{0x1f, 0x8b, 0, 0}), ErrNotCapture},
		{"no tcp", udp.write(t, dir, "udp.pcap", capOpts{}), ErrNoTCP},
		{"no tcp ng", udp.write(t, dir, "udp.pcapng", capOpts{ng: true}), ErrNoTCP},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Diagnose(context.Background(), []string{c.path}, Options{})
			var ie *InputError
			if !errors.Is(err, c.want) || !errors.As(err, &ie) {
				t.Fatalf("err %v, want %v in an *InputError", err, c.want)
			}
			if !strings.Contains(err.Error(), c.path) || strings.Contains(err.Error(), "\n") {
				t.Errorf("message %q: want one line naming the file", err)
			}
		})
	}
	if _, err := Diagnose(context.Background(), nil, Options{}); err == nil {
		t.Error("no file: want an error")
	}
}

// A truncated file diagnoses what it read, with a warning.
func TestTruncated(t *testing.T) {
	var s synth
	dropSynData(&s, cli, srv)
	s.flow("10.0.0.9:1", srv, 77).plain(5 * time.Second) // the record that gets cut
	for _, ng := range []bool{false, true} {
		dir := t.TempDir()
		path := s.write(t, dir, "full", capOpts{ng: ng})
		b, _ := os.ReadFile(path)
		cut := filepath.Join(dir, "cut")
		if err := os.WriteFile(cut, b[:len(b)-30], 0o644); err != nil {
			t.Fatal(err)
		}
		rep := run(t, cut)
		wantVerdict(t, rep, srv, SynDataDropped)
		if !rep.Files[0].Truncated || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "truncated") {
			t.Errorf("ng=%v: truncated %v, warnings %q", ng, rep.Files[0].Truncated, rep.Warnings)
		}
	}
}

func TestUnsupportedLinkType(t *testing.T) {
	var s synth
	tfoWorks(&s, cli, srv)
	path := s.write(t, t.TempDir(), "wifi.pcap", capOpts{link: layers.LinkTypeIEEE80211Radio})
	_, err := Diagnose(context.Background(), []string{path}, Options{})
	if !errors.Is(err, ErrNoTCP) {
		t.Fatalf("err %v, want ErrNoTCP", err)
	}
}
