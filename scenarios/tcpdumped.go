package scenarios

// The diagnoser's field test: curl fetching from nginx through each of the
// catalogue's router middleboxes, captured on both ends by tcpdump itself
// (the Debian program, run as an SRE runs it), not by the lab's own
// capture. `tfolab diagnose` must make of those files what the catalogue's
// scenario of the same middlebox states (its Diagnosis).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab/proc"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/topology"

	. "github.com/tfolab/tfolab/assertions"
)

// ProgTcpdump is the capture program users run.
var ProgTcpdump = Program{"tcpdump", "/usr/bin/tcpdump"}

// TcpdumpFiles are the files a tcpdumped scenario writes into its folder:
// the client's link and the server's.
var TcpdumpFiles = [2]string{"client.pcap", "server.pcap"}

// Tcpdumped is curl → nginx (three connections, IPv4) through each router
// middlebox of the catalogue whose rules guard the service port and whose
// behaviour a Linux server shows (its catalogue twin serves with the
// kernel's listener), placed
// and timed as the catalogue's IPv4 sendto scenario of it places it, and
// the open path; tcpdump captures both ends into dir/<middlebox>/. Each
// expects the diagnosis of those files to be its catalogue twin's.
func Tcpdumped(dir string) []Scenario {
	var pair peerPair
	for _, p := range peerPairs() {
		if p.name == "curl-nginx" {
			pair = p
		}
	}
	out := []Scenario{tcpdumped(pair, dir, "open-path", nil, diagnosed(diagnose.TFOWorks))}
	seen := map[string]bool{}
	for _, twin := range Middleboxes() {
		m := twin.Middlebox()
		if len(twin.Middleboxes) != 1 || m.Placement != middlebox.Router || twin.Family != topology.IPv4 ||
			!guardsPort(*m, twin.Family) || seen[m.Box.Name] || twin.Diagnosis.ClientSide == "" {
			continue
		}
		if _, ok := twin.Services[0].Kind.(Listener); !ok {
			// Its behaviour needs a server no Linux stack is (the scripted
			// peer that puts data in its SYN-ACK): nginx would not show it.
			continue
		}
		seen[m.Box.Name] = true
		out = append(out, tcpdumped(pair, dir, m.Box.Name, m, twin.Diagnosis))
	}
	return out
}

func tcpdumped(p peerPair, dir, what string, box *MiddleboxSpec, d Diagnosis) Scenario {
	s := peerScenario(p, "tcpdump/"+what, topology.IPv4, 3,
		fmt.Sprintf("curl → nginx through %s, captured on both ends by tcpdump: tfolab diagnose says %s", what, d.ClientSide))
	s.Labels = append(s.Labels, "diagnose", "tcpdump")
	if box != nil {
		s.Middleboxes = []MiddleboxSpec{*box}
		// A connection that stalls behind the box waits StallBound, as in
		// the catalogue.
		s.Client().ConnTimeout = StallBound
	}
	files := filepath.Join(dir, what)
	s.Timeline = withTcpdump(s.Timeline, files)
	// Wrapped in Go around the recorded timeline: no file form.
	s.TimelineCall = nil
	both := d.BothSides
	if both == "" {
		both = d.ClientSide
	}
	s.Expect = []types.GomegaMatcher{requiring{FilesDiagnosedAs(string(d.ClientSide), string(both),
		filepath.Join(files, TcpdumpFiles[0]), filepath.Join(files, TcpdumpFiles[1])), []Program{ProgTcpdump}, nil}}
	s.Diagnosis = d
	return s
}

// reTcpdumpListening is tcpdump's first line on stderr once it captures.
var reTcpdumpListening = regexp.MustCompile(`listening on `)

// withTcpdump runs tl with tcpdump on the client's and the main server's
// first link, writing TcpdumpFiles into dir, and stops both (they flush
// on SIGTERM) before the timeline returns.
func withTcpdump(tl Timeline, dir string) Timeline {
	return func(ctx context.Context, env *Env) error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		nodes := [2]string{env.scen.Clients[0].node(), env.scen.Services[0].node()}
		var dumps []*proc.Process
		for i, node := range nodes {
			ifname := env.site.Topo.Interfaces(node)[0]
			// -Z root: Debian's tcpdump drops to its own user, which may
			// not write into the run's output folder. --immediate-mode:
			// with TPACKET_V3, libpcap hands packets over a block at a
			// time, and a block not yet handed over when SIGTERM comes is
			// lost (every file came out empty without it).
			p, err := startProgram(ctx, env.site, node, proc.Spec{
				Name:  "tcpdump",
				Path:  ProgTcpdump.Path,
				Args:  []string{"-i", ifname, "-n", "-U", "--immediate-mode", "-Z", "root", "-w", filepath.Join(dir, TcpdumpFiles[i]), "tcp"},
				Ready: proc.FirstLine(reTcpdumpListening),
			}, ProgTcpdump)
			if err != nil {
				return fmt.Errorf("tcpdump on %s/%s: %w", node, ifname, err)
			}
			dumps = append(dumps, p)
		}
		err := tl(ctx, env)
		// Stop is nil when tcpdump ended on its signal; a tcpdump that
		// died on its own during the timeline is an error.
		for _, p := range dumps {
			if serr := p.Stop(); serr != nil {
				err = errors.Join(err, fmt.Errorf("tcpdump: %w", serr))
			}
		}
		return err
	}
}
