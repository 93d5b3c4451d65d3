// Package cluster runs a real Kubernetes control plane (etcd and
// kube-apiserver, built from the Go module proxy) on loopback, for tests and
// the demo. There is no kubelet: tests create the Nodes, Namespaces and
// EndpointSlices they need as plain objects.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// Root is the repository root (found from this file's location, so it works
// from any package's tests).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir is where tools are built: the repository's ignored .cache/bin.
func BinDir() string { return filepath.Join(Root(), ".cache", "bin") }

type tool struct {
	name, module, pkg string
	ldflags           string
}

// kubeVersion stamps the Kubernetes components as the release they are
// built from (a module build has no git tree to take it from), so that
// nodes report a real kubelet version.
const kubeVersion = "-X k8s.io/component-base/version.gitVersion=v1.34.4 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34"

func kubeTool(name string) tool {
	return tool{name, "tests/tools/kubernetes", "k8s.io/kubernetes/cmd/" + name, kubeVersion}
}

var (
	toolEtcd      = tool{"etcd", "tests/tools/etcd", "go.etcd.io/etcd/server/v3", ""}
	toolAPIServer = kubeTool("kube-apiserver")
	toolPebble    = tool{"pebble", "tests/tools/pebble", "github.com/canonical/pebble/cmd/pebble", ""}
	// What a cluster with real nodes runs besides etcd and kube-apiserver.
	nodeTools = []tool{
		kubeTool("kube-controller-manager"), kubeTool("kube-scheduler"), kubeTool("kubelet"), kubeTool("kube-proxy"), kubeTool("kubectl"),
		{"containerd", "tests/tools/containerd", "github.com/containerd/containerd/v2/cmd/containerd", ""},
		{"containerd-shim-runc-v2", "tests/tools/containerd", "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2", ""},
	}
)

// NodeBinaries builds (when missing) what clusters with real nodes run
// besides etcd and kube-apiserver: kube-controller-manager,
// kube-scheduler, kubelet, kube-proxy, kubectl (for tests that read logs
// or exec as an operator would), containerd and its runc shim. A cold
// build takes several minutes; the components share most packages with
// kube-apiserver.
func NodeBinaries(ctx context.Context, log func(string)) error {
	_, err := buildLocked(ctx, log, nodeTools...)
	return err
}

// Binaries returns the paths of etcd and kube-apiserver, building them into
// BinDir first if they are missing. A cold build of kube-apiserver takes
// 6-10 minutes on 2 cores; afterwards the binaries are reused. A file lock
// keeps concurrent test processes from building twice.
func Binaries(ctx context.Context, log func(string)) (etcd, apiserver string, err error) {
	paths, err := buildLocked(ctx, log, toolEtcd, toolAPIServer)
	if err != nil {
		return "", "", err
	}
	return paths[0], paths[1], nil
}

// PebbleBinary returns the path of the Pebble daemon (v1.26.0, pinned in
// tests/tools/pebble), building it into BinDir first if it is missing.
func PebbleBinary(ctx context.Context, log func(string)) (string, error) {
	paths, err := buildLocked(ctx, log, toolPebble)
	if err != nil {
		return "", err
	}
	return paths[0], nil
}

// buildLocked builds the missing tools under a file lock, so that
// concurrent test processes do not build twice.
func buildLocked(ctx context.Context, log func(string), tools ...tool) ([]string, error) {
	if err := os.MkdirAll(BinDir(), 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(BinDir(), ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway
	var paths []string
	for _, t := range tools {
		p, err := build(ctx, t, log)
		if err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func build(ctx context.Context, t tool, log func(string)) (string, error) {
	out := filepath.Join(BinDir(), t.name)
	if fi, err := os.Stat(out); err == nil && fi.Mode().IsRegular() {
		return out, nil
	}
	if log != nil {
		log(fmt.Sprintf("building %s from %s (a cold build takes minutes; kube-apiserver the longest)", t.name, t.module))
	}
	start := time.Now()
	tmp := out + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", t.ldflags, "-o", tmp, t.pkg)
	cmd.Dir = filepath.Join(Root(), t.module)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", t.name, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	if log != nil {
		log(fmt.Sprintf("built %s in %s", t.name, time.Since(start).Round(time.Second)))
	}
	return out, nil
}

// ErrNoBinaries is returned when the binaries are missing and building
// them is not allowed (see Options.NoBuild).
var ErrNoBinaries = errors.New("etcd or kube-apiserver is not built; run `make tools`")
