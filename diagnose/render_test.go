package diagnose

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// seedLine is tcpdump's line for the seed packet (with one space in "tfo
// cookie", as lab/capture prints it).
const seedLine = "07:03:45.442747 IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 3248579141:3248579160, win 29200, options [mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 7,tfo cookie 2cc5086de402d86a,nop,nop], length 19"

func TestEvidenceLineGolden(t *testing.T) {
	var s synth
	s.flow(cli, srv, 3248579141).syn(0, ptr(tfoOpt(cookieA, false)), 19).synack(rtt, 19, nil).ack(2 * rtt)
	for _, o := range []capOpts{{}, {ng: true}, {nanos: true}, {link: 113}, {link: 276, ng: true}, {link: 101}} {
		rep := run(t, s.write(t, t.TempDir(), "c", o))
		r := wantVerdict(t, rep, srv, TFOWorks)
		if r.Evidence[0] != seedLine {
			t.Errorf("%+v:\n got %s\nwant %s", o, r.Evidence[0], seedLine)
		}
		if want := "07:03:45.443047 IP 10.0.0.2.80 > 10.0.0.1.40000: Flags [S.], seq 2616932383, ack 3248579161, win 65160, options [mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 7], length 0"; r.Evidence[1] != want {
			t.Errorf("%+v:\n got %s\nwant %s", o, r.Evidence[1], want)
		}
	}
}

var appProto = regexp.MustCompile(`(length \d+): .*$`)

// Every evidence line is the line tcpdump prints for that packet (when
// tcpdump is installed; reading a file needs no root).
func TestEvidenceMatchesTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		t.Skip("no tcpdump")
	}
	var s synth
	blackhole(&s, time.Second)
	dropSynData(&s, "[2001:db8::1]:40000", "[2001:db8::2]:443")
	s.flow("10.0.0.7:1", "10.0.0.9:80", 42).syn(0, ptr(tfoOpt(nil, true)), 0).synack(rtt, 0, ptr(tfoOpt(cookieB, true))).ack(2 * rtt)
	s.flow("10.0.0.8:1", "10.0.0.10:80", 43).syn(0, ptr(tfoOpt(cookieB, false)), 10).rst(rtt)
	path := s.write(t, t.TempDir(), "c.pcap", capOpts{})
	cmd := exec.Command(tcpdump, "-nn", "-S", "-r", path)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("tcpdump -r: %v", err)
	}
	lines := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// tcpdump prints two spaces before "cookie" for kind 34, and
		// names the application protocol after the length (": HTTP").
		l := strings.ReplaceAll(sc.Text(), "tfo  cookie", "tfo cookie")
		lines[appProto.ReplaceAllString(l, "$1")] = true
	}
	rep := run(t, path)
	n := 0
	for _, sr := range rep.Servers {
		for _, l := range sr.Evidence {
			n++
			if !lines[l] {
				t.Errorf("%s: evidence line not in tcpdump's output:\n%s", sr.Server, l)
			}
		}
	}
	if n < 13 {
		t.Errorf("only %d evidence lines checked", n)
	}
	if t.Failed() {
		t.Logf("tcpdump:\n%s", out)
	}
}

func TestJSONShape(t *testing.T) {
	var s synth
	dropSynData(&s, cli, srv)
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	var b bytes.Buffer
	if err := WriteJSON(&b, rep); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Servers []map[string]any `json:"servers"`
		Files   []map[string]any `json:"files"`
		Warns   []string         `json:"warnings"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Servers) != 1 || len(doc.Files) != 1 || doc.Warns == nil {
		t.Fatalf("doc %s", b.String())
	}
	for _, k := range []string{"server", "verdict", "reason", "connections", "cost_ms", "evidence", "reproduce"} {
		if _, ok := doc.Servers[0][k]; !ok {
			t.Errorf("servers[0] lacks %q", k)
		}
	}
	if doc.Servers[0]["verdict"] != "syn-data-dropped" || doc.Servers[0]["server"] != srv {
		t.Errorf("server %v", doc.Servers[0])
	}
	if !strings.Contains(b.String(), `"evidence": [`) || strings.Contains(b.String(), `\u003e`) {
		t.Errorf("evidence not plain: %s", b.String())
	}
}

func TestMarkdown(t *testing.T) {
	var s synth
	dropSynData(&s, cli, srv)
	tfoWorks(&s, "10.0.0.1:41000", "10.0.0.3:80")
	rep := run(t, s.write(t, t.TempDir(), "c.pcap", capOpts{}))
	var b bytes.Buffer
	if err := WriteMarkdown(&b, rep); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	wantAll(t, "markdown", md,
		"# TFO diagnosis",
		"| 10.0.0.2:80 | **syn-data-dropped** | 1 of 2 | 1000.0 ms |",
		"| 10.0.0.3:80 | tfo-works | 2 of 2 | - |",
		"## 10.0.0.2:80: syn-data-dropped",
		"- Cost: 1000.0 ms per affected connection",
		"- Reproduce: `tfolab run middlebox/drop-syn-data/router/ipv4/sendto --keep`",
		"```\n07:03:45.452747 IP 10.0.0.1.40001 > 10.0.0.2.80: Flags [S], seq 3248579141:3248579160, win 29200, options [mss 1460,sackOK,TS val 0 ecr 0,nop,wscale 7,tfo cookie 2cc5086de402d86a,nop,nop], length 19\n",
		"tfolab firewall --rules FILE --port 80",
		"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -p tcp --syn --dport 80",
	)
	if strings.Index(md, "## 10.0.0.2:80") > strings.Index(md, "## 10.0.0.3:80") {
		t.Error("problems should come first")
	}
}
