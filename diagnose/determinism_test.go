package diagnose

import (
	"bytes"
	"context"
	"path/filepath"
	"strconv"
	"testing"
)

// everyOutput is all a diagnosis prints, as the command prints it: the
// Markdown, the JSON (which holds the reproducers), and each ruleset file
// --rules would write, by name.
func everyOutput(t *testing.T, paths ...string) []byte {
	t.Helper()
	rep, err := Diagnose(context.Background(), paths, Options{})
	if err != nil {
		t.Fatalf("Diagnose %v: %v", paths, err)
	}
	var b bytes.Buffer
	if err := WriteMarkdown(&b, rep); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&b, rep); err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Servers {
		if s.Reproduce != nil && s.Reproduce.Rules != "" {
			b.WriteString(RulesFileName(s) + "\n" + s.Reproduce.Rules)
		}
	}
	return b.Bytes()
}

// The same captures give the same bytes every time: nothing in a
// diagnosis may depend on Go's map order. Every capture of the examples
// and testdata alone, and the pairs read together.
func TestDeterministicOutput(t *testing.T) {
	var sets [][]string
	for _, glob := range []string{"../examples/captures/*.pcap", "testdata/*.pcap", "testdata/*.pcapng"} {
		ms, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			sets = append(sets, []string{m})
		}
	}
	ex, td := "../examples/captures/", "testdata/"
	sets = append(sets,
		[]string{ex + "option-stripped-client.pcap", ex + "option-stripped-server.pcap"},
		[]string{td + "strip-client.pcap", td + "strip-server.pcapng"},
		[]string{ex + "blackhole-paused.pcap", td + "blackhole-paused.pcap"},
		[]string{td + "blackhole-paused.pcap", ex + "blackhole-paused.pcap"},
		[]string{ex + "blackhole-paused.pcap", ex + "tfo-works.pcap"},
		[]string{ex + "syn-data-dropped.pcap", ex + "synack-lost.pcap"},
	)
	// Against the unsorted code 20 runs found a difference in every one
	// of 5 tries, for each of the 5 sets that varied; 100 cost 5 s more
	// of every `make test`.
	runs := 20
	if testing.Short() {
		runs = 5
	}
	for _, paths := range sets {
		want := everyOutput(t, paths...)
		for i := 1; i < runs; i++ {
			if got := everyOutput(t, paths...); !bytes.Equal(got, want) {
				t.Errorf("%v: run %d differs from run 0:\n%s", paths, i, firstDiff(want, got))
				break
			}
		}
	}
}

// firstDiff shows the first line where a and b differ.
func firstDiff(a, b []byte) string {
	al, bl := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range max(len(al), len(bl)) {
		var x, y []byte
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if !bytes.Equal(x, y) {
			return "line " + strconv.Itoa(i+1) + ":\n- " + string(x) + "\n+ " + string(y)
		}
	}
	return "(same lines)"
}
