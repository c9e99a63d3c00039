package diagnose

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Corrupted captures never panic: random bytes flipped in valid captures of
// every kind, read to the end or to the first unreadable record.
func TestCorruptedCapturesDoNotPanic(t *testing.T) {
	var s synth
	blackhole(&s, 500*time.Millisecond)
	dropSynData(&s, "[2001:db8::1]:40000", "[2001:db8::2]:443")
	dir := t.TempDir()
	var files [][]byte
	for i, o := range []capOpts{{}, {ng: true}, {link: layers.LinkTypeLinuxSLL2}, {link: layers.LinkTypeRaw, ng: true}, {link: layers.LinkTypeNull}} {
		b, err := os.ReadFile(s.write(t, dir, "f"+string(rune('a'+i)), o))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	n := 300
	if testing.Short() {
		n = 30
	}
	path := filepath.Join(dir, "mut")
	for i := range n {
		b := append([]byte(nil), files[i%len(files)]...)
		for range 1 + rng.IntN(20) {
			// Past the file header mostly: the records are what matters.
			b[24+rng.IntN(len(b)-24)] = byte(rng.Uint32())
		}
		if rng.IntN(4) == 0 {
			b = b[:rng.IntN(len(b))]
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		rep, err := Diagnose(context.Background(), []string{path, path}[:1+i%2], Options{})
		if err == nil && rep == nil {
			t.Fatal("nil report without an error")
		}
	}
}

// FuzzRecord feeds arbitrary bytes as one record of each link type.
func FuzzRecord(f *testing.F) {
	var s synth
	tfoWorks(&s, cli, srv)
	for _, p := range s.pkts {
		f.Add(p.ipBytes(f), uint8(0))
	}
	f.Fuzz(func(t *testing.T, ip []byte, linkSel uint8) {
		if len(ip) == 0 {
			return
		}
		links := []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2, layers.LinkTypeRaw, layers.LinkTypeNull}
		link := links[int(linkSel)%len(links)]
		src := &source{path: "fuzz", sum: &FileSummary{}, badLinks: map[layers.LinkType]bool{}, warn: func(string) {}}
		agg := newAggregator([]string{"fuzz"})
		pat := newPatterns(agg, func(string) {})
		tr := newTracker(src, pat, func(c *conn) { agg.fold(c.server, c, c.classify(), false, c.server) }, nil)
		rp := rawPacket{data: frame(link, ip), link: link}
		rp.ci.Timestamp = t0
		rp.ci.CaptureLength, rp.ci.Length = len(rp.data), len(rp.data)
		tr.handle(rp)
		tr.flush()
		agg.report(netip.AddrPort{})
	})
}
