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
	"github.com/tfolab/tfolab/observation"
)

// diagnoseTimeout bounds one diagnosis: the lab's captures are a few
// kilobytes, read in milliseconds.
const diagnoseTimeout = 10 * time.Second

// DiagnosedAs expects the diagnosis of the run's capture on clientLink
// alone to be clientSide and, when bothSides is not empty, the diagnosis
// of it together with the capture on serverLink to be bothSides (links
// are observation.LinkKey names). A capture's verdict is its worst over
// the servers in it (diagnose.Precedence): a problem outranks a working
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
		client, server := clientLink, serverLink
		var b strings.Builder
		ok := true
		for _, c := range []struct {
			want  string
			links []string
		}{{clientSide, []string{client}}, {bothSides, []string{client, server}}} {
			if c.want == "" {
				continue
			}
			got, detail, err := diagnoseLinks(o, dir, c.links)
			if err != nil {
				return false, err.Error()
			}
			mark := "✓"
			if got != c.want {
				ok, mark = false, "✗"
			}
			fmt.Fprintf(&b, "%s %s: %s (want %s)\n%s", mark, strings.Join(c.links, " + "), got, c.want, indent(detail))
		}
		return ok, b.String()
	}}
}

// diagnoseLinks writes the links' packets as pcaps in dir and diagnoses
// them together: the overall verdict and the per-server lines.
func diagnoseLinks(o *observation.Observation, dir string, links []string) (string, string, error) {
	var paths []string
	for _, key := range links {
		l := o.Links[key]
		if l == nil {
			return "", "", fmt.Errorf("diagnosis: no capture of %s", key)
		}
		p := filepath.Join(dir, strings.ReplaceAll(key, "/", "_")+".pcap")
		if err := observation.WritePcap(p, l.Packets); err != nil {
			return "", "", fmt.Errorf("diagnosis: %w", err)
		}
		paths = append(paths, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), diagnoseTimeout)
	defer cancel()
	r, err := diagnose.Diagnose(ctx, paths, diagnose.Options{})
	if err != nil {
		return "", "", fmt.Errorf("diagnosis of %s: %w", strings.Join(links, " + "), err)
	}
	var b strings.Builder
	for _, s := range r.Servers {
		fmt.Fprintf(&b, "%s %s: %s\n", s.Server, s.Verdict, s.Reason)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return string(Overall(r)), b.String(), nil
}

// Overall is a report's worst verdict over its servers by
// diagnose.Precedence; inconclusive when it has none.
func Overall(r *diagnose.Report) diagnose.Verdict {
	best := len(diagnose.Precedence)
	for _, s := range r.Servers {
		for i, v := range diagnose.Precedence {
			if v == s.Verdict && i < best {
				best = i
			}
		}
	}
	if best == len(diagnose.Precedence) {
		return diagnose.Inconclusive
	}
	return diagnose.Precedence[best]
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
