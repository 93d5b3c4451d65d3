package e2e

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/workload/image"
	"github.com/calico-lb/calico-lb/workload/rock"
)

// TestImageBuild builds the image users deploy, as `make image` does, twice:
// one digest; both architectures' binaries static and of their
// architecture; and the amd64 binaries, taken out of the image, run.
func TestImageBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds calico-lb and Pebble for two architectures")
	}
	arches := []string{"amd64", "arm64"}
	idx, meta, err := image.Build(cluster.Root(), arches, "")
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := image.Build(cluster.Root(), arches, "")
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := idx.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Fatalf("two builds of one commit: %s and %s", d1, d2)
	}
	t.Logf("calico-lb:%s %s (revision %s)", meta.Version, d1, meta.Revision)

	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	dir := t.TempDir()
	for _, desc := range im.Manifests {
		arch := desc.Platform.Architecture
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		_, data, err := image.Contents(img)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{rock.Binary, rock.Pebble} {
			out := filepath.Join(dir, arch+"-"+filepath.Base(name))
			if err := os.WriteFile(out, data[name], 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := elf.Open(out)
			if err != nil {
				t.Fatalf("%s %s: %v", arch, name, err)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s %s is dynamically linked; the image has no libc", arch, name)
				}
			}
			if f.Machine != machines[arch] {
				t.Errorf("%s %s is built for %v", arch, name, f.Machine)
			}
			f.Close()
		}
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("%d images in the index", len(im.Manifests))
	}
	out, err := exec.Command(filepath.Join(dir, "amd64-calico-lb"), "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != meta.Version {
		t.Fatalf("calico-lb version: %q %v, want %s", out, err, meta.Version)
	}
	out, err = exec.Command(filepath.Join(dir, "amd64-pebble"), "version", "--client").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v1.26.0") {
		t.Fatalf("pebble version: %q %v", out, err)
	}
}
