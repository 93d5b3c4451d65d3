// Package charmzip writes a .charm: the zip Juju deploys. The archive is
// reproducible: entries are sorted and carry a fixed time, so the same
// inputs give the same bytes.
package charmzip

import (
	"archive/zip"
	"bytes"
	"maps"
	"os"
	"slices"
	"time"
)

// epoch is every entry's time; zip cannot say 1970.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Archive is the zip of entries (name to content); dispatch, the one
// program Juju runs, is executable.
func Archive(entries map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range slices.Sorted(maps.Keys(entries)) {
		h := &zip.FileHeader{Name: n, Method: zip.Deflate, Modified: epoch}
		mode := os.FileMode(0o644)
		if n == "dispatch" {
			mode = 0o755
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(entries[n]); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
