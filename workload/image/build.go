package image

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Source is the project's public repository, for the source label.
const Source = "https://github.com/calico-lb/calico-lb"

// Build cross-compiles calico-lb and Pebble for each GOARCH (static,
// -trimpath, no build ID) from the calico-lb tree at root and assembles
// them, labelled with the checked-out commit; the commit's time is the
// creation time, so one commit always gives one digest. version empty:
// `git describe --tags --always`.
func Build(root string, arches []string, version string) (v1.ImageIndex, Meta, error) {
	bins, meta, err := BuildBinaries(root, arches, version)
	if err != nil {
		return nil, Meta{}, err
	}
	idx, err := Index(meta, bins)
	return idx, meta, err
}

// BuildBinaries is Build's first half: the binaries of each GOARCH and the
// labels, for Index, and for an SBOM of exactly what the image holds.
func BuildBinaries(root string, arches []string, version string) (map[string]Binaries, Meta, error) {
	meta, err := metaFromGit(root, version)
	if err != nil {
		return nil, Meta{}, err
	}
	tmp, err := os.MkdirTemp("", "calico-lb-image-")
	if err != nil {
		return nil, Meta{}, err
	}
	defer os.RemoveAll(tmp)
	bins := map[string]Binaries{}
	for _, arch := range arches {
		var b Binaries
		if b.CalicoLB, err = goBuild(root, arch, "./workload/cmd/calico-lb", "-s -w -buildid= -X main.version="+meta.Version, tmp); err != nil {
			return nil, Meta{}, err
		}
		// Pebble from the module that pins it for the tests too.
		if b.Pebble, err = goBuild(filepath.Join(root, "tests/tools/pebble"), arch, "github.com/canonical/pebble/cmd/pebble", "-s -w -buildid=", tmp); err != nil {
			return nil, Meta{}, err
		}
		bins[arch] = b
	}
	return bins, meta, nil
}

func metaFromGit(root, version string) (Meta, error) {
	rev, err := git(root, "rev-parse", "HEAD")
	if err != nil {
		return Meta{}, err
	}
	ct, err := git(root, "log", "-1", "--format=%ct")
	if err != nil {
		return Meta{}, err
	}
	secs, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return Meta{}, fmt.Errorf("commit time %q: %w", ct, err)
	}
	if version == "" {
		if version, err = git(root, "describe", "--tags", "--always"); err != nil {
			return Meta{}, err
		}
	}
	return Meta{Version: version, Revision: rev, Source: Source, Created: time.Unix(secs, 0).UTC()}, nil
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s (the image is built from the calico-lb git tree): %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// goBuild cross-compiles pkg in dir for linux/arch and returns the binary.
func goBuild(dir, arch, pkg, ldflags, tmp string) ([]byte, error) {
	out := filepath.Join(tmp, arch+"-"+filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s for %s: %w\n%s", pkg, arch, err, b)
	}
	return os.ReadFile(out)
}
