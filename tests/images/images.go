// Package images builds the images the test clusters' nodes pull: the
// calico-lb image users deploy (for this machine's architecture), the
// sandbox image and the test application, all from this repository and
// pushed to the test registry, so the kubelets pull them as in production.
package images

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/calico-lb/calico-lb/workload/image"
)

// Names of the images in the test registry (without the registry host).
const (
	CalicoLB = "calico-lb:test"
	Pause    = "pause:test"
	Echo     = "echo:test"
)

// created is the test images' fixed time: they change only with their code.
var created = time.Unix(0, 0).UTC()

// Build builds the test images of the calico-lb tree at root for this
// machine's architecture.
func Build(root string) (map[string]v1.Image, error) {
	idx, _, err := image.Build(root, []string{runtime.GOARCH}, "test")
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	lb, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		return nil, err
	}
	out := map[string]v1.Image{CalicoLB: lb}
	for name, pkg := range map[string]string{Pause: "./tests/images/pause", Echo: "./tests/images/echo"} {
		if out[name], err = program(root, pkg); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return out, nil
}

// program is an image holding one static Go program as its entrypoint.
func program(root, pkg string) (v1.Image, error) {
	tmp, err := os.MkdirTemp("", "calico-lb-testimage-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s: %w\n%s", pkg, err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	path := "usr/bin/" + filepath.Base(pkg)
	files := image.WithParents([]image.File{{Path: path, Mode: 0o755, Data: data}, {Path: "tmp", Mode: 0o1777, Dir: true}})
	return image.FromFiles(runtime.GOARCH, files, v1.Config{Entrypoint: []string{"/" + path}}, created)
}
