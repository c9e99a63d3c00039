package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Capability bits (include/uapi/linux/capability.h).
const (
	capNetAdmin = 12
	capSysAdmin = 21 // mounting /run/netns/<name> needs it
)

// Preflight checks what the lab needs from the host and returns one
// readable error naming every missing piece, or nil.
func Preflight() error {
	var problems []string
	if err := checkCapabilities(); err != nil {
		problems = append(problems, err.Error())
	}
	for _, bin := range []string{"iptables", "ip6tables", "iptables-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			problems = append(problems, fmt.Sprintf("%s not found in PATH (install Debian's iptables package, or run `make deps`)", bin))
		}
	}
	for _, f := range []string{
		"/proc/sys/net/ipv4/tcp_fastopen",
		"/proc/sys/net/ipv4/tcp_fastopen_key",
		"/proc/sys/net/ipv4/tcp_fastopen_blackhole_timeout_sec",
	} {
		if _, err := os.Stat(f); err != nil {
			problems = append(problems, fmt.Sprintf("kernel lacks TCP Fast Open support: %s is missing", f))
		}
	}
	if _, err := os.Stat("/proc/thread-self/net/netstat"); err != nil {
		problems = append(problems, "kernel lacks /proc/thread-self/net/netstat (needed for per-namespace counters)")
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New("tfolab preflight: " + strings.Join(problems, "; "))
}

func checkCapabilities() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("cannot read /proc/self/status to check capabilities: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return fmt.Errorf("cannot parse CapEff %q: %w", hex, err)
		}
		var missing []string
		if caps&(1<<capNetAdmin) == 0 {
			missing = append(missing, "CAP_NET_ADMIN")
		}
		if caps&(1<<capSysAdmin) == 0 {
			missing = append(missing, "CAP_SYS_ADMIN")
		}
		if len(missing) > 0 {
			return fmt.Errorf("needs root (missing %s): run `sudo make test`", strings.Join(missing, " and "))
		}
		return nil
	}
	return errors.New("cannot find CapEff in /proc/self/status")
}
