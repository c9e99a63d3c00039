// Package netnsx holds the one primitive everything else in tfolab stands
// on: running Go code with the calling OS thread inside a network namespace.
//
// Why a package of its own: a thread switched with setns(2) must be locked,
// and restored before it is unlocked, or the Go runtime hands a goroutine a
// thread that lives in the wrong namespace. Keeping the few lines that do it
// in one place means no other package ever calls netns.Set.
//
// It also owns named namespaces (the /run/netns bindings `ip netns` shares):
// rundir.go sets /run/netns up the way iproute2 does before the first bind,
// uncover.go deletes bindings that a later mount of /run/netns hides, and
// owner.go records which process owns them, for the sweeper.
package netnsx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Do runs f on a locked OS thread that is inside the namespace ns, then
// returns the thread to the namespace it came from.
//
// What f creates (sockets, AF_PACKET handles, netlink sockets) stays bound to
// ns and may be used from any goroutine afterwards. Child processes started by
// f (exec.Command) land in ns too, because fork copies the thread's
// namespaces. Goroutines that f starts do NOT run in ns.
func Do(ns netns.NsHandle, f func() error) error {
	type result struct{ err error }
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{fmt.Errorf("get current netns: %w", err)}
			return
		}
		defer origin.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			done <- result{fmt.Errorf("enter netns %s: %w", ns, err)}
			return
		}
		ferr := f()
		if err := netns.Set(origin); err != nil {
			// Leave the thread locked: the runtime terminates a goroutine's
			// locked thread when the goroutine exits, so it is never reused.
			done <- result{fmt.Errorf("restore netns after running in %s: %w (and f: %v)", ns, err, ferr)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{ferr}
	}()
	return (<-done).err
}

// NewUnnamed creates an anonymous network namespace and returns a handle to
// it; the namespace lives as long as the handle (or anything inside it) is
// open. Tests that need a throwaway namespace use this; the lab itself uses
// named namespaces so that a sweeper and `ip netns exec` can find them.
func NewUnnamed() (netns.NsHandle, error) {
	return create("anonymous netns", netns.New)
}

// NewNamed creates a namespace bound at /run/netns/<name> (the place
// `ip netns` uses) and returns a handle to it. Equivalent to:
// ip netns add <name>
//
// Before the first bind of the process it makes /run/netns a shared mount
// point, as iproute2 does (see prepareRunDir), and it records the calling
// process as an owner (see owner.go) so that a sweeper can tell a live run
// from a killed one.
func NewNamed(name string) (netns.NsHandle, error) {
	what := fmt.Sprintf("netns %q", name)
	if err := checkName(name); err != nil {
		return netns.None(), fmt.Errorf("create %s: %w", what, err)
	}
	if err := prepareRunDir(); err != nil {
		return netns.None(), fmt.Errorf("create %s: %w", what, err)
	}
	if err := owned.add(name); err != nil {
		return netns.None(), fmt.Errorf("create %s: %w", what, err)
	}
	h, err := create(what, func() (netns.NsHandle, error) { return bindNew(name) })
	if err != nil {
		if ferr := owned.forget(name); ferr != nil {
			err = fmt.Errorf("%w (and: %v)", err, ferr)
		}
	}
	return h, err
}

// checkName refuses names that are not a single path element.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid namespace name %q", name)
	}
	return nil
}

// bindNew runs on a locked thread: it moves the thread into a new network
// namespace and binds that namespace at RunDir/name, the steps of iproute2's
// netns_add. The caller moves the thread back.
func bindNew(name string) (netns.NsHandle, error) {
	path := filepath.Join(RunDir, name)
	unlock, err := lockRunDir(unix.LOCK_SH)
	if err != nil {
		return netns.None(), err
	}
	defer unlock()
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return netns.None(), err
	}
	f.Close()
	h, err := netns.New()
	if err != nil {
		os.Remove(path)
		return netns.None(), fmt.Errorf("unshare: %w", err)
	}
	self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
		h.Close()
		os.Remove(path)
		return netns.None(), fmt.Errorf("bind %s to %s: %w", self, path, err)
	}
	return h, nil
}

// create runs newNS, which switches the calling thread into the namespace it
// creates, on a locked thread, and switches that thread back afterwards,
// whether newNS succeeded or not.
func create(what string, newNS func() (netns.NsHandle, error)) (netns.NsHandle, error) {
	var h netns.NsHandle
	err := doLocked(func() error {
		origin, err := netns.Get()
		if err != nil {
			return fmt.Errorf("get current netns: %w", err)
		}
		defer origin.Close()
		h, err = newNS()
		if serr := netns.Set(origin); serr != nil {
			if err == nil {
				h.Close()
			}
			return errKeepLocked{fmt.Errorf("restore netns after creating %s: %w (and create: %v)", what, serr, err)}
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", what, err)
		}
		return nil
	})
	return h, err
}

// DeleteNamed removes the /run/netns/<name> binding. The namespace itself
// disappears once no handle, socket or process refers to it. Equivalent to:
// ip netns del <name>
//
// A binding that a later mount of /run/netns over itself hides (see
// rundir.go) cannot be reached by its path; DeleteNamed then finds it in
// /proc/self/mountinfo and removes it, or, where the kernel does not allow
// that, returns an error that names the command to run.
func DeleteNamed(name string) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("delete netns %q: %w", name, err)
	}
	if err := deleteNamed(name); err != nil {
		return fmt.Errorf("delete netns %q: %w", name, err)
	}
	if err := owned.forget(name); err != nil {
		return fmt.Errorf("delete netns %q: %w", name, err)
	}
	return nil
}

func deleteNamed(name string) error {
	path := filepath.Join(RunDir, name)
	unlock, err := lockRunDir(unix.LOCK_SH)
	if err != nil {
		return err
	}
	// As iproute2 does: unmount (nothing may be mounted: a file left by a
	// failed bind, or /run/netns kept across a reboot), then unlink.
	uerr := unix.Unmount(path, unix.MNT_DETACH)
	rerr := unix.Unlink(path)
	unlock()
	switch {
	case rerr == nil:
		return nil
	case errors.Is(rerr, unix.EBUSY):
		// Still a mount point, though not one this path reaches.
		return removeCovered(name)
	case errors.Is(uerr, unix.EINVAL) || errors.Is(uerr, unix.ENOENT):
		return &os.PathError{Op: "remove", Path: path, Err: rerr}
	default:
		return fmt.Errorf("%w (after unmount: %v)", &os.PathError{Op: "remove", Path: path, Err: rerr}, uerr)
	}
}

type errKeepLocked struct{ error }

func (e errKeepLocked) Unwrap() error { return e.error }

// doLocked runs f on a fresh locked thread; if f reports that the thread's
// namespace could not be restored, the thread stays locked and dies with the
// goroutine.
func doLocked(f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := f()
		if _, bad := err.(errKeepLocked); !bad {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}
