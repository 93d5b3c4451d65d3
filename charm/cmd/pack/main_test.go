package main

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestPackReproducible(t *testing.T) {
	dir := t.TempDir()
	disp := filepath.Join(dir, "dispatch")
	if err := os.WriteFile(disp, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a.charm"), filepath.Join(dir, "b.charm")
	for _, out := range []string{a, b} {
		if err := pack(out, disp, filepath.Join("..", "..", ".."), "amd64"); err != nil {
			t.Fatal(err)
		}
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Fatal("two packs of the same inputs differ")
	}
	zr, err := zip.NewReader(bytes.NewReader(da), int64(len(da)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if f.Name == "dispatch" && f.Mode().Perm() != 0o755 {
			t.Fatalf("dispatch mode %v", f.Mode())
		}
	}
	want := []string{"actions.yaml", "charmcraft.yaml", "config.yaml", "dispatch", "icon.svg", "manifest.yaml", "metadata.yaml"}
	if !slices.Equal(names, want) {
		t.Fatalf("entries %v, want %v", names, want)
	}
}
