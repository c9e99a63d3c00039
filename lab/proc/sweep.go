package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// dirPrefixBase starts the name of every temp dir, which goes on with the
// owner's PID and start time ("tfolab-proc-1234.5678-nginx-RANDOM"): the
// pair tells a dead owner from a live one or from a later process that
// reused the PID.
const dirPrefixBase = "tfolab-proc-"

// dirPrefix returns this program's prefix, the base plus "PID.START-".
var dirPrefix = sync.OnceValues(func() (string, error) {
	s, err := ReadStat(os.Getpid())
	if err != nil {
		return "", fmt.Errorf("own start time: %w", err)
	}
	return fmt.Sprintf("%s%d.%d-", dirPrefixBase, s.PID, s.StartTime), nil
})

// SweepDirs removes the temp dirs (under os.TempDir()) that Start created
// in programs that are no longer running, which could not run Stop (a
// killed test binary), and returns the paths it removed. Dirs of running
// programs, this one included, are left alone.
func SweepDirs() ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(os.TempDir(), dirPrefixBase+"*"))
	if err != nil {
		return nil, fmt.Errorf("list temp dirs: %w", err)
	}
	var removed []string
	var errs []error
	for _, dir := range matches {
		pid, start, ok := dirOwner(filepath.Base(dir))
		if !ok || ownerAlive(pid, start) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// dirOwner parses "tfolab-proc-PID.START-...".
func dirOwner(name string) (pid int, start uint64, ok bool) {
	rest, ok := strings.CutPrefix(name, dirPrefixBase)
	if !ok {
		return 0, 0, false
	}
	owner, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, 0, false
	}
	p, s, ok := strings.Cut(owner, ".")
	if !ok {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(p)
	start, err2 := strconv.ParseUint(s, 10, 64)
	return pid, start, err1 == nil && err2 == nil && pid > 0
}

func ownerAlive(pid int, start uint64) bool {
	s, err := ReadStat(pid)
	return err == nil && s.StartTime == start && !s.Zombie()
}
