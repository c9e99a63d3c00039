package assertions

// The diagnosis check: `tfolab diagnose` (package diagnose) run on the
// run's own captures must name the behaviour the scenario was built for.
// It holds the diagnoser to every catalogue scenario, so a user's capture
// of the same behaviour gets the same verdict.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/diagnose"
	"github.com/tfolab/tfolab/lab/tfocookie"
	"github.com/tfolab/tfolab/observation"
)

// diagnoseTimeout bounds one diagnosis: the lab's captures are a few
// kilobytes, read in milliseconds.
const diagnoseTimeout = 10 * time.Second

// DiagnosedAs expects the diagnosis of the run's capture on clientLink
// alone to be clientSide and, when bothSides is not empty, the diagnosis
// of it together with the capture on serverLink to be bothSides (links
// are observation.LinkKey names). A capture's verdict is its worst over
// the servers in it (diagnose.Report.Worst): a problem outranks a working
// server.
func DiagnosedAs(clientSide, bothSides, clientLink, serverLink string) types.GomegaMatcher {
	desc := fmt.Sprintf("tfolab diagnose of the client's capture says %s", clientSide)
	if bothSides != "" {
		desc += fmt.Sprintf(", of both ends' %s", bothSides)
	}
	return obsMatcher{name: "diagnosis", desc: desc, check: func(o *observation.Observation) (bool, string) {
		dir, err := os.MkdirTemp("", "tfolab-diagnosis-")
		if err != nil {
			return false, err.Error()
		}
		defer os.RemoveAll(dir)
		var paths [2]string
		for i, key := range []string{clientLink, serverLink} {
			l := o.Links[key]
			if l == nil {
				if i == 1 && bothSides == "" {
					continue
				}
				return false, fmt.Sprintf("diagnosis: no capture of %s", key)
			}
			paths[i] = filepath.Join(dir, strings.ReplaceAll(key, "/", "_")+".pcap")
			if err := observation.WritePcap(paths[i], l.Packets); err != nil {
				return false, fmt.Sprintf("diagnosis: %v", err)
			}
		}
		return diagnosisHolds(clientSide, bothSides, paths)
	}}.by("DiagnosedAs", clientSide, bothSides, clientLink, serverLink)
}

// PoolDiagnosedAs is DiagnosedAs for a pool whose refusals depend on
// where ECMP puts each connection: the client's capture must say
// ifRefused when the pool model (keys, this run's placement) predicts a
// refused cookie, and tfo-works when it predicts none.
func PoolDiagnosedAs(keys *tfocookie.Schedule, ifRefused, bothSides, clientLink, serverLink string) types.GomegaMatcher {
	desc := fmt.Sprintf("tfolab diagnose of the client's capture says %s when the pool model predicts a refused cookie for this run's placement, else tfo-works", ifRefused)
	return obsMatcher{name: "diagnosis", desc: desc, check: func(o *observation.Observation) (bool, string) {
		want, both, why := "tfo-works", "", "the model predicts no refused cookie for this placement"
		for _, pc := range PoolModel(o, keys) {
			if pc.Predicted == OutcomeRefused {
				want, both = ifRefused, bothSides
				why = fmt.Sprintf("the model predicts connection %d refused", pc.Index)
				break
			}
		}
		ok, detail := DiagnosedAs(want, both, clientLink, serverLink).(obsMatcher).check(o)
		return ok, why + "\n" + detail
	}}.by("PoolDiagnosedAs", keys, ifRefused, bothSides, clientLink, serverLink)
}

// FilesDiagnosedAs is DiagnosedAs over capture files written by another
// program (tcpdump): clientPcap alone must diagnose as clientSide, and
// with serverPcap as bothSides (when not empty).
func FilesDiagnosedAs(clientSide, bothSides, clientPcap, serverPcap string) types.GomegaMatcher {
	desc := fmt.Sprintf("tfolab diagnose of %s says %s", filepath.Base(clientPcap), clientSide)
	if bothSides != "" {
		desc += fmt.Sprintf(", with %s %s", filepath.Base(serverPcap), bothSides)
	}
	return obsMatcher{name: "diagnosis", desc: desc, check: func(*observation.Observation) (bool, string) {
		return diagnosisHolds(clientSide, bothSides, [2]string{clientPcap, serverPcap})
	}}.by("FilesDiagnosedAs", clientSide, bothSides, clientPcap, serverPcap)
}

// diagnosisHolds diagnoses paths[0] alone, and with paths[1] when
// bothSides is set, against what each must say.
func diagnosisHolds(clientSide, bothSides string, paths [2]string) (bool, string) {
	var b strings.Builder
	ok := true
	for _, c := range []struct {
		want  string
		paths []string
	}{{clientSide, paths[:1]}, {bothSides, paths[:]}} {
		if c.want == "" {
			continue
		}
		got, detail, err := diagnoseFiles(c.paths)
		if err != nil {
			return false, err.Error()
		}
		mark := "✓"
		if got != c.want {
			ok, mark = false, "✗"
		}
		var names []string
		for _, p := range c.paths {
			names = append(names, filepath.Base(p))
		}
		fmt.Fprintf(&b, "%s %s: %s (want %s)\n%s", mark, strings.Join(names, " + "), got, c.want, indent(detail))
	}
	return ok, b.String()
}

// diagnoseFiles diagnoses the captures together: the overall verdict and
// the per-server lines.
func diagnoseFiles(paths []string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), diagnoseTimeout)
	defer cancel()
	r, err := diagnose.Diagnose(ctx, paths, diagnose.Options{})
	if err != nil {
		return "", "", fmt.Errorf("diagnosis of %s: %w", strings.Join(paths, " + "), err)
	}
	var b strings.Builder
	for _, s := range r.Servers {
		fmt.Fprintf(&b, "%s %s: %s\n", s.Server, s.Verdict, s.Reason)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return string(r.Worst()), b.String(), nil
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
