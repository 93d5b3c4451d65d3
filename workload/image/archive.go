package image

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RefName is the annotation by which tools pick an image in an OCI layout
// (skopeo's oci-archive:FILE:TAG).
const RefName = "org.opencontainers.image.ref.name"

// WriteOCIArchive writes idx as an OCI archive: a tar of an OCI image
// layout whose index.json holds one entry, idx tagged tag, so that
// `skopeo copy --all oci-archive:FILE:TAG docker://REGISTRY/calico-lb:TAG`
// pushes every architecture at once. Entries are sorted and their times
// fixed, so the archive's bytes depend only on idx.
func WriteOCIArchive(w io.Writer, idx v1.ImageIndex, tag string, mtime time.Time) error {
	blobs := map[string][]byte{}
	add := func(d v1.Hash, data []byte) { blobs["blobs/"+d.Algorithm+"/"+d.Hex] = data }
	raw, err := idx.RawManifest()
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	add(digest, raw)
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return fmt.Errorf("image %s: %w", desc.Digest, err)
		}
		if err := addImage(img, add); err != nil {
			return fmt.Errorf("image %s: %w", desc.Digest, err)
		}
	}
	top, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
		MediaType: types.OCIImageIndex, Digest: digest, Size: int64(len(raw)), Annotations: map[string]string{RefName: tag},
	}}})
	if err != nil {
		return err
	}
	entries := map[string][]byte{"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`), "index.json": top}
	for k, v := range blobs {
		entries[k] = v
	}
	names := make([]string, 0, len(entries))
	for k := range entries {
		names = append(names, k)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	mt := mtime.Truncate(time.Second)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: mt}); err != nil {
			return err
		}
	}
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(entries[n])), ModTime: mt}); err != nil {
			return err
		}
		if _, err := tw.Write(entries[n]); err != nil {
			return err
		}
	}
	return tw.Close()
}

// addImage adds an image's manifest, config and layers.
func addImage(img v1.Image, add func(v1.Hash, []byte)) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	add(d, raw)
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cd, err := img.ConfigName()
	if err != nil {
		return err
	}
	add(cd, cfg)
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		add(ld, data)
	}
	return nil
}
