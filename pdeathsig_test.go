//go:build linux

package tfolab_test

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// A Ginkgo worker started by scripts/suite.sh dies with the Ginkgo CLI that
// started it: the CLI dies with the script (setpriv --pdeathsig KILL), so a
// SIGKILL to the run's process group (a CI runner's kill, timeout -s KILL)
// leaves no worker running the suite on its own. The script exports the
// CLI's PID as TFOLAB_PDEATHSIG_PARENT; run any other way (go test, a
// ginkgo of your own, check-killed-run.sh), the worker is left alone.
//
// init runs on the main thread (the runtime locks it there during
// initialisation), which never exits, so the setting lasts as long as the
// process. If the CLI died before the prctl, the parent is already another
// process and no signal would come: the worker exits at once.
func init() {
	want := os.Getenv("TFOLAB_PDEATHSIG_PARENT")
	if want == "" {
		return
	}
	os.Unsetenv("TFOLAB_PDEATHSIG_PARENT") // not for the programs the worker runs
	parent, err := strconv.Atoi(want)
	if err != nil {
		return
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "tfolab suite: prctl(PR_SET_PDEATHSIG): %v\n", err)
		os.Exit(2)
	}
	if os.Getppid() != parent {
		fmt.Fprintf(os.Stderr, "tfolab suite: the Ginkgo CLI (pid %d) that started this worker is gone\n", parent)
		os.Exit(2)
	}
}
