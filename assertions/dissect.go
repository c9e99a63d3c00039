package assertions

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/tfolab/tfolab/lab/capture"
	"github.com/tfolab/tfolab/observation"
)

// A third-party dissector's start-up is most of what it costs (tshark
// registers every dissector Wireshark has: about a CPU second per run,
// whatever the file). A run of many scenarios therefore defers the
// DissectorAgrees checks to one DissectBatch: each check spools its pcap
// and what the lab's decoder selected, and the batch runs the dissector
// once over all of them at the end of the run. Processes may share a
// batch's folder (the suite's parallel workers each spool into it; one of
// them runs the batch).

// DissectBatch spools deferred dissector checks into Dir.
type DissectBatch struct {
	Dir string
	seq atomic.Int64
}

var deferred atomic.Pointer[DissectBatch]

// DeferDissection makes every DissectorAgrees check of this process spool
// into b (nil: run the dissector at once, per check). The spooled checks
// pass for now; b.Run gives their verdicts.
func DeferDissection(b *DissectBatch) { deferred.Store(b) }

// dissectItem is one spooled check: whose it is and, per link, the frames'
// span in its pcap, what the lab's decoder selected and the frames in
// tcpdump style (for the evidence).
type dissectItem struct {
	Scenario string      `json:"scenario"`
	Check    string      `json:"check"`
	Spans    []linkFrame `json:"spans"`
}

type linkFrame struct {
	Link   string   `json:"link"`
	First  int      `json:"first"` // 1-based, in the item's pcap
	Last   int      `json:"last"`
	Want   []int    `json:"want"` // 1-based within the link
	Frames []string `json:"frames"`
}

func dissectItemOf(o *observation.Observation, check string) (dissectItem, []capture.Packet) {
	it := dissectItem{Scenario: o.Scenario, Check: check}
	var all []capture.Packet
	for _, key := range o.LinkNames() {
		pkts := o.Links[key].Packets
		if len(pkts) == 0 {
			continue
		}
		sp := linkFrame{Link: key, First: len(all) + 1, Last: len(all) + len(pkts), Want: Option34SYNs(pkts)}
		for _, p := range pkts {
			sp.Frames = append(sp.Frames, p.String())
		}
		it.Spans = append(it.Spans, sp)
		all = append(all, pkts...)
	}
	return it, all
}

// compare judges what the dissector selected in a file where the item's
// frames start after offset frames.
func (it dissectItem) compare(selected []int, offset int) (bool, string) {
	var bad []string
	for _, sp := range it.Spans {
		got := []int{}
		for _, n := range selected {
			if n-offset >= sp.First && n-offset <= sp.Last {
				got = append(got, n-offset-sp.First+1)
			}
		}
		if !slices.Equal(got, sp.Want) {
			bad = append(bad, fmt.Sprintf("link %s: %s selected frames %v, the lab's decoder %v\n%s",
				sp.Link, it.Check, got, sp.Want, summariesDiff(sp.Frames, got, sp.Want)))
		}
	}
	if len(bad) > 0 {
		return false, strings.Join(bad, "\n")
	}
	return true, ""
}

func summariesDiff(frames []string, got, want []int) string {
	var b strings.Builder
	for n := 1; n <= len(frames); n++ {
		switch g, w := slices.Contains(got, n), slices.Contains(want, n); {
		case g && !w:
			fmt.Fprintf(&b, "  only the dissector: %d %s\n", n, frames[n-1])
		case w && !g:
			fmt.Fprintf(&b, "  only the lab:       %d %s\n", n, frames[n-1])
		}
	}
	return b.String()
}

func (b *DissectBatch) add(it dissectItem, frames []capture.Packet) error {
	if err := os.MkdirAll(b.Dir, 0o755); err != nil {
		return fmt.Errorf("dissector batch: %w", err)
	}
	base := filepath.Join(b.Dir, fmt.Sprintf("%d-%d", os.Getpid(), b.seq.Add(1)))
	if err := observation.WritePcap(base+".pcap", frames); err != nil {
		return fmt.Errorf("dissector batch: %w", err)
	}
	j, err := json.Marshal(it)
	if err != nil {
		return fmt.Errorf("dissector batch: %w", err)
	}
	// The JSON last, renamed into place: a reader never sees an item
	// without its pcap.
	if err := os.WriteFile(base+".json.tmp", j, 0o644); err != nil {
		return fmt.Errorf("dissector batch: %w", err)
	}
	return os.Rename(base+".json.tmp", base+".json")
}

// DissectVerdict is a deferred check's verdict.
type DissectVerdict struct {
	Scenario, Check string
	Pass            bool
	Evidence        string
}

// Run runs d once over every check spooled into the batch's folder (by
// any process) and judges each; Items is how many there were.
func (b *DissectBatch) Run(ctx context.Context, d Dissector) ([]DissectVerdict, error) {
	items, _ := filepath.Glob(filepath.Join(b.Dir, "*.json"))
	sort.Strings(items)
	if len(items) == 0 {
		return nil, nil
	}
	merged := filepath.Join(b.Dir, "batch.pcap.tmp")
	defer os.Remove(merged)
	out, err := os.Create(merged)
	if err != nil {
		return nil, fmt.Errorf("dissector batch: %w", err)
	}
	var (
		its     []dissectItem
		offsets []int
		frames  int
	)
	for i, path := range items {
		var it dissectItem
		raw, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(raw, &it)
		}
		if err != nil {
			out.Close()
			return nil, fmt.Errorf("dissector batch: %s: %w", path, err)
		}
		if err := appendPcap(out, strings.TrimSuffix(path, ".json")+".pcap", i == 0); err != nil {
			out.Close()
			return nil, fmt.Errorf("dissector batch: %w", err)
		}
		its, offsets = append(its, it), append(offsets, frames)
		if n := len(it.Spans); n > 0 {
			frames += it.Spans[n-1].Last
		}
	}
	if err := out.Close(); err != nil {
		return nil, fmt.Errorf("dissector batch: %w", err)
	}
	selected, err := d(ctx, merged)
	if err != nil {
		return nil, fmt.Errorf("dissector batch of %d checks: %w", len(its), err)
	}
	var vs []DissectVerdict
	for i, it := range its {
		var mine []int
		for _, n := range selected {
			end := frames
			if i+1 < len(offsets) {
				end = offsets[i+1]
			}
			if n > offsets[i] && n <= end {
				mine = append(mine, n)
			}
		}
		ok, ev := it.compare(mine, offsets[i])
		vs = append(vs, DissectVerdict{Scenario: it.Scenario, Check: it.Check, Pass: ok, Evidence: ev})
	}
	return vs, nil
}

// pcapHeaderLen is a classic pcap file's global header.
const pcapHeaderLen = 24

// appendPcap copies a pcap WritePcap wrote into out: its global header too
// when first, else only its records (every spooled file has the same
// header: nanosecond pcap, Ethernet, the lab's snap length).
func appendPcap(out io.Writer, path string, first bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr := make([]byte, pcapHeaderLen)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return fmt.Errorf("%s: pcap header: %w", path, err)
	}
	if magic := binary.LittleEndian.Uint32(hdr); magic != 0xa1b23c4d {
		return fmt.Errorf("%s: not a nanosecond pcap written by the lab (magic %#x)", path, magic)
	}
	if first {
		if _, err := out.Write(hdr); err != nil {
			return err
		}
	}
	_, err = io.Copy(out, f)
	return err
}

// Apply puts the batch's verdicts into vs, the verdicts of scenario (a
// deferred check passed for now), and reports whether any changed.
func (dv DissectVerdict) Apply(vs []Verdict) bool {
	for i := range vs {
		if vs[i].Name == dv.Check && vs[i].Pass != dv.Pass {
			vs[i].Pass, vs[i].Evidence = dv.Pass, dv.Evidence
			return true
		}
	}
	return false
}
