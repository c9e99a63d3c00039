package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tfolab/tfolab/assertions"
)

func matrixReport(kernel, vm string, scs ...Scenario) *Report {
	return &Report{Schema: SchemaVersion, Kernel: kernel, VM: vm, Parallel: 4, Scenarios: scs}
}

func sc(name string, verdicts ...assertions.Verdict) Scenario {
	s := Scenario{Name: name, Verdicts: verdicts, Pass: true}
	for _, v := range verdicts {
		s.Pass = s.Pass && v.Pass
	}
	return s
}

func v(name string, pass bool) assertions.Verdict {
	return assertions.Verdict{Name: name, Statement: name + " holds", Pass: pass, Evidence: "evidence of " + name}
}

func TestMatrixDifferencesFirstWithTheExpectationThatChanged(t *testing.T) {
	same := sc("baseline/direct", v("connection 1", true), v("counters", true))
	same.Behaviour.FirstByte = &Spread{Median: 2 * time.Millisecond}
	same.Behaviour.Connections, same.Behaviour.TFOData = 2, 1
	old := matrixReport("6.1.0-57-amd64", "debian:6.1 TCG, 2 vCPUs",
		same,
		sc("pool/unsync-keys", v("pool outcomes", false), v("probe", true)),
		Scenario{Name: "blackhole/linear", Unsupported: Unsupported + ": lacks sysctl net.ipv4.tcp_syn_linear_timeouts"},
	)
	newer := matrixReport("6.12.118+deb12-amd64", "debian:6.12 TCG, 2 vCPUs",
		same,
		sc("pool/unsync-keys", v("pool outcomes", false), v("probe", true)),
		sc("blackhole/linear", v("SYN schedule", true)),
	)
	host := matrixReport("6.18.0", "",
		same,
		sc("pool/unsync-keys", v("pool outcomes", true), v("probe", true)),
		sc("blackhole/linear", v("SYN schedule", true)),
		sc("only/host", v("x", true)),
	)
	m := BuildMatrix([]MatrixColumn{{"debian:6.1", old}, {"debian:6.12", newer}, {"host", host}})
	if len(m.Rows) != 4 || m.Rows[3].Scenario != "only/host" {
		t.Fatalf("rows: %+v", m.Rows)
	}
	if want := []string{"pool/unsync-keys", "blackhole/linear", "only/host"}; strings.Join(m.Differ, ",") != strings.Join(want, ",") {
		t.Errorf("differ: got %v, want %v", m.Differ, want)
	}
	pool := m.Rows[1]
	if len(pool.Changed) != 1 || pool.Changed[0].Name != "pool outcomes" || strings.Join(pool.Changed[0].FailsOn, ",") != "debian:6.1,debian:6.12" {
		t.Errorf("pool's changed expectations: %+v", pool.Changed)
	}
	if c := m.Rows[2].Cells[0]; c.Status != "unsupported" || !strings.Contains(c.String(), "tcp_syn_linear_timeouts") {
		t.Errorf("an unsupported cell: %+v %q", c, c.String())
	}
	if c := m.Rows[0].Cells[2]; c.String() != "✓ 2/2 · first byte 2.00 ms, TFO 1/2" && !strings.HasPrefix(c.String(), "✓ 2/2 · first byte") {
		t.Errorf("a cell: %q", c.String())
	}
	if c := m.Rows[3].Cells[0]; c.Status != "absent" || c.String() != "—" {
		t.Errorf("absent: %+v", c)
	}
	md := MatrixMarkdown(m)
	di, ev := strings.Index(md, "## What differs"), strings.Index(md, "## Every scenario")
	if di < 0 || ev < di || !strings.Contains(md[di:ev], "pool outcomes fails under debian:6.1, debian:6.12: evidence of pool outcomes") {
		t.Errorf("markdown:\n%s", md)
	}
	if !strings.Contains(md, "| debian:6.1 | 6.1.0-57-amd64 | VM: debian:6.1 TCG, 2 vCPUs, 4 at a time | 1/3 (1 not supported by this kernel) |") {
		t.Errorf("kernels table:\n%s", md)
	}
	dir := t.TempDir()
	mdPath, js, err := WriteMatrix(m, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{mdPath, js} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 || filepath.Dir(p) != dir {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestDiffUnsupportedIsNoRegression(t *testing.T) {
	newer := matrixReport("6.12", "debian:6.12 TCG, 2 vCPUs", sc("blackhole/linear", v("SYN schedule", true)))
	newer.Scenarios[0].Sysctls = map[string]map[string]string{"client": {"net.ipv4.tcp_syn_linear_timeouts": "0"}}
	old := matrixReport("6.1", "debian:6.1 TCG, 2 vCPUs", Scenario{Name: "blackhole/linear", Unsupported: Unsupported + ": lacks sysctl net.ipv4.tcp_syn_linear_timeouts"})
	c := Diff(newer, old)
	if c.Regressed() != 0 || len(c.Changed) != 1 || !strings.Contains(c.Changed[0].Behaviour[0], "candidate: not supported by this kernel") {
		t.Errorf("regressed %d, changed %+v", c.Regressed(), c.Changed)
	}
	if md := c.Markdown(); strings.Contains(md, "tcp_syn_linear_timeouts`: 0 →") {
		t.Errorf("an unsupported scenario's sysctls are no setting change:\n%s", md)
	}
}
