package scenarios

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/tfolab/tfolab/lab/admit"
	"github.com/tfolab/tfolab/lab/cost"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/assertions"
)

// The first seed's tshark recipe lists the SYNs that carry a TFO option:
//
//	tshark -f 'tcp[tcpflags] & tcp-syn != 0' -Y 'tcp.option_kind == 34'
//
// -f is a capture filter (BPF, applied by the kernel while capturing);
// tshark refuses one when it reads a file ("Only read filters, not capture
// filters, can be specified when reading a capture file"). Over the lab's
// pcaps the same selection is one display filter, TsharkFilter: SYN flag
// set (SYN and SYN-ACK, as tcp-syn in BPF) and an option of kind 34.
const (
	SeedCaptureFilter = "tcp[tcpflags] & tcp-syn != 0"
	SeedDisplayFilter = "tcp.option_kind == 34"
	TsharkFilter      = "tcp.flags.syn == 1 && " + SeedDisplayFilter
)

var reTsharkVersion = regexp.MustCompile(`TShark \(Wireshark\) (\S+?)\.?\s`)

// TsharkVersion is what `tshark --version` says ("4.0.17").
func TsharkVersion() string { return programVersion(ProgTshark.Path, reTsharkVersion, "--version") }

// TsharkFrames runs tshark with TsharkFilter over pcap and returns the
// frame numbers it lists. tshark runs with an empty HOME, so no personal
// Wireshark profile ("decode as", disabled protocols) changes what its
// dissector says.
func TsharkFrames(ctx context.Context, pcap string) ([]int, error) {
	if err := missingError(ProgTshark); err != nil {
		return nil, err
	}
	home, err := os.MkdirTemp("", "tfolab-tshark-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	// Dissector start-up is about a CPU second: a CPU-heavy phase.
	slot, err := admit.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("tshark: %w", err)
	}
	defer slot.Release()
	cmd := exec.CommandContext(ctx, ProgTshark.Path, "-n", "-r", pcap, "-Y", TsharkFilter, "-T", "fields", "-e", "frame.number")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home, "XDG_CONFIG_HOME=" + home}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	cost.Record(ctx, "tshark", cmd.ProcessState)
	if err != nil {
		return nil, fmt.Errorf("tshark -r %s -Y %q: %w: %s", pcap, TsharkFilter, err, strings.TrimSpace(stderr.String()))
	}
	frames := []int{}
	for _, f := range strings.Fields(string(out)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("tshark printed %q, not a frame number", f)
		}
		frames = append(frames, n)
	}
	return frames, nil
}

// TsharkAgrees is the expectation "tshark, with the seed's filter, lists
// exactly the SYNs the lab's decoder says carry option 34" over every
// captured link (assertions.DissectorAgrees with TsharkFrames). It needs
// tshark, which the scenario then requires.
func TsharkAgrees() types.GomegaMatcher {
	return requiring{assertions.DissectorAgrees("tshark agrees", "tshark -Y '"+TsharkFilter+"'", TsharkFrames), []Program{ProgTshark},
		&assertions.Call{Fn: "TsharkAgrees"}}
}

// ScapyProbesAgree is assertions.ProbesAgree(want), which needs python
// and scapy: the scenario then requires them.
func ScapyProbesAgree(want bool) types.GomegaMatcher {
	return requiring{assertions.ProbesAgree(want), []Program{ProgPython, ProgScapy}, &assertions.Call{Fn: "ScapyProbesAgree", Args: []any{want}}}
}

// requiring is an expectation that runs external programs.
type requiring struct {
	types.GomegaMatcher
	progs []Program
	// call is how it was built, for a scenario file (nil: no file form).
	call *assertions.Call
}

// RecordedCall is how the expectation was built (assertions.Recorder).
func (r requiring) RecordedCall() (assertions.Call, bool) {
	if r.call == nil {
		return assertions.Call{}, false
	}
	return *r.call, true
}

func (r requiring) Requires() []Program { return r.progs }
func (r requiring) Name() string        { return assertions.NameOf(r.GomegaMatcher) }
func (r requiring) String() string      { return assertions.Describe(r.GomegaMatcher) }
