// Package image assembles the calico-lb workload image: calico-lb and
// Pebble laid out as the rock convention has them (package rock), CA
// certificates and an unprivileged user, one image per architecture in one
// OCI index. No Docker: go-containerregistry writes the layers, configs and
// manifests directly.
//
// Everything that goes in is fixed by the inputs (file modes, owners and
// times are set, entries sorted, the creation time given), so the same
// binaries give the same digest on any machine.
package image

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/calico-lb/calico-lb/workload/rock"
)

// Binaries are one architecture's executables.
type Binaries struct {
	CalicoLB []byte
	Pebble   []byte
}

// Meta describes the build, for the OCI labels and the creation time.
type Meta struct {
	Version  string    // e.g. v0.3.0 or a git describe
	Revision string    // the source commit
	Source   string    // the source repository's URL
	Created  time.Time // the commit's time, so rebuilding gives the same digest
}

// Labels are the image's OCI labels.
func (m Meta) Labels() map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "calico-lb",
		"org.opencontainers.image.description": "LoadBalancer IPs for bare-metal Kubernetes with Calico: the controller (allocator) and the speakers (BGP, ARP/NDP), run by Pebble",
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.created":     m.Created.UTC().Format(time.RFC3339),
	}
	for k, v := range map[string]string{"source": m.Source, "version": m.Version, "revision": m.Revision} {
		if v != "" {
			l["org.opencontainers.image."+k] = v
		}
	}
	return l
}

// Env is the image's environment: $PEBBLE is where Pebble finds its layers.
var Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PEBBLE=" + rock.PebbleDir}

// Index builds the multi-architecture image: one image per entry of bins
// (keyed by GOARCH), in a stable order.
func Index(meta Meta, bins map[string]Binaries) (v1.ImageIndex, error) {
	if len(bins) == 0 {
		return nil, fmt.Errorf("image: no architectures")
	}
	var arches []string
	for a := range bins {
		arches = append(arches, a)
	}
	sort.Strings(arches)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range arches {
		img, err := Image(meta, arch, bins[arch])
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Platform:  &v1.Platform{OS: "linux", Architecture: arch},
		}})
	}
	return idx, nil
}

// Image builds one architecture's image.
func Image(meta Meta, arch string, b Binaries) (v1.Image, error) {
	if len(b.CalicoLB) == 0 || len(b.Pebble) == 0 {
		return nil, fmt.Errorf("image: calico-lb and pebble are both needed")
	}
	files, err := Files(b)
	if err != nil {
		return nil, err
	}
	return FromFiles(arch, files, v1.Config{Entrypoint: rock.Entrypoint, Env: Env, Labels: meta.Labels(), WorkingDir: "/"}, meta.Created)
}

// FromFiles is a single-layer linux image of files (each parent directory
// listed before what it holds) with config, every time set to created.
func FromFiles(arch string, files []File, config v1.Config, created time.Time) (v1.Image, error) {
	data, err := tarOf(files, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "calico-lb make image"}}); err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: created}
	cf.Config = config
	return mutate.ConfigFile(img, cf)
}

// File is one entry of the image's file system.
type File struct {
	Path string // without the leading slash
	Mode int64  // permission bits; directories are those with Dir set
	Dir  bool
	Data []byte
	Link string // a symbolic link to Link
}

// Files is the image's file system, directories first and every parent
// listed, in the order they go into the layer.
func Files(b Binaries) ([]File, error) {
	certs, err := caBundle()
	if err != nil {
		return nil, err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/usr/bin/false\n%s:x:%d:%d::/nonexistent:/usr/bin/false\n", rock.User, rock.UID, rock.UID)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", rock.User, rock.UID)
	files := []File{
		{Path: "etc/passwd", Mode: 0o644, Data: []byte(passwd)},
		{Path: "etc/group", Mode: 0o644, Data: []byte(group)},
		{Path: strings.TrimPrefix(rock.CACertificates, "/"), Mode: 0o644, Data: certs},
		{Path: strings.TrimPrefix(rock.Binary, "/"), Mode: 0o755, Data: b.CalicoLB},
		{Path: strings.TrimPrefix(rock.Pebble, "/"), Mode: 0o755, Data: b.Pebble},
		{Path: strings.TrimPrefix(rock.PebbleDir, "/") + "/layers", Mode: 0o755, Dir: true},
		// The charm pushes the config here; Pebble would make it, but an
		// operator who runs the image by hand finds where it goes.
		{Path: "etc/calico-lb", Mode: 0o755, Dir: true},
		{Path: "tmp", Mode: 0o1777, Dir: true},
		{Path: "root", Mode: 0o700, Dir: true},
	}
	return WithParents(files), nil
}

// WithParents sorts files by path and puts every parent directory before
// what it holds (mode 0755 unless files lists it).
func WithParents(files []File) []File {
	seen := map[string]bool{}
	var out []File
	var addParents func(p string)
	addParents = func(p string) {
		d := path.Dir(p)
		if d == "." || seen[d] {
			return
		}
		addParents(d)
		seen[d] = true
		out = append(out, File{Path: d, Mode: 0o755, Dir: true})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		addParents(f.Path)
		if f.Dir {
			if seen[f.Path] {
				continue
			}
			seen[f.Path] = true
		}
		out = append(out, f)
	}
	return out
}

// caBundle is Mozilla's root set as the pinned golang.org/x/crypto
// fallback bundle has it, in PEM. Roots that the bundle limits by a
// constraint are left out: a PEM file cannot carry the limit.
func caBundle() ([]byte, error) {
	var buf bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate}); err != nil {
			return nil, err
		}
	}
	if buf.Len() == 0 {
		return nil, fmt.Errorf("image: the CA bundle is empty")
	}
	return buf.Bytes(), nil
}

// tarOf writes files as a layer: owned by root, all times mtime, no user
// or group names, so nothing of the build machine gets in.
func tarOf(files []File, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Path, Mode: f.Mode, ModTime: mtime.Truncate(time.Second)}
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, f.Path+"/"
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Contents reads an image's single layer: each entry's header and data by
// absolute path, for checks of what an image holds.
func Contents(img v1.Image) (map[string]*tar.Header, map[string][]byte, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, nil, err
	}
	if len(layers) != 1 {
		return nil, nil, fmt.Errorf("image has %d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	hdrs, data := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs, data, nil
		}
		if err != nil {
			return nil, nil, err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, err
		}
		p := "/" + strings.TrimSuffix(h.Name, "/")
		hdrs[p], data[p] = h, b
	}
}
