package image_test

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/calico-lb/calico-lb/workload/image"
	"github.com/calico-lb/calico-lb/workload/rock"
	"github.com/calico-lb/calico-lb/workload/speakerset"
)

var meta = image.Meta{Version: "v1.2.3", Revision: "abc123", Source: "https://example.com/calico-lb", Created: time.Unix(1700000000, 0)}

func bins(tag string) map[string]image.Binaries {
	return map[string]image.Binaries{
		"arm64": {CalicoLB: []byte("calico-lb arm64 " + tag), Pebble: []byte("pebble arm64")},
		"amd64": {CalicoLB: []byte("calico-lb amd64 " + tag), Pebble: []byte("pebble amd64")},
	}
}

// files reads the single layer of an image into path -> header and data.
func files(t *testing.T, img v1.Image) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	hdrs, data, err := image.Contents(img)
	if err != nil {
		t.Fatal(err)
	}
	return hdrs, data
}

func TestIndexLayoutAndConfig(t *testing.T) {
	idx, err := image.Index(meta, bins("x"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var plats []string
	for _, d := range im.Manifests {
		plats = append(plats, d.Platform.OS+"/"+d.Platform.Architecture)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != d.Platform.Architecture || cf.OS != "linux" || !slices.Equal(cf.Config.Entrypoint, []string{"/usr/bin/pebble", "enter"}) ||
			!slices.Contains(cf.Config.Env, "PEBBLE=/var/lib/pebble/default") || !cf.Created.Time.Equal(meta.Created) {
			t.Fatalf("%s config: %+v", d.Platform.Architecture, cf)
		}
		for k, v := range map[string]string{"source": meta.Source, "version": "v1.2.3", "revision": "abc123", "created": "2023-11-14T22:13:20Z"} {
			if got := cf.Config.Labels["org.opencontainers.image."+k]; got != v {
				t.Errorf("label %s = %q, want %q", k, got, v)
			}
		}
		hdrs, data := files(t, img)
		// The speaker DaemonSet starts what the image has: the regression
		// for speakers that crash-looped on "stat /bin/pebble".
		if h := hdrs[speakerset.SpeakerCommand[0]]; h == nil || h.Mode&0o111 == 0 || string(data[rock.Pebble]) != "pebble "+d.Platform.Architecture {
			t.Fatalf("%s: the DaemonSet's %s is not an executable in the image", d.Platform.Architecture, speakerset.SpeakerCommand[0])
		}
		if string(data[rock.Binary]) != "calico-lb "+d.Platform.Architecture+" x" || hdrs[rock.Binary].Mode != 0o755 {
			t.Fatalf("calico-lb: %q mode %o", data[rock.Binary], hdrs[rock.Binary].Mode)
		}
		if h := hdrs[rock.PebbleDir+"/layers"]; h == nil || h.Typeflag != tar.TypeDir {
			t.Fatal("no $PEBBLE/layers directory")
		}
		if h := hdrs["/tmp"]; h == nil || h.Mode != 0o1777 {
			t.Fatalf("/tmp: %+v", h)
		}
		if !strings.Contains(string(data["/etc/passwd"]), "_daemon_:x:584792:584792:") {
			t.Fatalf("passwd: %s", data["/etc/passwd"])
		}
		for p, h := range hdrs {
			if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || !h.ModTime.Equal(meta.Created) {
				t.Fatalf("%s: owner %d:%d %q, time %v: something of the build machine got in", p, h.Uid, h.Gid, h.Uname, h.ModTime)
			}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data[rock.CACertificates]) || bytes.Count(data[rock.CACertificates], []byte("BEGIN CERTIFICATE")) < 100 {
			t.Fatal("the CA bundle does not parse or is short")
		}
		if b, _ := pem.Decode(data[rock.CACertificates]); b == nil {
			t.Fatal("the CA bundle is not PEM")
		}
	}
	if !slices.Equal(plats, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("platforms %v", plats)
	}
}

// The same inputs give the same digest and the same archive bytes; a
// changed binary changes both.
func TestReproducible(t *testing.T) {
	archive := func(tag string) (string, []byte) {
		idx, err := image.Index(meta, bins(tag))
		if err != nil {
			t.Fatal(err)
		}
		d, _ := idx.Digest()
		var buf bytes.Buffer
		if err := image.WriteOCIArchive(&buf, idx, "v1.2.3", meta.Created); err != nil {
			t.Fatal(err)
		}
		return d.String(), buf.Bytes()
	}
	d1, a1 := archive("x")
	d2, a2 := archive("x")
	d3, a3 := archive("y")
	if d1 != d2 || !bytes.Equal(a1, a2) {
		t.Fatalf("two builds differ: %s %s", d1, d2)
	}
	if d1 == d3 || bytes.Equal(a1, a3) {
		t.Fatal("a changed binary left the digest as it was")
	}

	// The archive is an OCI layout whose index.json names the index by tag.
	tr := tar.NewReader(bytes.NewReader(a1))
	entries := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name], _ = io.ReadAll(tr)
	}
	var top v1.IndexManifest
	if err := json.Unmarshal(entries["index.json"], &top); err != nil || len(top.Manifests) != 1 ||
		top.Manifests[0].Digest.String() != d1 || top.Manifests[0].Annotations[image.RefName] != "v1.2.3" {
		t.Fatalf("index.json: %s (%v)", entries["index.json"], err)
	}
	if string(entries["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` || entries["blobs/sha256/"+top.Manifests[0].Digest.Hex] == nil {
		t.Fatal("not an OCI layout, or the index blob is missing")
	}
	if len(entries) != 2+2+1+2*3 { // two directories, oci-layout, index.json, the index, and per arch manifest, config, layer
		t.Fatalf("%d entries", len(entries))
	}
}

func TestRefusesMissingBinaries(t *testing.T) {
	if _, err := image.Index(meta, map[string]image.Binaries{"amd64": {CalicoLB: []byte("x")}}); err == nil || !strings.Contains(err.Error(), "pebble") {
		t.Fatalf("got %v", err)
	}
	if _, err := image.Index(meta, nil); err == nil {
		t.Fatal("an index with no architectures")
	}
}
