// Command pack is `make charm`: it writes calico-lb.charm, the zip Juju
// deploys (dispatch, the charm's yaml files, the icon and a manifest),
// without charmcraft. The archive is reproducible: entries are sorted and
// carry a fixed time, so the same inputs give the same bytes.
package main

import (
	"archive/zip"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// files are the charm's files besides dispatch, from the repository root.
var files = []string{"metadata.yaml", "config.yaml", "actions.yaml", "charmcraft.yaml", "icon.svg"}

// epoch is every entry's time; zip cannot say 1970.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

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
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		h := &zip.FileHeader{Name: n, Method: zip.Deflate, Modified: epoch}
		mode := os.FileMode(0o644)
		if n == "dispatch" {
			mode = 0o755
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, bytes.NewReader(entries[n])); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}
