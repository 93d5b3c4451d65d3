package vmrouter

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/calico-lb/calico-lb/tests/cluster"
)

// The guest's kernel is Debian's (linux-image-amd64, the package the
// registry serves today), unpacked once into .cache/vm: the kernel image
// and the few modules the guest loads, in load order.
var modules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
	"failover", "net_failover", "virtio_net", "virtio_console",
	"netfs", "fscache", "9pnet", "9pnet_virtio", "9p",
	"vrf",
}

// Kernel is an unpacked guest kernel.
type Kernel struct {
	Image   string   // vmlinuz
	Modules []string // .ko files, in load order
}

var (
	kernelOnce sync.Once
	kernel     *Kernel
	kernelErr  error
)

// EnsureKernel returns the cached kernel, downloading and unpacking
// Debian's on first use.
func EnsureKernel() (*Kernel, error) {
	kernelOnce.Do(func() { kernel, kernelErr = ensureKernel(filepath.Join(cluster.Root(), ".cache", "vm")) })
	return kernel, kernelErr
}

var dependsOn = regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*)`)

func ensureKernel(cache string) (*Kernel, error) {
	if k, err := unpacked(cache); err == nil {
		return k, nil
	}
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("apt-cache depends linux-image-amd64: %w: %s", err, out)
	}
	m := dependsOn.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("linux-image-amd64 names no kernel package (apt-get update?): %s", out)
	}
	if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(cache), "vm-download-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	get := exec.Command("apt-get", "download", string(m[1]))
	get.Dir = tmp
	if out, err := get.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s: %w: %s", m[1], err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s left %d packages", m[1], len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x: %w: %s", err, out)
	}
	staged := filepath.Join(tmp, "vm")
	if err := os.MkdirAll(filepath.Join(staged, "modules"), 0o755); err != nil {
		return nil, err
	}
	images, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return nil, fmt.Errorf("%s holds %d kernel images", debs[0], len(images))
	}
	if err := os.Rename(images[0], filepath.Join(staged, "vmlinuz")); err != nil {
		return nil, err
	}
	found := map[string]string{}
	_ = filepath.Walk(filepath.Join(root, "lib", "modules"), func(p string, _ os.FileInfo, _ error) error {
		if name, ok := strings.CutSuffix(filepath.Base(p), ".ko"); ok {
			found[name] = p
		}
		return nil
	})
	for _, m := range modules {
		if found[m] == "" {
			return nil, fmt.Errorf("%s has no module %s", debs[0], m)
		}
		if err := os.Rename(found[m], filepath.Join(staged, "modules", m+".ko")); err != nil {
			return nil, err
		}
	}
	_ = os.RemoveAll(cache)
	if err := os.Rename(staged, cache); err != nil {
		return nil, err
	}
	return unpacked(cache)
}

func unpacked(cache string) (*Kernel, error) {
	k := &Kernel{Image: filepath.Join(cache, "vmlinuz")}
	if _, err := os.Stat(k.Image); err != nil {
		return nil, err
	}
	for _, m := range modules {
		p := filepath.Join(cache, "modules", m+".ko")
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
		k.Modules = append(k.Modules, p)
	}
	return k, nil
}
