// Package netnsx holds the one primitive everything else in tfolab stands
// on: running Go code with the calling OS thread inside a network namespace.
//
// Why a package of its own: a thread switched with setns(2) must be locked,
// and restored before it is unlocked, or the Go runtime hands a goroutine a
// thread that lives in the wrong namespace. Keeping the few lines that do it
// in one place means no other package ever calls netns.Set.
package netnsx

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
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
// `ip netns` uses) and returns a handle to it.
func NewNamed(name string) (netns.NsHandle, error) {
	return create(fmt.Sprintf("netns %q", name), func() (netns.NsHandle, error) { return netns.NewNamed(name) })
}

// create runs newNS, which switches the calling thread into the namespace it
// creates, on a locked thread, and switches that thread back afterwards.
func create(what string, newNS func() (netns.NsHandle, error)) (netns.NsHandle, error) {
	var h netns.NsHandle
	err := doLocked(func() error {
		origin, err := netns.Get()
		if err != nil {
			return fmt.Errorf("get current netns: %w", err)
		}
		defer origin.Close()
		h, err = newNS()
		if err != nil {
			return fmt.Errorf("create %s: %w", what, err)
		}
		if err := netns.Set(origin); err != nil {
			h.Close()
			return errKeepLocked{fmt.Errorf("restore netns after creating %s: %w", what, err)}
		}
		return nil
	})
	return h, err
}

// DeleteNamed removes the /run/netns/<name> binding. The namespace itself
// disappears once no handle, socket or process refers to it.
func DeleteNamed(name string) error {
	if err := netns.DeleteNamed(name); err != nil {
		return fmt.Errorf("delete netns %q: %w", name, err)
	}
	return nil
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
