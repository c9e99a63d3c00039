package tfolab_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/tfolab/tfolab/kernelvm"
	"github.com/tfolab/tfolab/report"
)

// The report under another kernel, as a user runs it: `tfolab report
// --kernel debian:6.12 --labels "baseline || blackhole"` boots the Debian
// kernel in QEMU (KVM or TCG), runs the labels inside and brings the
// report back; every scenario the kernel supports holds every
// expectation, and nothing is left running. It boots a VM, so it runs
// only when asked for: `sudo make test LABELS=kernels` (TFOLAB_KERNEL
// picks another kernel: debian:6.1, a vmlinuz path).
var _ = Describe("kernels", Label("kernels"), func() {
	// The VM's run takes about 2.5 min under TCG; a progress report (with
	// its goroutine dump) only once it is late, not every minute of it.
	It("boots a Debian kernel in QEMU and runs the baseline and blackhole labels inside it, all green", PollProgressAfter(4*time.Minute), func(ctx SpecContext) {
		if !strings.Contains(GinkgoLabelFilter(), "kernels") {
			Skip("boots a VM for minutes: run it with LABELS=kernels")
		}
		kernel := os.Getenv("TFOLAB_KERNEL")
		if kernel == "" {
			kernel = "debian:6.12"
		}
		out := filepath.Join(outDir(), "kernels", kernelvm.Slug(kernel))
		Expect(os.RemoveAll(out)).To(Succeed())
		bin := tfolabBinary()
		cmd := exec.CommandContext(ctx, bin, "report", "--kernel", kernel, "--labels", "baseline || blackhole", "--out", out)
		cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
		cmd.WaitDelay = 30 * time.Second
		Expect(cmd.Run()).To(Succeed(), "tfolab report --kernel %s", kernel)

		r, err := report.Read(filepath.Join(out, report.JSONFile))
		Expect(err).NotTo(HaveOccurred())
		Expect(r.VM).To(HavePrefix(kernel+" "), "the report says it ran in a VM of that kernel")
		var vm kernelvm.Result
		b, err := os.ReadFile(filepath.Join(out, kernelvm.VMFile))
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(b, &vm)).To(Succeed())
		Expect(r.Kernel).To(Equal(vm.Kernel.Release), "the report ran under the guest's kernel, not the host's")
		AddReportEntry("vm", strings.Join([]string{r.VM, "boot " + vm.Boot.Round(100*time.Millisecond).String(),
			"report " + vm.Guest.Report.Round(100*time.Millisecond).String()}, ", "))

		ran := map[string]int{}
		for _, s := range r.Scenarios {
			for _, l := range s.Labels {
				ran[l]++
			}
			if s.Unsupported != "" {
				Expect(s.Unsupported).To(HavePrefix(report.Unsupported+": lacks "), s.Name)
				continue
			}
			Expect(s.Error).To(BeEmpty(), "%s could not run", s.Name)
			for _, v := range s.Verdicts {
				Expect(v.Pass).To(BeTrue(), "%s under %s: %s: %s\n%s", s.Name, kernel, v.Name, v.Statement, v.Evidence)
			}
		}
		Expect(ran["baseline"]).To(BeNumerically(">", 0), "baseline scenarios ran")
		Expect(ran["blackhole"]).To(BeNumerically(">", 0), "blackhole scenarios ran")

		// Nothing left: no QEMU of this run, no job folder.
		Expect(qemuOf(out)).To(BeEmpty(), "a QEMU process outlived the report")
		leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".vm-*"))
		Expect(leftovers).To(BeEmpty(), "job folders left behind")
	}, SpecTimeout(60*time.Minute))
})

// qemuOf lists QEMU processes whose command line names a job folder
// beside out.
func qemuOf(out string) []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	dir, _ := filepath.Abs(filepath.Dir(out))
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		line := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(line, kernelvm.QEMU) && strings.Contains(line, dir) {
			found = append(found, line)
		}
	}
	return found
}
