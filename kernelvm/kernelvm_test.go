package kernelvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
)

func TestPickDebianNewestFirst(t *testing.T) {
	names := []string{
		"linux-image-6.1.0-9-amd64", "linux-image-6.1.0-57-amd64", "linux-image-6.1.0-57-cloud-amd64",
		"linux-image-6.1.0-57-amd64-dbg", "linux-image-6.1.0-57-rt-amd64", "linux-image-amd64",
		"linux-image-6.12-amd64", "linux-image-6.12.118+deb12-amd64", "linux-image-6.12.9+deb12-amd64",
		"linux-image-6.12.100+deb12-amd64", "linux-image-6.12.118+deb12-cloud-amd64",
		"linux-image-6.1.0-57-amd64-unsigned",
	}
	if got, want := PickDebian(names, "6.1"), []string{"linux-image-6.1.0-57-amd64", "linux-image-6.1.0-9-amd64"}; !slices.Equal(got, want) {
		t.Errorf("6.1: got %v, want %v", got, want)
	}
	if got, want := PickDebian(names, "6.12"), []string{"linux-image-6.12.118+deb12-amd64", "linux-image-6.12.100+deb12-amd64", "linux-image-6.12.9+deb12-amd64"}; !slices.Equal(got, want) {
		t.Errorf("6.12: got %v, want %v", got, want)
	}
	if got := PickDebian(names, "5.10"); len(got) != 0 {
		t.Errorf("5.10: got %v, want none", got)
	}
}

func TestParseSpecAndSlug(t *testing.T) {
	for _, ok := range []string{"host", "debian:6.1", "debian:6.12"} {
		if err := ParseSpec(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"debian:six", "debian:", "/no/such/vmlinuz", t.TempDir()} {
		if err := ParseSpec(bad); !errors.Is(err, ErrBadKernel) {
			t.Errorf("%s: got %v, want ErrBadKernel", bad, err)
		}
	}
	for in, want := range map[string]string{"host": "host", "": "host", "debian:6.12": "debian-6.12",
		"/boot/vmlinuz-6.1.0-57-amd64": "vmlinuz-6.1.0-57-amd64", "a b/vm linuz": "vm_linuz"} {
		if got := Slug(in); got != want {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestImageRelease(t *testing.T) {
	dir := t.TempDir()
	img := make([]byte, 0x400)
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x20E:], 0x100) // string at 0x300
	copy(img[0x300:], "6.12.118+deb12-amd64 (debian-kernel@lists.debian.org) #1 SMP\x00")
	good := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(good, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if rel, err := ImageRelease(good); err != nil || rel != "6.12.118+deb12-amd64" {
		t.Errorf("got %q, %v", rel, err)
	}
	bad := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(bad, bytes.Repeat([]byte("x"), 0x400), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ImageRelease(bad); !errors.Is(err, ErrBadKernel) || !strings.Contains(err.Error(), "not a Linux bzImage") {
		t.Errorf("a text file: got %v", err)
	}
}

// The dependency closure follows modules.dep (6.1: virtio_pci is a
// module with its own deps; 6.12: virtio_pci is built in).
func TestModuleOrder(t *testing.T) {
	dep61 := `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
`
	got, err := ModuleOrder(dep61, "", BootModules)
	if err != nil {
		t.Fatal(err)
	}
	pos := func(name string) int {
		return slices.IndexFunc(got, func(f string) bool { return moduleName(f) == name })
	}
	for _, pair := range [][2]string{{"virtio", "virtio_ring"}, {"virtio_ring", "virtio_pci"}, {"virtio_pci_modern_dev", "virtio_pci"},
		{"9pnet", "9pnet_virtio"}, {"netfs", "fscache"}, {"fscache", "9p"}} {
		if a, b := pos(pair[0]), pos(pair[1]); a < 0 || b < 0 || a > b {
			t.Errorf("%s must load before %s: %v", pair[0], pair[1], got)
		}
	}
	if len(got) != 10 {
		t.Errorf("want 10 modules, each once: %v", got)
	}
	dep612 := "kernel/fs/netfs/netfs.ko.xz:\nkernel/net/9p/9pnet.ko.xz:\nkernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\nkernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\n"
	got, err = ModuleOrder(dep612, "kernel/drivers/virtio/virtio_pci.ko\n", BootModules)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"kernel/net/9p/9pnet.ko.xz", "kernel/net/9p/9pnet_virtio.ko.xz", "kernel/fs/netfs/netfs.ko.xz", "kernel/fs/9p/9p.ko.xz"}; !slices.Equal(got, want) {
		t.Errorf("6.12: got %v, want %v", got, want)
	}
	if _, err := ModuleOrder(dep612, "", BootModules); err == nil || !strings.Contains(err.Error(), "virtio_pci") {
		t.Errorf("a kernel without virtio_pci: got %v", err)
	}
}

func TestDynamicBusyboxRefused(t *testing.T) {
	b, err := os.ReadFile("/bin/ls")
	if err != nil {
		t.Skip("no /bin/ls")
	}
	if err := checkStatic("/bin/ls", b); err == nil || !strings.Contains(err.Error(), "busybox-static") {
		t.Errorf("a dynamic executable: got %v", err)
	}
}

func TestQEMUArgs(t *testing.T) {
	c := Config{Kernel: Kernel{Spec: "debian:6.12", Image: "/c/vmlinuz", ModRoot: "/c"}, Engine: TCG, VCPUs: 2, MemoryMB: 2048}
	a := strings.Join(QEMUArgs(c, "/j/initramfs.cpio", "/j"), " ")
	for _, want := range []string{
		"-accel tcg,thread=multi -cpu max", "-smp 2 -m 2048", "-kernel /c/vmlinuz -initrd /j/initramfs.cpio",
		"-nic none", "-no-reboot",
		"path=/,readonly=on,security_model=none,multidevs=remap", "mount_tag=" + TagRoot,
		"id=" + TagJob + ",path=/j,security_model=none", "id=" + TagKernel + ",path=/c,readonly=on",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("QEMU args lack %q:\n%s", want, a)
		}
	}
	if strings.Contains(a, "-netdev") || strings.Contains(a, "user,") {
		t.Errorf("the VM must have no host network: %s", a)
	}
	c.Engine, c.Kernel.ModRoot = KVM, ""
	a = strings.Join(QEMUArgs(c, "/j/i", "/j"), " ")
	if !strings.Contains(a, "-accel kvm -cpu host") || strings.Contains(a, TagKernel) {
		t.Errorf("KVM, no modules: %s", a)
	}
}

func TestInitramfsCarriesBusyboxModulesAndInit(t *testing.T) {
	root := t.TempDir()
	mods := filepath.Join(root, "lib", "modules", "6.9.0-test")
	if err := os.MkdirAll(filepath.Join(mods, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(mods, "modules.dep"), "kernel/9pnet.ko:\nkernel/9pnet_virtio.ko: kernel/9pnet.ko\nkernel/9p.ko: kernel/9pnet.ko\n")
	write(filepath.Join(mods, "modules.builtin"), "kernel/drivers/virtio/virtio_pci.ko\n")
	for _, m := range []string{"9pnet", "9pnet_virtio", "9p"} {
		write(filepath.Join(mods, "kernel", m+".ko"), "ELF "+m)
	}
	// Any static executable stands in for busybox: this test binary is
	// one if built without cgo; else the real busybox-static.
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Skip("no /bin/busybox (busybox-static)")
	}
	var buf bytes.Buffer
	if err := BuildInitramfs(&buf, bb, root, "6.9.0-test"); err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(&buf)
	files := map[string]string{}
	for {
		h, err := r.Next()
		if err != nil {
			break
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(r)
		files[h.Name] = b.String()
	}
	if len(files["bin/busybox"]) < 100000 || files["modules/9pnet_virtio.ko"] != "ELF 9pnet_virtio" {
		t.Errorf("initramfs files: %v", slices.Sorted(func(yield func(string) bool) {
			for k := range files {
				if !yield(k) {
					return
				}
			}
		}))
	}
	init := files["init"]
	for _, want := range []string{"insmod /modules/9pnet.ko", "mount -t 9p", TagRoot + " /newroot",
		"switch_root /newroot " + GuestJobDir + "/tfolab vm-guest", "/proc/sys/kernel/modprobe", "tmpfs"} {
		if !strings.Contains(init, want) {
			t.Errorf("/init lacks %q:\n%s", want, init)
		}
	}
	if strings.Index(init, "insmod /modules/9pnet.ko") > strings.Index(init, "insmod /modules/9p.ko") {
		t.Errorf("9pnet must load before 9p:\n%s", init)
	}
}

// A checkout in /tmp (a fresh clone in CI) stays visible under the
// guest's own tmpfs.
func TestKeepDirsUnderTmpfs(t *testing.T) {
	if got := KeepDirs("/tmp/clone", "/work/tfolab", "/root/src/x", "/tmpfoo", "/run"); !slices.Equal(got, []string{"/tmp/clone", "/root/src/x", "/run"}) {
		t.Errorf("KeepDirs = %v", got)
	}
	s := InitScript(nil, false, "/tmp/clone")
	bind, tmpfs, back := strings.Index(s, "mount --bind '/newroot/tmp/clone' /keep/0"), strings.Index(s, "mount -t tmpfs"), strings.Index(s, "mount --move /keep/0 '/newroot/tmp/clone'")
	if bind < 0 || tmpfs < 0 || back < 0 || !(bind < tmpfs && tmpfs < back) {
		t.Errorf("bind aside, tmpfs, move back, in that order:\n%s", s)
	}
}
