// Command mkimage builds the calico-lb workload image without Docker
// (workload/image: calico-lb and Pebble for each architecture in one OCI
// index, labelled with the git commit, the same digest for the same
// commit) and writes it as an OCI archive:
//
//	go run ./workload/cmd/mkimage -o bin/calico-lb.oci.tar
//	skopeo copy --all oci-archive:bin/calico-lb.oci.tar:TAG docker://REGISTRY/calico-lb:TAG
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/calico-lb/calico-lb/workload/image"
)

func main() {
	out := flag.String("o", "bin/calico-lb.oci.tar", "the OCI archive to write")
	arches := flag.String("arch", "amd64,arm64", "GOARCHes, comma-separated")
	tag := flag.String("tag", "", "the tag in the archive (default: the version)")
	version := flag.String("version", "", "the version label (default: git describe --tags --always)")
	binaries := flag.String("binaries", "", "also write the image's binaries here (DIR/ARCH/calico-lb, DIR/ARCH/pebble), for `make sbom`")
	flag.Parse()
	if err := run(*out, strings.Split(*arches, ","), *tag, *version, *binaries); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out string, arches []string, tag, version, binaries string) error {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return fmt.Errorf("mkimage runs in the calico-lb git tree: %w", err)
	}
	bins, meta, err := image.BuildBinaries(strings.TrimSpace(string(root)), arches, version)
	if err != nil {
		return err
	}
	idx, err := image.Index(meta, bins)
	if err != nil {
		return err
	}
	if binaries != "" {
		for arch, b := range bins {
			for name, data := range map[string][]byte{"calico-lb": b.CalicoLB, "pebble": b.Pebble} {
				p := filepath.Join(binaries, arch, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(p, data, 0o755); err != nil {
					return err
				}
			}
		}
	}
	if tag == "" {
		tag = meta.Version
	}
	var buf bytes.Buffer
	if err := image.WriteOCIArchive(&buf, idx, tag, meta.Created); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out+".tmp", buf.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: calico-lb:%s (%s) %s, %.1f MiB\n", out, tag, strings.Join(arches, ", "), d, float64(buf.Len())/(1<<20))
	return nil
}
