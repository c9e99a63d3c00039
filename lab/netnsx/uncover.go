package netnsx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// What a covered binding looks like (found on this kernel, 6.18, with
// iproute2 6.1, in a private mount namespace). A lab namespace bound while
// /run/netns was a plain directory is mount 64 below; `ip netns add X` then
// mounted /run/netns over itself (65), copying 64 into the new mount (66):
//
//	63 ... /        /run               tmpfs
//	64 63  net:[A]  /run/netns/tfo-a   nsfs   <- hidden: its parent is 63
//	65 63  /netns   /run/netns         tmpfs  shared
//	66 65  net:[A]  /run/netns/tfo-a   nsfs   <- what lookups of the path reach
//	67 65  net:[X]  /run/netns/X       nsfs
//
// Unmounting the path removes 66; the unlink then fails with EBUSY because
// the file is still a mount point in 63, and a second unmount gives EINVAL.
// When the parent (63) is shared, as systemd sets /run up, 65 is 63's peer
// and the unmount of 66 propagates to 64, so nothing stays behind; since
// iproute2 82c8b9fe puts 65 in a peer group of its own, it does stay.
//
// Nothing can unmount 64 by a path while 65 sits on /run/netns. So, holding
// the exclusive lock on /run/netns, removeCovered moves 65 (with everything
// bound in it) aside, opens /run/netns (now the directory in 63), and moves
// 65 straight back: three system calls during which `ip netns` sees an
// empty-looking /run/netns. Through that descriptor, /proc/self/fd/N/tfo-a
// reaches 64 even with 65 back in place, so 64 is unmounted and the file
// unlinked from there. The kernel refuses to move a mount whose parent is
// shared, and iproute2 makes every self-bind shared, so this works for one
// self-bind over a private parent only; in every other case removeCovered
// returns an error that says what to run.

// removeCovered removes RunDir/name when lookups of the path no longer reach
// its binding. Called after unlink failed with EBUSY.
func removeCovered(name string) error {
	path := filepath.Join(RunDir, name)
	unlock, err := lockRunDir(unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()

	mounts, err := readMountinfo()
	if err != nil {
		return err
	}
	l, err := layersAt(mounts, RunDir, name)
	if err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	// Layers the path reaches (several, if binds were stacked) go first.
	for range l.visible {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			break
		}
	}
	if len(l.hidden) == 0 {
		if err := unix.Unlink(path); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s: %w (and /proc/self/mountinfo shows no binding under a later mount of %s)", path, err, RunDir)
		}
		return nil
	}
	if reason := uncoverable(l); reason != "" {
		return coveredError(path, l, reason)
	}

	aside := filepath.Join(filepath.Dir(RunDir), fmt.Sprintf(".tfolab-uncover-%d", os.Getpid()))
	if err := os.Mkdir(aside, 0o700); err != nil {
		return coveredError(path, l, fmt.Sprintf("cannot make a place to move it to: %v", err))
	}
	fd, err := openUncovered(aside)
	if err != nil {
		var stuck errStuckAside
		if !errors.As(err, &stuck) {
			os.Remove(aside)
		}
		return fmt.Errorf("remove %s: %w", path, err)
	}
	os.Remove(aside)
	defer unix.Close(fd)

	via := fmt.Sprintf("/proc/self/fd/%d/%s", fd, name)
	for range l.hidden {
		if err := unix.Unmount(via, unix.MNT_DETACH); err != nil {
			break
		}
	}
	if err := unix.Unlinkat(fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return coveredError(path, l, fmt.Sprintf("unlink through the uncovered directory failed: %v", err))
	}
	return nil
}

// uncoverable says why removeCovered cannot reach the hidden binding, or ""
// if it can.
func uncoverable(l fileLayers) string {
	if len(l.dirStack) != 1 {
		return fmt.Sprintf("%d mounts of %s are stacked on each other", len(l.dirStack), RunDir)
	}
	if l.container.Shared {
		return fmt.Sprintf("the mount holding %s, %s, is shared, and the kernel does not move a mount off a shared parent", RunDir, l.container)
	}
	for _, h := range l.hidden {
		if h.Parent != l.container.ID {
			return fmt.Sprintf("%s hangs off a mount other than %s", h, l.container)
		}
	}
	return ""
}

type errStuckAside struct{ error }

func (e errStuckAside) Unwrap() error { return e.error }

// openUncovered moves the mount on RunDir to aside, opens the directory it
// covered, and moves the mount back.
func openUncovered(aside string) (int, error) {
	if err := unix.Mount(RunDir, aside, "", unix.MS_MOVE, ""); err != nil {
		return -1, fmt.Errorf("move the mount on %s aside: %w", RunDir, err)
	}
	fd, oerr := unix.Open(RunDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err := unix.Mount(aside, RunDir, "", unix.MS_MOVE, ""); err != nil {
		if oerr == nil {
			unix.Close(fd)
		}
		return -1, errStuckAside{fmt.Errorf("moved the mount on %s to %s and could not move it back (%w); every `ip netns` name is hidden until you run: mount --move %s %s", RunDir, aside, err, aside, RunDir)}
	}
	if oerr != nil {
		return -1, fmt.Errorf("open the covered %s: %w", RunDir, oerr)
	}
	return fd, nil
}

// coveredError explains a binding this process cannot remove and what a
// human can do about it.
func coveredError(path string, l fileLayers, reason string) error {
	var hidden []string
	for _, h := range l.hidden {
		hidden = append(hidden, strconv.Itoa(h.ID))
	}
	top := l.dirStack[len(l.dirStack)-1]
	return fmt.Errorf("remove %s: %w: still bound (mount %s) under %s, a mount of %s over itself that `ip netns add` made while %s was not a mount point, "+
		"and out of reach because %s. To free it, stop whatever uses `ip netns` and run as root: umount --lazy %s (until `findmnt %s` shows nothing), then tfolab sweep "+
		"(names bound only inside the covering mount lose their entry in %s)",
		path, unix.EBUSY, strings.Join(hidden, ", "), top, RunDir, RunDir, reason, RunDir, RunDir, RunDir)
}

// NamespaceID identifies a network namespace by the device and inode of its
// nsfs file, as stat(2) of /proc/PID/ns/net reports them.
type NamespaceID struct{ Dev, Ino uint64 }

// LookupNamed returns the identity of the namespace bound at
// /run/netns/<name>, including one hidden by a later mount of /run/netns
// over itself; ok is false when no namespace is bound there (a plain file).
func LookupNamed(name string) (id NamespaceID, ok bool, err error) {
	if err := checkName(name); err != nil {
		return NamespaceID{}, false, err
	}
	path := filepath.Join(RunDir, name)
	var self, st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		return NamespaceID{}, false, fmt.Errorf("stat /proc/self/ns/net: %w", err)
	}
	if err := unix.Stat(path, &st); err != nil {
		return NamespaceID{}, false, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Dev == self.Dev {
		return NamespaceID{Dev: st.Dev, Ino: st.Ino}, true, nil
	}
	mounts, err := readMountinfo()
	if err != nil {
		return NamespaceID{}, false, err
	}
	l, err := layersAt(mounts, RunDir, name)
	if err != nil {
		return NamespaceID{}, false, err
	}
	for _, m := range l.hidden {
		ino, found := strings.CutPrefix(m.Root, "net:[")
		if n, perr := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 64); found && perr == nil && m.FSType == "nsfs" {
			return NamespaceID{Dev: m.Dev, Ino: n}, true, nil
		}
	}
	return NamespaceID{}, false, nil
}
