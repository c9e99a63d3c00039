// Package kernelvm runs tfolab under another Linux kernel: it finds the
// kernel (a vmlinuz path, or a Debian package it downloads and unpacks
// into the lab's own cache), builds a small initramfs that loads the
// guest's own 9p modules and mounts the host's root read-only, boots it in
// QEMU (KVM when /dev/kvm is usable, TCG otherwise), runs `tfolab report`
// inside, and brings the report back. The guest shares the host's
// userspace (the same tfolab binary, iptables, nft, nginx, curl): nothing
// is downloaded for it and nothing is installed on the host.
//
// It sits beside cmd/tfolab and imports nothing of the lab: the guest side
// (Guest) runs as the VM's PID 1 and starts the report as a child.
package kernelvm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ErrBadKernel marks a kernel argument the lab cannot use (no such file,
// not a bzImage, an unknown Debian series): bad input, exit 2.
var ErrBadKernel = errors.New("bad kernel")

// Kernel is one kernel to boot.
type Kernel struct {
	// Spec is what the user asked for: "debian:6.12", a path, "host".
	Spec string `json:"spec"`
	// Image is the bzImage; ModRoot the folder holding
	// lib/modules/<Release> (empty: the kernel has no modules to load).
	Image   string `json:"image,omitempty"`
	ModRoot string `json:"mod_root,omitempty"`
	// Release is the kernel's own release string (uname -r).
	Release string `json:"release,omitempty"`
	// Package is the Debian package it came from, if any.
	Package string `json:"package,omitempty"`
}

// Host reports whether k is the running kernel (no VM).
func (k Kernel) Host() bool { return k.Spec == "host" || k.Spec == "" }

// Slug is a file-name-safe name for the kernel, used for output folders:
// "debian-6.12", "host", "vmlinuz-6.1.0-57-amd64".
func Slug(spec string) string {
	if spec == "" || spec == "host" {
		return "host"
	}
	s := strings.TrimPrefix(spec, "debian:")
	if s != spec {
		s = "debian-" + s
	} else {
		s = filepath.Base(spec)
	}
	return regexp.MustCompile(`[^A-Za-z0-9._+-]+`).ReplaceAllString(s, "_")
}

// debianSpec matches "debian:6.12".
var debianSpec = regexp.MustCompile(`^debian:(\d+\.\d+)$`)

// debianImage matches a Debian kernel image package for amd64:
// linux-image-6.1.0-57-amd64, linux-image-6.12.118+deb12-amd64.
var debianImage = regexp.MustCompile(`^linux-image-(\d+\.\d+)[.-](\d+(?:-\d+)?(?:\+deb\d+)?)-amd64$`)

// ParseSpec checks a kernel argument's form without touching the
// network: "host", "debian:X.Y" or a path to an existing file.
func ParseSpec(spec string) error {
	switch {
	case spec == "host":
		return nil
	case strings.HasPrefix(spec, "debian:"):
		if !debianSpec.MatchString(spec) {
			return fmt.Errorf("%w: %q: want debian:MAJOR.MINOR (debian:6.1, debian:6.12)", ErrBadKernel, spec)
		}
		return nil
	}
	fi, err := os.Stat(spec)
	if err != nil {
		return fmt.Errorf("%w: %s: no such file (want a vmlinuz path, debian:6.1, debian:6.12 or host)", ErrBadKernel, spec)
	}
	if fi.IsDir() {
		return fmt.Errorf("%w: %s is a folder, not a kernel image", ErrBadKernel, spec)
	}
	return nil
}

// PickDebian returns the newest package of series ("6.12") among names,
// newest first with the rest after it (a fallback if one cannot be
// downloaded).
func PickDebian(names []string, series string) []string {
	type cand struct {
		name string
		key  []int
	}
	var cs []cand
	for _, n := range names {
		m := debianImage.FindStringSubmatch(strings.TrimSpace(n))
		if m == nil || m[1] != series {
			continue
		}
		var key []int
		for _, f := range regexp.MustCompile(`\d+`).FindAllString(m[2], -1) {
			v, _ := strconv.Atoi(f)
			key = append(key, v)
		}
		cs = append(cs, cand{m[0], key})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i].key, cs[j].key
		for x := 0; x < len(a) && x < len(b); x++ {
			if a[x] != b[x] {
				return a[x] > b[x]
			}
		}
		return len(a) > len(b)
	})
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.name
	}
	return out
}

// ImageRelease reads the kernel release from a bzImage's setup header
// (the kernel_version pointer at 0x20E, Documentation/arch/x86/boot.rst):
// "6.12.118+deb12-amd64". Anything that is not a bzImage is refused.
func ImageRelease(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadKernel, err)
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return "", fmt.Errorf("%w: %s: too short to be a kernel image", ErrBadKernel, path)
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return "", fmt.Errorf("%w: %s is not a Linux bzImage (no HdrS boot header)", ErrBadKernel, path)
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20E:])) + 0x200
	buf := make([]byte, 256)
	n, err := f.ReadAt(buf, off)
	if n == 0 {
		return "", fmt.Errorf("%w: %s: no version string: %v", ErrBadKernel, path, err)
	}
	buf = buf[:n]
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	rel, _, _ := strings.Cut(string(buf), " ")
	if rel == "" {
		return "", fmt.Errorf("%w: %s: empty version string", ErrBadKernel, path)
	}
	return rel, nil
}

// DefaultCache is the lab's kernel cache, relative to the checkout.
const DefaultCache = ".cache/kernels"

// CacheDir is where package pkg is unpacked under cache.
func CacheDir(cache, pkg string) string { return filepath.Join(cache, pkg) }

// readyFile marks a complete unpacked package (written last).
const readyFile = ".tfolab-ready"

// Resolve turns a spec into a bootable kernel: a path is read as it is
// (its modules looked for beside it: <root>/lib/modules/<release> for
// <root>/boot/vmlinuz-*, else /lib/modules/<release>); debian:X.Y is the
// newest such package already in the cache, else the newest the host's
// apt knows, downloaded (apt-get download) and unpacked (dpkg-deb -x,
// depmod -b) into the cache. logf reports each step.
func Resolve(ctx context.Context, spec, cache string, logf func(string, ...any)) (Kernel, error) {
	if err := ParseSpec(spec); err != nil {
		return Kernel{}, err
	}
	if spec == "host" {
		return Kernel{Spec: spec}, nil
	}
	if m := debianSpec.FindStringSubmatch(spec); m != nil {
		return resolveDebian(ctx, spec, m[1], cache, logf)
	}
	abs, err := filepath.Abs(spec)
	if err != nil {
		return Kernel{}, fmt.Errorf("%w: %v", ErrBadKernel, err)
	}
	rel, err := ImageRelease(abs)
	if err != nil {
		return Kernel{}, err
	}
	k := Kernel{Spec: spec, Image: abs, Release: rel}
	if dir := filepath.Dir(abs); filepath.Base(dir) == "boot" {
		if root := filepath.Dir(dir); exists(filepath.Join(root, "lib/modules", rel)) {
			k.ModRoot = root
		}
	}
	if k.ModRoot == "" && exists(filepath.Join("/lib/modules", rel)) {
		k.ModRoot = "/"
	}
	return k, nil
}

func resolveDebian(ctx context.Context, spec, series, cache string, logf func(string, ...any)) (Kernel, error) {
	// Already unpacked: the newest cached one of the series.
	entries, _ := os.ReadDir(cache)
	var cached []string
	for _, e := range entries {
		if exists(filepath.Join(cache, e.Name(), readyFile)) {
			cached = append(cached, e.Name())
		}
	}
	if c := PickDebian(cached, series); len(c) > 0 {
		return fromCache(spec, cache, c[0])
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "pkgnames", "linux-image-").Output()
	if err != nil {
		return Kernel{}, fmt.Errorf("listing Debian kernel packages (apt-cache pkgnames linux-image-): %w", err)
	}
	cands := PickDebian(strings.Split(string(out), "\n"), series)
	if len(cands) == 0 {
		return Kernel{}, fmt.Errorf("%w: %s: apt knows no linux-image-%s.*-amd64 package on this host (apt-get update? a Debian 12 source list?)", ErrBadKernel, spec, series)
	}
	var errs []error
	for _, pkg := range cands[:min(len(cands), 3)] {
		logf("kernel %s: downloading %s into %s", spec, pkg, cache)
		if err := fetchDebian(ctx, cache, pkg); err != nil {
			errs = append(errs, err)
			// Only a failed download tries an older package.
			if ctx.Err() != nil || !errors.Is(err, errDownload) {
				break
			}
			continue
		}
		return fromCache(spec, cache, pkg)
	}
	return Kernel{}, fmt.Errorf("kernel %s: %w", spec, errors.Join(errs...))
}

func fromCache(spec, cache, pkg string) (Kernel, error) {
	root := CacheDir(cache, pkg)
	b, err := os.ReadFile(filepath.Join(root, readyFile))
	if err != nil {
		return Kernel{}, fmt.Errorf("kernel cache %s: %w", root, err)
	}
	rel := strings.TrimSpace(string(b))
	abs, err := filepath.Abs(root)
	if err != nil {
		return Kernel{}, err
	}
	return Kernel{Spec: spec, Package: pkg, Release: rel,
		Image: filepath.Join(abs, "boot", "vmlinuz-"+rel), ModRoot: abs}, nil
}

// fetchDebian downloads pkg and unpacks it into cache/pkg, atomically: a
// half-done download leaves only a .part folder, removed on the next try.
func fetchDebian(ctx context.Context, cache, pkg string) error {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("kernel cache %s: %w", cache, err)
	}
	part := filepath.Join(cache, pkg+".part")
	os.RemoveAll(part)
	if err := os.MkdirAll(filepath.Join(part, "deb"), 0o755); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	defer os.RemoveAll(part)
	// apt drops privileges to _apt for downloads: let it write there.
	_ = os.Chmod(filepath.Join(part, "deb"), 0o777)
	dl := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
	dl.Dir = filepath.Join(part, "deb")
	if out, err := dl.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: apt-get download %s: %v: %s", errDownload, pkg, err, lastLine(out))
	}
	debs, _ := filepath.Glob(filepath.Join(part, "deb", "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s: want one .deb, found %d", pkg, len(debs))
	}
	root := filepath.Join(part, "root")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", filepath.Base(debs[0]), err, lastLine(out))
	}
	images, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return fmt.Errorf("%s: want one boot/vmlinuz-*, found %d", pkg, len(images))
	}
	rel := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	// The package ships no modules.dep (its postinst runs depmod): build
	// it inside the cache, for the initramfs and the guest's modprobe.
	if out, err := exec.CommandContext(ctx, depmodPath(), "-b", root, rel).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod -b %s %s: %w: %s", root, rel, err, lastLine(out))
	}
	if err := os.WriteFile(filepath.Join(root, readyFile), []byte(rel+"\n"), 0o644); err != nil {
		return err
	}
	dst := CacheDir(cache, pkg)
	os.RemoveAll(dst)
	if err := os.Rename(root, dst); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	return nil
}

var errDownload = errors.New("download failed")

func depmodPath() string {
	for _, p := range []string{"/usr/sbin/depmod", "/sbin/depmod"} {
		if exists(p) {
			return p
		}
	}
	return "depmod"
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
