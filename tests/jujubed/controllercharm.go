package jujubed

import (
	"context"
	"os"
	"path/filepath"

	"github.com/calico-lb/calico-lb/charm/charmzip"
	"github.com/calico-lb/calico-lb/tests/cluster"
)

// ControllerCharm packs the stand-in juju-controller charm (controllercharm/:
// the real charm's name, relations and options, no behaviour; the real one
// is Python and cannot be built offline) into dir and returns its path,
// for `juju bootstrap --controller-charm-path`.
func ControllerCharm(ctx context.Context, dir string) (string, error) {
	src := filepath.Join(cluster.Root(), "tests", "jujubed", "controllercharm")
	entries := map[string][]byte{}
	for _, f := range []string{"metadata.yaml", "config.yaml", "manifest.yaml"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		entries[f] = b
	}
	bin := filepath.Join(dir, "controller-dispatch")
	if _, err := run(ctx, cluster.Root(), []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", bin, "./tests/jujubed/controllercharm/dispatch"); err != nil {
		return "", err
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	entries["dispatch"] = b
	data, err := charmzip.Archive(entries)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "juju-controller.charm")
	return out, os.WriteFile(out, data, 0o644)
}
