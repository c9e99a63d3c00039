package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab"
	"github.com/tfolab/tfolab/lab/labtest"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/observation"
	"github.com/tfolab/tfolab/scenarios"
	"github.com/tfolab/tfolab/topology"
)

// TestArtefactsReadBackEqual runs a real scenario as `tfolab run` does
// (artefacts always) and reads its observation.json and pcaps back: the
// observation must be equal to the one in memory, and so must the
// verdicts a second judgement of the read-back observation gives.
func TestArtefactsReadBackEqual(t *testing.T) {
	labtest.NeedRoot(t, "builds network namespaces")
	s := scenarios.CookieThenData(topology.Routed(), topology.IPv6, tfo.ModeSendto)
	var stages []string
	onStage := func(st Stage, l *lab.Lab) {
		stages = append(stages, fmt.Sprintf("%d client namespace %t", st, l.Namespace(topology.Client) != nil))
	}
	res := Run(context.Background(), s, Options{Out: t.TempDir(), Artefacts: Always, OnStage: onStage})
	if !res.Passed() {
		t.Fatalf("the scenario failed:\n%s", res.FailureReport())
	}
	if got, want := strings.Join(stages, "; "), fmt.Sprintf("%d client namespace false; %d client namespace true", LabMade, TearingDown); got != want {
		t.Errorf("stages %q, want %q", got, want)
	}
	back, err := observation.Read(res.Dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := cmp.Options{
		cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
		cmp.Comparer(func(a, b error) bool { return (a == nil) == (b == nil) && (a == nil || a.Error() == b.Error()) }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
	}
	if d := cmp.Diff(res.Obs, back, opts); d != "" {
		t.Fatalf("observation.json read back differs (-run +read):\n%s", d)
	}
	again := assertions.Judge(back, s.Expect)
	var written []assertions.Verdict
	b, err := os.ReadFile(filepath.Join(res.Dir, VerdictsFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &written); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(written, again); d != "" {
		t.Fatalf("judging the read-back observation gives other verdicts (-written +again):\n%s", d)
	}
}
