package kernelvm

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/ulikunitz/xz"
)

// BootModules are the modules the initramfs needs to mount the host's
// root over virtio-9p: the transport and the filesystem. Their
// dependencies (netfs, fscache, virtio, virtio_ring ...) come from the
// kernel's own modules.dep; a module the kernel has built in
// (modules.builtin) is skipped.
var BootModules = []string{"virtio_pci", "9pnet_virtio", "9p"}

// Mount tags of the 9p shares (QEMU's mount_tag, the guest's mount source).
const (
	TagRoot   = "hostroot"  // the host's /, read-only
	TagKernel = "guestkern" // the guest kernel's own root (lib/modules), read-only
	TagJob    = "tfolabjob" // the job folder: tfolab binary, job.json, out/ (read-write)
)

// Paths inside the guest.
const (
	GuestJobDir    = "/run/tfolab"
	GuestKernelDir = "/run/tfolab-kernel"
	GuestModprobe  = "/run/tfolab-modprobe"
)

// ModuleOrder returns the module files (paths relative to
// lib/modules/<release>) to load, dependencies first, for the modules
// wanted. modulesDep is the text of modules.dep, builtin that of
// modules.builtin. A wanted module that is neither a module nor built in
// is an error: the kernel cannot mount 9p.
func ModuleOrder(modulesDep, builtin string, wanted []string) ([]string, error) {
	deps := map[string][]string{} // module name -> its deps' files
	files := map[string]string{}  // module name -> its file
	for _, line := range strings.Split(modulesDep, "\n") {
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name := moduleName(file)
		files[name] = file
		deps[name] = strings.Fields(rest)
	}
	built := map[string]bool{}
	for _, line := range strings.Split(builtin, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			built[moduleName(line)] = true
		}
	}
	var order []string
	seen := map[string]bool{}
	var visit func(name string) error
	visit = func(name string) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		file, ok := files[name]
		if !ok {
			if built[name] {
				return nil
			}
			return fmt.Errorf("kernel has no module %s (neither in modules.dep nor built in)", name)
		}
		// modules.dep lists a module's dependencies, the deepest last.
		d := deps[name]
		for i := len(d) - 1; i >= 0; i-- {
			if err := visit(moduleName(d[i])); err != nil {
				return err
			}
		}
		order = append(order, file)
		return nil
	}
	for _, w := range wanted {
		if err := visit(normalise(w)); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleName is "9pnet_virtio" for "kernel/net/9p/9pnet_virtio.ko.xz".
func moduleName(file string) string {
	b := filepath.Base(strings.TrimSpace(file))
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return normalise(b)
}

func normalise(name string) string { return strings.ReplaceAll(name, "-", "_") }

// TmpfsDirs are the host folders the guest replaces with its own tmpfs.
var TmpfsDirs = []string{"/run", "/tmp", "/var/tmp", "/root", "/var/log"}

// KeepDirs are those of dirs (the report's working folder) that a tmpfs
// would hide: the guest binds them back from the host's root (read-only).
func KeepDirs(dirs ...string) []string {
	var keep []string
	for _, d := range dirs {
		d = filepath.Clean(d)
		for _, t := range TmpfsDirs {
			if d == t || strings.HasPrefix(d, t+"/") {
				keep = append(keep, d)
				break
			}
		}
	}
	return keep
}

// InitScript is the initramfs's /init (busybox sh): load the 9p modules,
// mount the host's / read-only with tmpfs where the guest writes (keep:
// folders under those it binds back from the host), mount the job and the
// kernel's modules, point the kernel's modprobe at the guest's own
// modules, and switch_root into `tfolab vm-guest`.
func InitScript(modules []string, withKernelShare bool, keep ...string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
B=/bin/busybox
fail() { echo "tfolab-vm: init: $*"; echo "tfolab-vm: init failed"; $B poweroff -f; }
$B mkdir -p /proc /sys /dev /newroot
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
echo "tfolab-vm: initramfs up $($B cut -d' ' -f1 /proc/uptime) s"
`)
	for _, m := range modules {
		fmt.Fprintf(&b, "$B insmod /modules/%s || fail \"insmod %s\"\n", filepath.Base(strings.TrimSuffix(strings.TrimSuffix(m, ".xz"), ".zst")), m)
	}
	fmt.Fprintf(&b, `o=trans=virtio,version=9p2000.L,msize=524288
$B mount -t 9p -o $o,ro,cache=loose %[1]s /newroot || fail "mount the host's / over 9p"
`, TagRoot)
	// Folders a tmpfs would hide (the working folder of a checkout in
	// /tmp): bound aside first, moved back on top after.
	for i, d := range keep {
		fmt.Fprintf(&b, "$B mkdir -p /keep/%[1]d && $B mount --bind '/newroot%[2]s' /keep/%[1]d || fail \"bind %[2]s\"\n", i, d)
	}
	fmt.Fprintf(&b, `for d in %[1]s; do
	[ -d /newroot$d ] && { $B mount -t tmpfs -o mode=0755 tmpfs /newroot$d || fail "tmpfs on $d"; }
done
$B chmod 1777 /newroot/tmp /newroot/var/tmp
`, strings.Join(TmpfsDirs, " "))
	for i, d := range keep {
		fmt.Fprintf(&b, "$B mkdir -p '/newroot%[2]s' && $B mount --move /keep/%[1]d '/newroot%[2]s' || fail \"bind %[2]s back\"\n", i, d)
	}
	fmt.Fprintf(&b, `$B mkdir -p /newroot%[1]s /newroot%[2]s
$B mount -t 9p -o $o %[3]s /newroot%[1]s || fail "mount the job folder"
`, GuestJobDir, GuestKernelDir, TagJob)
	if withKernelShare {
		fmt.Fprintf(&b, `$B mount -t 9p -o $o,ro,cache=loose %[1]s /newroot%[2]s || fail "mount the kernel's modules"
printf '#!/bin/sh\nexec /sbin/modprobe -d %[2]s "$@"\n' > /newroot%[3]s
$B chmod 755 /newroot%[3]s
echo %[3]s > /proc/sys/kernel/modprobe
`, TagKernel, GuestKernelDir, GuestModprobe)
	}
	fmt.Fprintf(&b, `$B mount --move /dev /newroot/dev
$B mount --move /sys /newroot/sys
$B mount --move /proc /newroot/proc
exec $B switch_root /newroot %[1]s/tfolab vm-guest %[1]s/job.json
`, GuestJobDir)
	return b.String()
}

// BuildInitramfs writes a newc cpio archive to w: busybox, the boot
// modules (decompressed: busybox's insmod takes plain ELF) and /init.
// modRoot is the folder that holds lib/modules/<release>; with none, the
// kernel must have 9p built in.
func BuildInitramfs(w io.Writer, busybox, modRoot, release string, keep ...string) error {
	var modules []string
	modDir := ""
	if modRoot != "" {
		modDir = filepath.Join(modRoot, "lib", "modules", release)
		dep, err := os.ReadFile(filepath.Join(modDir, "modules.dep"))
		if err != nil {
			return fmt.Errorf("initramfs: %w (run depmod for this kernel)", err)
		}
		builtin, _ := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
		if modules, err = ModuleOrder(string(dep), string(builtin), BootModules); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	cw := cpio.NewWriter(w)
	now := time.Unix(0, 0)
	dir := func(name string) error {
		return cw.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeDir | 0o755, ModTime: now})
	}
	file := func(name string, mode cpio.FileMode, data []byte) error {
		if err := cw.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeReg | mode, Size: int64(len(data)), ModTime: now}); err != nil {
			return err
		}
		_, err := cw.Write(data)
		return err
	}
	for _, d := range []string{"bin", "modules", "proc", "sys", "dev", "newroot"} {
		if err := dir(d); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("initramfs: busybox: %w (install busybox-static: make deps)", err)
	}
	if err := checkStatic(busybox, bb); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := file("bin/busybox", 0o755, bb); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	for _, m := range modules {
		data, err := readModule(filepath.Join(modDir, m))
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		name := filepath.Base(strings.TrimSuffix(strings.TrimSuffix(m, ".xz"), ".zst"))
		if err := file("modules/"+name, 0o644, data); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	if err := file("init", 0o755, []byte(InitScript(modules, modRoot != "", keep...))); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// checkStatic refuses a dynamically linked busybox (Debian's busybox
// package, not busybox-static): the initramfs has no libc.
func checkStatic(path string, b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s is not an ELF executable: %w", path, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: the initramfs needs busybox-static (apt-get install busybox-static)", path)
		}
	}
	return nil
}

// readModule reads a module file, decompressing .ko.xz.
func readModule(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasSuffix(path, ".xz"):
		r, err := xz.NewReader(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return io.ReadAll(r)
	case strings.HasSuffix(path, ".zst"):
		return nil, fmt.Errorf("%s: zstd-compressed modules are not supported", path)
	}
	return raw, nil
}
