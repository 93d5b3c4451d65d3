// Command pack is `make charm`: it writes the .charm Juju deploys, one per
// architecture (dispatch, the charm's yaml files, the icon and a manifest
// naming the architecture), without charmcraft (package charmzip).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/calico-lb/calico-lb/charm/charmzip"
)

// files are the charm's files besides dispatch, from the repository root.
var files = []string{"metadata.yaml", "config.yaml", "actions.yaml", "charmcraft.yaml", "icon.svg"}

func main() {
	out := flag.String("o", "calico-lb.charm", "the .charm to write")
	dispatch := flag.String("dispatch", "bin/dispatch", "the dispatch binary (CGO_ENABLED=0)")
	root := flag.String("root", ".", "the repository root")
	arch := flag.String("arch", runtime.GOARCH, "the architecture dispatch was built for")
	flag.Parse()
	if err := pack(*out, *dispatch, *root, *arch); err != nil {
		fmt.Fprintln(os.Stderr, "pack:", err)
		os.Exit(1)
	}
}

// manifest is what charmcraft writes: Juju reads the bases from it.
func manifest(arch string) []byte {
	return fmt.Appendf(nil, `bases:
- name: ubuntu
  channel: '24.04'
  architectures:
  - %s
`, arch)
}

func pack(out, dispatch, root, arch string) error {
	entries := map[string][]byte{"manifest.yaml": manifest(arch)}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return err
		}
		entries[f] = b
	}
	b, err := os.ReadFile(dispatch)
	if err != nil {
		return fmt.Errorf("%w (build it with `make charm`)", err)
	}
	entries["dispatch"] = b
	data, err := charmzip.Archive(entries)
	if err != nil {
		return err
	}
	return os.WriteFile(out, data, 0o644)
}
