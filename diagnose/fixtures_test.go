package diagnose

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

var update = flag.Bool("update", false, "rewrite diagnose/testdata")

// The captures in testdata, for trying `tfolab diagnose` by hand; -update
// rewrites them. Each name says its verdict.
func TestFixtures(t *testing.T) {
	type fixture struct {
		name  string
		build func() []byte
		want  map[string]Verdict
	}
	dir := t.TempDir()
	file := func(s *synth, name string, o capOpts) []byte {
		b, err := os.ReadFile(s.write(t, dir, name, o))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var strip [2]synth
	grantedBoth(pairFlow(&strip[0], &strip[1], 0, 1000, realSrv), 0)
	e := pairFlow(&strip[0], &strip[1], 1, 2000, realSrv)
	e.c.syn(time.Second, ptr(tfoOpt(cookieA, false)), 19).synack(time.Second+2*owd+10*time.Microsecond, 0, nil).ack(time.Second + 2*owd + 20*time.Microsecond)
	e.s.syn(time.Second+owd, nil, 19).synack(time.Second+owd+10*time.Microsecond, 0, nil).ack(time.Second + 3*owd + 20*time.Microsecond)

	fixtures := []fixture{
		{"tfo-works.pcap", func() []byte { var s synth; tfoWorks(&s, cli, srv); return file(&s, "a", capOpts{}) }, map[string]Verdict{srv: TFOWorks}},
		{"syn-data-dropped-sll2.pcapng", func() []byte {
			var s synth
			dropSynData(&s, cli, srv)
			return file(&s, "b", capOpts{ng: true, link: layers.LinkTypeLinuxSLL2})
		}, map[string]Verdict{srv: SynDataDropped}},
		{"blackhole-paused.pcap", func() []byte { var s synth; blackhole(&s, time.Second); return file(&s, "c", capOpts{}) }, map[string]Verdict{srv: BlackholePaused}},
		{"strip-client.pcap", func() []byte { return file(&strip[0], "d", capOpts{}) }, map[string]Verdict{vip: OptionStripped}},
		{"strip-server.pcapng", func() []byte {
			return file(&strip[1], "e", capOpts{ng: true, link: layers.LinkTypeLinuxSLL, offset: skew})
		}, map[string]Verdict{realSrv: OptionStripped}},
		{"not-a-capture.txt", func() []byte { return []byte("GET / HTTP/1.1\r\n\r\n") }, nil},
	}
	for _, f := range fixtures {
		path := filepath.Join("testdata", f.name)
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, f.build(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if f.want == nil {
			continue
		}
		rep := run(t, path)
		for s, v := range f.want {
			wantVerdict(t, rep, s, v)
		}
	}
	rep := run(t, filepath.Join("testdata", "strip-client.pcap"), filepath.Join("testdata", "strip-server.pcapng"))
	if r := wantVerdict(t, rep, vip, OptionStripped); r.Counts["stripped"] != 1 {
		t.Errorf("both sides: counts %v", r.Counts)
	}
}
