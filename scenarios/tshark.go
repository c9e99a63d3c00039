package scenarios

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tfolab/tfolab/lab/admit"
	"github.com/tfolab/tfolab/lab/cost"
	"github.com/tfolab/tfolab/lab/probe"
	"github.com/tfolab/tfolab/lab/proc"

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

// The first seed's other recipe is a scapy probe of the service
// (ScapyProbeRun), which the peers' probe scenarios run beside lab/probe.
//
// A scapy probe costs about 0.45 s of CPU here (Python's imports, one SYN,
// one answer; each spec's cpu property has the figure). Its bound is that
// cost, not the clock: beside two CPU hogs a probe was seen to take 15 s
// of wall time for 0.42 s of CPU, which is no fault of the probe's.
const (
	// scapyCPUBudget is twenty times a probe's cost: one that has used it
	// without finishing is stuck.
	scapyCPUBudget = 10 * time.Second
	// scapyTimeout is what a timeline allows for one probe's wall time,
	// its wait for a CPU slot included: the probe itself is bounded by
	// scapyCPUBudget and by the timeline.
	scapyTimeout = 15 * time.Second
)

// scapyProbeScript is the first seed's recipe,
//
//	res = sr1(IP(dst=dst)/TCP(dport=dport,flags="S",options=[('TFO', '')]), verbose=False)
//	print 'TFO' in dict(res[1].options)
//
// ported to Python 3 and scapy 2.5, for IPv6 too, with a bound on the wait,
// a fixed source port, and the answer printed as one JSON line. It imports
// the layers it uses rather than scapy.all: the same sr1, IP and TCP, at
// half the start-up CPU (0.39 s against 0.80 s here).
const scapyProbeScript = `import json, struct, sys
import scapy
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.sendrecv import sr1

dst, dport, sport, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ip = IPv6(dst=dst) if ":" in dst else IP(dst=dst)
syn = ip/TCP(sport=sport, dport=dport, flags="S", options=[('TFO', '')])
res = sr1(syn, timeout=timeout, verbose=False)
out = {"scapy": scapy.VERSION, "answered": False}
if res is not None and TCP in res:
    tcp = res[TCP]
    opts = dict(tcp.options)
    out["answered"] = True
    out["rst"] = "R" in str(tcp.flags)
    out["tfo"] = 'TFO' in opts  # the seed's verdict
    cookie = opts.get('TFO')
    if isinstance(cookie, (tuple, list)):  # scapy unpacks 8-byte cookies as "!II"
        cookie = b"".join(struct.pack("!I", v) for v in cookie)
    elif isinstance(cookie, int):
        cookie = struct.pack("!I", cookie)
    out["cookie"] = cookie.hex() if isinstance(cookie, (bytes, bytearray)) else ""
    out["rtt"] = res.time - syn.sent_time
print(json.dumps(out))
`

// scapyAnswer is the script's JSON line.
type scapyAnswer struct {
	Scapy    string  `json:"scapy"`
	Answered bool    `json:"answered"`
	RST      bool    `json:"rst"`
	TFO      bool    `json:"tfo"`
	Cookie   string  `json:"cookie"`
	RTT      float64 `json:"rtt"`
}

// ScapyProbeRun runs the seed's scapy probe from node to target and
// returns its verdict as a probe.Result (Reason says it was scapy, and
// what the seed's test printed) and scapy's version.
func ScapyProbeRun(ctx context.Context, site Site, node string, target netip.AddrPort) (probe.Result, string, error) {
	res := probe.Result{Target: target, SYNs: 1}
	if err := missingError(ProgPython, ProgScapy); err != nil {
		return res, "", fmt.Errorf("scapy probe: %w", err)
	}
	src, err := site.Topo.Addr(node, site.Family)
	if err != nil {
		return res, "", err
	}
	// Above the ephemeral range (32768-60999), so no socket of the lab's
	// clients holds it.
	sport := uint16(61000 + rand.IntN(4000))
	res.Source = netip.AddrPortFrom(src, sport)
	wait := probe.DefaultTimeout
	// Python's start-up is a CPU-heavy phase: it waits for a CPU slot
	// (machine-wide), then runs bounded by its CPU, not by the clock.
	slot, err := admit.Acquire(ctx)
	if err != nil {
		return res, "", fmt.Errorf("scapy probe of %s: %w", target, err)
	}
	defer slot.Release()
	p, err := proc.Start(ctx, site.Topo.Namespace(node).Runner(), proc.Spec{
		Name:      "scapy-probe",
		Path:      ProgPython.Path,
		Args:      []string{"{dir}/tfo_probe.py", target.Addr().String(), strconv.Itoa(int(target.Port())), strconv.Itoa(int(sport)), fmt.Sprint(wait.Seconds())},
		Files:     map[string][]byte{"tfo_probe.py": []byte(scapyProbeScript)},
		Ready:     proc.Exited(),
		CPUBudget: scapyCPUBudget,
	})
	if err != nil {
		return res, "", fmt.Errorf("scapy probe of %s: %w", target, err)
	}
	site.Lab.Defer(fmt.Sprintf("scapy probe (pid %d) on %s", p.Pid(), node), p.Stop)
	code, _ := p.Wait(ctx)
	out := p.Output()
	if err := p.Stop(); err != nil {
		return res, "", err
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var a scapyAnswer
	if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &a) != nil {
		return res, "", fmt.Errorf("scapy probe of %s exited %d:\n%s", target, code, tail(out))
	}
	cookie, err := hex.DecodeString(a.Cookie)
	if err != nil {
		return res, "", fmt.Errorf("scapy probe: cookie %q: %w", a.Cookie, err)
	}
	res.Answered, res.RST, res.SupportsTFO = a.Answered, a.RST, a.TFO && len(cookie) >= 4
	res.Cookie, res.RTT = cookie, time.Duration(a.RTT*float64(time.Second))
	switch {
	case !a.Answered:
		res.Reason = fmt.Sprintf("scapy %s: no answer within %v", a.Scapy, wait)
	default:
		res.Reason = fmt.Sprintf("scapy %s, the seed's recipe: 'TFO' in dict(res[TCP].options) is %s", a.Scapy, map[bool]string{true: "True", false: "False"}[a.TFO])
	}
	return res, a.Scapy, nil
}
