package netnsx

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// RunDir is where named namespaces are bound, the directory `ip netns`
// uses.
const RunDir = "/run/netns"

// The trap this file exists for: while RunDir is not a mount point, the
// first `ip netns add` on the host bind-mounts RunDir onto itself (and makes
// the new mount shared, so that binds propagate between mount namespaces).
// A namespace bound in RunDir before that moment hangs off the mount that
// holds the directory, under the new mount: path lookup never reaches it
// again, its unlink fails with EBUSY, and it stays bound (and alive) until
// the self-bind goes. iproute2 and CNI avoid it by making RunDir a shared
// self-bind before binding anything; prepareRunDir does the same, once per
// process.

var runDir struct {
	mu   sync.Mutex
	done bool
}

// prepareRunDir makes RunDir a shared mount point exactly as iproute2's
// netns_add does (ip/ipnetns.c): try MS_SHARED|MS_REC; if that fails with
// EINVAL (not a mount point), bind RunDir onto itself with MS_BIND|MS_REC,
// make it MS_PRIVATE|MS_REC so that the next step puts it in a peer group of
// its own (iproute2 82c8b9fe: otherwise, under a shared /run as systemd
// mounts it, every bind would appear twice), and retry once. A later
// `ip netns add` then finds a mount point and changes nothing.
//
// It holds an exclusive flock on RunDir itself while it does this: that is
// the lock iproute2 takes around the same steps (since 5.10, 975c4944), so
// parallel test processes and a concurrent `ip netns add` never both find
// "not a mount point" and stack two self-binds. A failure is not remembered:
// the next call tries again.
func prepareRunDir() error {
	runDir.mu.Lock()
	defer runDir.mu.Unlock()
	if runDir.done {
		return nil
	}
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("prepare %s: %w", RunDir, err)
	}
	unlock, err := lockRunDir(unix.LOCK_EX)
	if err != nil {
		return fmt.Errorf("prepare %s: %w", RunDir, err)
	}
	defer unlock()
	for made := false; ; made = true {
		err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EINVAL) || made {
			return fmt.Errorf("prepare %s: mount --make-rshared: %w", RunDir, err)
		}
		if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("prepare %s: mount --rbind onto itself: %w", RunDir, err)
		}
		if err := unix.Mount("", RunDir, "none", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("prepare %s: mount --make-rprivate: %w", RunDir, err)
		}
	}
	runDir.done = true
	return nil
}

// lockRunDir takes a flock on RunDir (unix.LOCK_SH or unix.LOCK_EX) and
// returns the function that drops it. Binding and unbinding hold it shared;
// setting RunDir up and uncovering a hidden bind hold it exclusively.
// Every holder keeps it for a few system calls, so the wait is short.
func lockRunDir(how int) (unlock func(), err error) {
	fd, err := unix.Open(RunDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: RunDir, Err: err}
	}
	for {
		err = unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "flock", Path: RunDir, Err: err}
	}
	return func() { unix.Close(fd) }, nil
}
