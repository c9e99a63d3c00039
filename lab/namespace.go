package lab

import (
	"context"
	"fmt"
	"github.com/tfolab/tfolab/lab/cost"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/tfolab/tfolab/lab/netnsx"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Namespace is one network namespace of a Lab, playing one role (client,
// router, server, ...). Its name is tfo-<labID>-<role>, so
// `ip netns exec <name> ...` reaches it while the Lab is alive.
type Namespace struct {
	Role   string
	Name   string
	handle netns.NsHandle
	nl     *netlink.Handle

	// counterFiles are the namespace's netstat and snmp files, opened
	// once for Counter (see there).
	counterMu    sync.Mutex
	counterFiles map[string]*os.File
}

// AddNamespace creates the named namespace for role, brings its loopback up,
// and registers its deletion on the Lab's cleanup stack.
func (l *Lab) AddNamespace(role string) (*Namespace, error) {
	if !roleRE.MatchString(role) {
		return nil, fmt.Errorf("namespace role %q: want 1-12 lowercase letters/digits starting with a letter", role)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("add namespace %q: lab %s is closed", role, l.ID)
	}
	if _, dup := l.spaces[role]; dup {
		l.mu.Unlock()
		return nil, fmt.Errorf("add namespace %q: role already exists in lab %s", role, l.ID)
	}
	l.mu.Unlock()

	name := l.namespaceName(role)
	h, err := netnsx.NewNamed(name)
	if err != nil {
		return nil, err
	}
	ns := &Namespace{Role: role, Name: name, handle: h}
	l.Defer("namespace "+name, func() error {
		if ns.nl != nil {
			ns.nl.Close()
		}
		ns.closeCounterFiles()
		h.Close()
		return netnsx.DeleteNamed(name)
	})
	ns.nl, err = netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	lo, err := ns.nl.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("find lo in %s: %w", name, err)
	}
	if err := ns.nl.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("set lo up in %s: %w", name, err)
	}
	l.mu.Lock()
	l.spaces[role] = ns
	l.mu.Unlock()
	return ns, nil
}

// Handle is the namespace's file handle (valid until the Lab closes).
func (n *Namespace) Handle() netns.NsHandle { return n.handle }

// Netlink is a netlink handle bound to the namespace.
// Equivalent to: ip -n <name> ...
func (n *Namespace) Netlink() *netlink.Handle { return n.nl }

// Do runs f on an OS thread inside the namespace; see netnsx.Do.
func (n *Namespace) Do(f func() error) error {
	if err := netnsx.Do(n.handle, f); err != nil {
		return fmt.Errorf("in %s: %w", n.Name, err)
	}
	return nil
}

// Runner returns Do as a plain function, the form lower-level packages
// (tfo, capture) take so they never depend on Lab.
func (n *Namespace) Runner() func(func() error) error {
	return func(f func() error) error { return netnsx.Do(n.handle, f) }
}

// sysctlPath maps "net.ipv4.tcp_fastopen" to /proc/sys/net/ipv4/tcp_fastopen.
// Only net.* keys are accepted: those are the ones a network namespace owns,
// and the lab never writes anything that could reach the host.
func sysctlPath(key string) (string, error) {
	k := strings.TrimSpace(key)
	if strings.Contains(k, "/") {
		k = strings.ReplaceAll(strings.TrimPrefix(k, "/proc/sys/"), "/", ".")
	}
	if !strings.HasPrefix(k, "net.") || strings.Contains(k, "..") || strings.ContainsAny(k, " \t\n") {
		return "", fmt.Errorf("sysctl %q: only net.* keys can be set in a lab namespace", key)
	}
	return filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/")), nil
}

// SetSysctl writes a per-namespace sysctl. Equivalent to:
// ip netns exec <name> sysctl -w key=value
func (n *Namespace) SetSysctl(key, value string) error {
	return n.SetSysctls(map[string]string{key: value})
}

// SetSysctls writes several per-namespace sysctls in key order, with one
// namespace switch.
func (n *Namespace) SetSysctls(kv map[string]string) error {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	paths := make([]string, len(keys))
	for i, k := range keys {
		p, err := sysctlPath(k)
		if err != nil {
			return err
		}
		paths[i] = p
	}
	return n.Do(func() error {
		for i, p := range paths {
			if err := os.WriteFile(p, []byte(kv[keys[i]]), 0); err != nil {
				return fmt.Errorf("set sysctl %s=%s: %w", keys[i], kv[keys[i]], err)
			}
		}
		return nil
	})
}

// Sysctl reads a per-namespace sysctl.
func (n *Namespace) Sysctl(key string) (string, error) {
	path, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var out string
	err = n.Do(func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read sysctl %s: %w", key, err)
		}
		out = strings.TrimSpace(string(b))
		return nil
	})
	return out, err
}

// Run runs a command inside the namespace to completion and returns its
// combined output.
func (n *Namespace) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out []byte
	err := n.Do(func() error {
		// Start on this thread so the child inherits the namespace; waiting
		// can happen anywhere, but CombinedOutput does both here, which is fine.
		var err error
		out, err = cmd.CombinedOutput()
		return err
	})
	cost.Record(ctx, name, cmd.ProcessState)
	if err != nil {
		return out, fmt.Errorf("run %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// StartProcess starts cmd inside the namespace and registers its termination
// (kill, then wait) on the Lab's cleanup stack.
func (l *Lab) StartProcess(n *Namespace, cmd *exec.Cmd) error {
	if err := n.Do(cmd.Start); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	l.Defer(fmt.Sprintf("process %s (pid %d) in %s", filepath.Base(cmd.Path), cmd.Process.Pid, n.Name), func() error {
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // a killed process reports an error by design
		return nil
	})
	return nil
}
