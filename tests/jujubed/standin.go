package jujubed

import (
	"context"
	"os"
	"path/filepath"

	"github.com/calico-lb/calico-lb/charm/charmzip"
	"github.com/calico-lb/calico-lb/tests/cluster"
)

// StandInCharm packs the stand-in charm name from charms/ (its metadata,
// config and manifest, and the shared dispatch that reports the unit
// active) into dir and returns its path:
//   - controller: Juju's juju-controller charm, with the real one's options
//     and relations (the real one is Python and cannot be built offline),
//     for `juju bootstrap --controller-charm-path`;
//   - calico: Charmed Kubernetes' calico charm, with its options (names,
//     types, defaults), holding them in a real model for the Calico link.
func StandInCharm(ctx context.Context, dir, name string) (string, error) {
	src := filepath.Join(cluster.Root(), "tests", "jujubed", "charms")
	entries := map[string][]byte{}
	for _, f := range []string{"metadata.yaml", "config.yaml", "manifest.yaml"} {
		b, err := os.ReadFile(filepath.Join(src, name, f))
		if err != nil {
			return "", err
		}
		entries[f] = b
	}
	bin := filepath.Join(dir, "standin-dispatch")
	if _, err := os.Stat(bin); err != nil {
		if _, err := run(ctx, cluster.Root(), []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", bin, "./tests/jujubed/charms/dispatch"); err != nil {
			return "", err
		}
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
	out := filepath.Join(dir, name+".charm")
	return out, os.WriteFile(out, data, 0o644)
}
