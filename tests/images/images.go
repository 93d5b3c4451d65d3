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
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/calico-lb/calico-lb/tests/fakejuju"
	"github.com/calico-lb/calico-lb/workload/image"
)

// Names of the images in the test registry (without the registry host).
const (
	CalicoLB = "calico-lb:test"
	Pause    = "pause:test"
	Echo     = "echo:test"
	// Charm is the charm container of a Juju-shaped pod: the charm's real
	// dispatch, the fake hook tools and the unit agent stand-in.
	Charm = "charm:test"
)

// Where the charm image has things (Juju's paths for unit calico-lb/0).
const (
	CharmDir   = "/var/lib/juju/agents/unit-calico-lb-0/charm"
	ToolsDir   = "/var/lib/juju/tools/unit-calico-lb-0"
	StateDir   = "/var/lib/juju/fake"
	UnitAgent  = "/usr/bin/unitagent"
	charmFiles = "metadata.yaml config.yaml actions.yaml"
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
	if out[Charm], err = charmImage(root); err != nil {
		return nil, fmt.Errorf("%s: %w", Charm, err)
	}
	return out, nil
}

// charmImage holds the charm as Juju unpacks it (dispatch built as `make
// charm` builds it, and the charm's YAML files), the fake hook tools where
// Juju puts the real ones, and the unit agent stand-in as entrypoint.
func charmImage(root string) (v1.Image, error) {
	bins := map[string][]byte{}
	for name, pkg := range map[string]string{"dispatch": "./charm/cmd/dispatch", "fakejuju": "./tests/fakejuju/cmd/fakejuju", "unitagent": "./tests/fakejuju/cmd/unitagent"} {
		b, err := goBinary(root, pkg)
		if err != nil {
			return nil, err
		}
		bins[name] = b
	}
	files := []image.File{
		{Path: strings.TrimPrefix(CharmDir, "/") + "/dispatch", Mode: 0o755, Data: bins["dispatch"]},
		{Path: strings.TrimPrefix(ToolsDir, "/") + "/fakejuju", Mode: 0o755, Data: bins["fakejuju"]},
		{Path: strings.TrimPrefix(UnitAgent, "/"), Mode: 0o755, Data: bins["unitagent"]},
		{Path: strings.TrimPrefix(StateDir, "/"), Mode: 0o755, Dir: true},
		{Path: "tmp", Mode: 0o1777, Dir: true},
	}
	for _, f := range strings.Fields(charmFiles) {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return nil, err
		}
		files = append(files, image.File{Path: strings.TrimPrefix(CharmDir, "/") + "/" + f, Mode: 0o644, Data: data})
	}
	for _, tool := range fakejuju.Tools {
		files = append(files, image.File{Path: strings.TrimPrefix(ToolsDir, "/") + "/" + tool, Link: "fakejuju"})
	}
	env := []string{"PATH=/usr/bin:/bin", "UNITAGENT_DISPATCH=" + CharmDir + "/dispatch", "UNITAGENT_TOOLS=" + ToolsDir,
		"FAKEJUJU_STATE=" + StateDir + "/state.json"}
	return image.FromFiles(runtime.GOARCH, image.WithParents(files), v1.Config{Entrypoint: []string{UnitAgent, "wait"}, Env: env}, created)
}

// program is an image holding one static Go program as its entrypoint.
func program(root, pkg string) (v1.Image, error) {
	data, err := goBinary(root, pkg)
	if err != nil {
		return nil, err
	}
	path := "usr/bin/" + filepath.Base(pkg)
	files := image.WithParents([]image.File{{Path: path, Mode: 0o755, Data: data}, {Path: "tmp", Mode: 0o1777, Dir: true}})
	return image.FromFiles(runtime.GOARCH, files, v1.Config{Entrypoint: []string{"/" + path}}, created)
}

// goBinary builds a static Go program of the tree at root.
func goBinary(root, pkg string) ([]byte, error) {
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
	return os.ReadFile(bin)
}
