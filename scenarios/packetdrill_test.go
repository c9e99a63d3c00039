package scenarios

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// upstreamFastOpenScripts is every script under google/packetdrill's
// gtests/net/tcp/fastopen (commit 2c4001c, March 2026), relative to it.
var upstreamFastOpenScripts = []string{
	"client/blocking-connect-bypass-errno.pkt",
	"client/blocking-connect-bypass.pkt",
	"client/blocking-sendmsg-multi-iov.pkt",
	"client/blocking-sendto-errnos.pkt",
	"client/blocking-sendto.pkt",
	"client/cookie-less-sendto.pkt",
	"client/cookie-req-timeout.pkt",
	"client/fallback-exp-opt.pkt",
	"client/fastopen-connect-keepalive.pkt",
	"client/nonblocking-connect-bypass-errno.pkt",
	"client/nonblocking-connect-bypass.pkt",
	"client/nonblocking-sendmsg-multi-iov.pkt",
	"client/nonblocking-sendto-empty-buf.pkt",
	"client/nonblocking-sendto-errnos.pkt",
	"client/nonblocking-sendto-over-mss.pkt",
	"client/nonblocking-sendto.pkt",
	"client/poll.pkt",
	"client/sendto-af-unspec.pkt",
	"client/simultaneous-fast-open.pkt",
	"client/syn-data-icmp-unreach-frag-needed-with-seq-ipv6.pkt",
	"client/syn-data-icmp-unreach-frag-needed-with-seq.pkt",
	"client/syn-data-icmp-unreach-frag-needed.pkt",
	"client/syn-data-mss.pkt",
	"client/syn-data-only-syn-acked.pkt",
	"client/syn-data-partial-or-over-ack.pkt",
	"client/syn-data-rtt-from-syn-data.pkt",
	"client/syn-data-timeout.pkt",
	"client/synack-data.pkt",
	"client/valid-cookie-format.pkt",
	"server/basic-cookie-not-reqd.pkt",
	"server/basic-non-tfo-listener.pkt",
	"server/basic-rw.pkt",
	"server/basic-zero-payload.pkt",
	"server/client-ack-dropped-then-recovery-ms-timestamps.pkt",
	"server/fin-close-socket.pkt",
	"server/icmp-baseline.pkt",
	"server/icmp-before-accept.pkt",
	"server/listener-closed-trigger-rst.pkt",
	"server/opt34/basic-cookie-not-reqd.pkt",
	"server/opt34/basic-non-tfo-listener.pkt",
	"server/opt34/basic-rw.pkt",
	"server/opt34/basic-zero-payload.pkt",
	"server/opt34/fin-close-socket.pkt",
	"server/opt34/icmp-before-accept.pkt",
	"server/opt34/listener-closed-trigger-rst.pkt",
	"server/opt34/pure-syn-data.pkt",
	"server/opt34/reset-after-accept.pkt",
	"server/opt34/reset-before-accept.pkt",
	"server/opt34/reset-close-with-unread-data.pkt",
	"server/opt34/reset-non-tfo-socket.pkt",
	"server/opt34/simple1.pkt",
	"server/opt34/simple2.pkt",
	"server/opt34/simple3.pkt",
	"server/opt34/unread-data-closed-trigger-rst.pkt",
	"server/pure-syn-data.pkt",
	"server/reset-after-accept.pkt",
	"server/reset-before-accept.pkt",
	"server/reset-close-with-unread-data.pkt",
	"server/reset-non-tfo-socket.pkt",
	"server/simple1.pkt",
	"server/simple2.pkt",
	"server/simple3.pkt",
	"server/sockopt-fastopen-key.pkt",
	"server/unread-data-closed-trigger-rst.pkt",
}

// minMapped is how many scripts must map to at least one scenario that
// is in the catalogue.
const minMapped = 45

type parityRow struct {
	script    string
	scenarios []string // the scenarios named in the row, braces expanded
}

// readParityTable parses docs/packetdrill.md's mapping table.
func readParityTable(t *testing.T) []parityRow {
	t.Helper()
	b, err := os.ReadFile("../docs/packetdrill.md")
	if err != nil {
		t.Fatal(err)
	}
	return parseParityTable(string(b))
}

// parseParityTable parses the mapping table's rows: the script in the
// first column, the scenarios (backquoted, braces expanded) in the second.
func parseParityTable(doc string) []parityRow {
	name := regexp.MustCompile("`([^`]+)`")
	// The mapping table's rows, and only they, start with a script's path.
	row := regexp.MustCompile("^\\| `(client|server)/[^`]*\\.pkt` \\|")
	var rows []parityRow
	for _, line := range strings.Split(doc, "\n") {
		if !row.MatchString(line) {
			continue
		}
		cols := strings.Split(line, " | ")
		r := parityRow{script: strings.Trim(strings.TrimPrefix(cols[0], "| "), "`")}
		if len(cols) > 1 {
			for _, m := range name.FindAllStringSubmatch(cols[1], -1) {
				r.scenarios = append(r.scenarios, expandBraces(m[1])...)
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// checkParityTable returns what is wrong with rows against the upstream
// scripts and the catalogue's names, and how many scripts map to
// catalogue scenarios.
func checkParityTable(rows []parityRow, scripts []string, catalogue map[string]bool) (problems []string, mapped int) {
	if len(rows) != len(scripts) {
		problems = append(problems, fmt.Sprintf("%d rows, want one per upstream script: %d", len(rows), len(scripts)))
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.script] {
			problems = append(problems, r.script+": two rows")
		}
		seen[r.script] = true
		if !slices.Contains(scripts, r.script) {
			problems = append(problems, r.script+": not an upstream script")
		}
		for _, n := range r.scenarios {
			if !catalogue[n] {
				problems = append(problems, fmt.Sprintf("%s: scenario %q is not in the catalogue", r.script, n))
			}
		}
		if len(r.scenarios) > 0 {
			mapped++
		}
	}
	for _, s := range scripts {
		if !seen[s] {
			problems = append(problems, s+": no row")
		}
	}
	return problems, mapped
}

// expandBraces expands one or more {a,b} groups: x/{a,b}/{c,d} is four
// names.
func expandBraces(s string) []string {
	i := strings.IndexByte(s, '{')
	if i < 0 {
		return []string{s}
	}
	j := strings.IndexByte(s[i:], '}')
	if j < 0 {
		return []string{s}
	}
	var out []string
	for _, alt := range strings.Split(s[i+1:i+j], ",") {
		out = append(out, expandBraces(s[:i]+alt+s[i+j+1:])...)
	}
	return out
}

// Every upstream TFO script has one row, every scenario a row names is in
// the catalogue, and enough scripts map to
// scenarios of the catalogue.
func TestPacketdrillParityTable(t *testing.T) {
	catalogue := map[string]bool{}
	for _, s := range Catalogue() {
		catalogue[s.Name] = true
	}
	problems, mapped := checkParityTable(readParityTable(t), upstreamFastOpenScripts, catalogue)
	for _, p := range problems {
		t.Error(p)
	}
	if mapped < minMapped {
		t.Errorf("%d scripts map to catalogue scenarios, want at least %d", mapped, minMapped)
	}
	t.Logf("%d of %d scripts map to catalogue scenarios", mapped, len(upstreamFastOpenScripts))
}

// The check finds each way a table goes wrong.
func TestCheckParityTableFindsMistakes(t *testing.T) {
	doc := strings.Join([]string{
		"| script | scenario(s) | why |",
		"| `client/a.pkt` | `x/{1,2}` | ok |",
		"| `client/a.pkt` | `x/3` | twice, and x/3 is unknown |",
		"| `server/c.pkt` | — | not upstream |",
		"| `notes` | `x/9` | not a row |",
	}, "\n")
	rows := parseParityTable(doc)
	if len(rows) != 3 || !slices.Equal(rows[0].scenarios, []string{"x/1", "x/2"}) {
		t.Fatalf("parsed %+v", rows)
	}
	problems, mapped := checkParityTable(rows, []string{"client/a.pkt", "client/b.pkt"}, map[string]bool{"x/1": true, "x/2": true})
	want := []string{
		"3 rows, want one per upstream script: 2",
		"client/a.pkt: two rows",
		`client/a.pkt: scenario "x/3" is not in the catalogue`,
		"server/c.pkt: not an upstream script",
		"client/b.pkt: no row",
	}
	if !slices.Equal(problems, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
	if mapped != 2 {
		t.Errorf("mapped %d, want 2", mapped)
	}
}

func TestExpandBraces(t *testing.T) {
	got := expandBraces("p/{a,b}/x/{c,d}")
	want := []string{"p/a/x/c", "p/a/x/d", "p/b/x/c", "p/b/x/d"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
