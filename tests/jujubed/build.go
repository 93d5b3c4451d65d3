// Package jujubed runs a real Juju controller on the test beds' real-nodes
// cluster, so that what an operator types (juju deploy, config, run,
// trust, secrets, scale, refresh, remove) is tested against Juju itself,
// not an imitation.
//
// Only Juju 4 can run here: Juju 3's controller needs MongoDB, which no
// package registry this project uses serves. Juju 4 keeps its state in
// Dqlite inside the controller's agent process. Juju is built from the
// github.com/juju/juju module version go.mod already pins (4.1-beta2),
// Dqlite from its release source, SQLite from the amalgamation that
// github.com/mattn/go-sqlite3 carries: Juju's own make targets download
// prebuilt libraries and a musl toolchain, which cannot be fetched here.
package jujubed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/calico-lb/calico-lb/tests/cluster"
)

// What is built, pinned.
const (
	// JujuModule is Juju 4.1-beta2 (core/version/version.go), the version
	// go.mod requires for the charm's API client.
	JujuModule  = "github.com/juju/juju"
	JujuVersion = "v0.0.0-20260713142945-570e41eadd7e"
	// JujuAgentVersion is what that module calls itself: the tag of the
	// controller's image.
	JujuAgentVersion = "4.1-beta2"
	// SQLiteModule carries the SQLite 3.51.1 amalgamation (Juju's schema
	// needs >= 3.44: CONCAT(), octet_length(); Debian 12 has 3.40.1).
	SQLiteModule  = "github.com/mattn/go-sqlite3"
	SQLiteVersion = "v1.14.33"
	// Dqlite 1.18.6, raft built in; go-dqlite v3 needs >= 1.17 (Debian 12
	// has 1.11.1).
	DqliteVersion = "1.18.6"
	DqliteSHA256  = "c1ade43e47b87b298bde0955591942ff50448566d0ca52d9a6361f66df1e3e5e"
	// DqliteSource is where else the archive can be had: the upstream
	// release of the same tag (git archive --prefix=dqlite-1.18.6/ v1.18.6).
	DqliteSource = "https://github.com/canonical/dqlite/archive/refs/tags/v1.18.6.tar.gz"
)

// buildTags are Juju's: `minimal` leaves out the providers other than
// Kubernetes (the OpenStack one needs a module the proxy refuses);
// netgo and osusergo keep the static binaries off glibc's NSS.
const buildTags = "minimal provider_kubernetes notest netgo osusergo"

// Binaries are the paths of what Build makes.
type Binaries struct {
	Juju           string // the client
	Agentd         string // jujuagentd: the controller's agent (cgo, Dqlite)
	ContainerAgent string // the unit agent of a Kubernetes charm
	Jujuc          string // the hook tools
	Pebble         string // the Pebble Juju injects into charm and workload containers
}

func (b Binaries) all() []string {
	return []string{b.Juju, b.Agentd, b.ContainerAgent, b.Jujuc, b.Pebble}
}

// Dir is where Build puts everything: the repository's ignored .cache.
func Dir() string {
	return filepath.Join(cluster.Root(), ".cache", "juju", JujuVersion+"-dqlite"+DqliteVersion)
}

// DqliteArchives are where Build looks for Dqlite's source archive, in
// order: the repository's .cache/sources (put it there by hand), then the
// sources directory beside the repository's checkout.
func DqliteArchives() []string {
	name := "dqlite-" + DqliteVersion + ".tar.gz"
	return []string{
		filepath.Join(cluster.Root(), ".cache", "sources", name),
		filepath.Join(cluster.Root(), "..", "shared", "sources", name),
	}
}

// Build makes Juju's binaries (when missing) and returns their paths: a
// cold build takes some 8 minutes on 2 cores, most of it Juju's Go code;
// the Go build cache keeps later ones to seconds. It needs the Debian
// packages libuv1-dev, liblz4-dev, autoconf, automake, libtool and
// pkg-config (`make deps`). A file lock keeps two test processes from
// building at once.
func Build(ctx context.Context, log func(string)) (*Binaries, error) {
	dir := Dir()
	bin := filepath.Join(dir, "bin")
	b := &Binaries{Juju: filepath.Join(bin, "juju"), Agentd: filepath.Join(bin, "jujuagentd"),
		ContainerAgent: filepath.Join(bin, "containeragent"), Jujuc: filepath.Join(bin, "jujuc"), Pebble: filepath.Join(bin, "pebble")}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if present(b.all()...) {
		return b, nil
	}
	start := time.Now()
	log("building Juju " + JujuAgentVersion + " (client, controller agent with Dqlite " + DqliteVersion + ", unit agent, hook tools, Pebble) into " + dir + "; cold: about 8 minutes")
	deps := filepath.Join(dir, "deps")
	if err := buildSQLite(ctx, deps); err != nil {
		return nil, fmt.Errorf("SQLite: %w", err)
	}
	if err := buildDqlite(ctx, dir, deps); err != nil {
		return nil, fmt.Errorf("dqlite: %w", err)
	}
	src, err := jujuSource(ctx, dir)
	if err != nil {
		return nil, err
	}
	plain := []string{"CGO_ENABLED=0", "GOFLAGS=-mod=mod"}
	if err := goBuild(ctx, src, plain, buildTags, "-s -w", bin, "./cmd/juju", "./cmd/containeragent", "./cmd/jujuc", "github.com/canonical/pebble/cmd/pebble"); err != nil {
		return nil, err
	}
	cgo := []string{"CGO_ENABLED=1", "GOFLAGS=-mod=mod",
		"CGO_CFLAGS=-I" + filepath.Join(deps, "include"),
		"CGO_LDFLAGS=-L" + filepath.Join(deps, "lib") + " -ldqlite -luv -llz4 -lsqlite3 -lm -lpthread -ldl",
		"CGO_LDFLAGS_ALLOW=(-Wl,-wrap,pthread_create)|(-Wl,-z,now)"}
	ldflags := "-s -w -linkmode external -extldflags -static -X github.com/juju/juju/core/version.GoBuildTags=" + strings.ReplaceAll(buildTags+" dqlite libsqlite3", " ", ",")
	if err := goBuild(ctx, src, cgo, buildTags+" dqlite libsqlite3", ldflags, bin, "./cmd/jujuagentd"); err != nil {
		return nil, err
	}
	if !present(b.all()...) {
		return nil, fmt.Errorf("the Juju build left out one of %v", b.all())
	}
	log(fmt.Sprintf("built Juju in %s", time.Since(start).Round(time.Second)))
	return b, nil
}

func present(paths ...string) bool {
	for _, p := range paths {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// goBuild builds pkgs of the module at src into out.
func goBuild(ctx context.Context, src string, env []string, tags, ldflags, out string, pkgs ...string) error {
	tmp, err := os.MkdirTemp(out, ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	args := append([]string{"build", "-trimpath", "-tags", tags, "-ldflags", ldflags, "-o", tmp + "/"}, pkgs...)
	if _, err := run(ctx, src, env, "go", args...); err != nil {
		return err
	}
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(out, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// jujuSource is a writable copy of Juju's module: it has replace
// directives, which apply only when it is the main module.
func jujuSource(ctx context.Context, dir string) (string, error) {
	src := filepath.Join(dir, "src")
	if present(filepath.Join(src, "go.mod")) {
		return src, nil
	}
	mod, err := download(ctx, JujuModule+"@"+JujuVersion)
	if err != nil {
		return "", err
	}
	tmp := src + ".tmp"
	_ = os.RemoveAll(tmp)
	if _, err := run(ctx, "", nil, "cp", "-r", mod, tmp); err != nil {
		return "", err
	}
	if _, err := run(ctx, "", nil, "chmod", "-R", "u+w", tmp); err != nil {
		return "", err
	}
	return src, os.Rename(tmp, src)
}

// download fetches module@version through the module proxy and returns its
// directory in the module cache.
func download(ctx context.Context, modver string) (string, error) {
	out, err := run(ctx, os.TempDir(), []string{"GOFLAGS=-mod=mod"}, "go", "mod", "download", "-json", modver)
	if err != nil {
		return "", err
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return "", fmt.Errorf("go mod download %s: %w", modver, err)
	}
	if m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s", modver, m.Error)
	}
	return m.Dir, nil
}

// buildSQLite compiles the amalgamation go-sqlite3 carries into a static
// library and its header, in deps/lib and deps/include.
func buildSQLite(ctx context.Context, deps string) error {
	lib := filepath.Join(deps, "lib", "libsqlite3.a")
	if present(lib) {
		return nil
	}
	mod, err := download(ctx, SQLiteModule+"@"+SQLiteVersion)
	if err != nil {
		return err
	}
	for _, d := range []string{"lib", "include", "sqlite"} {
		if err := os.MkdirAll(filepath.Join(deps, d), 0o755); err != nil {
			return err
		}
	}
	// go-sqlite3's copies are wrapped in #ifndef USE_LIBSQLITE3 (its
	// libsqlite3 tag links a system SQLite instead): unwrap them.
	hdr, err := unwrap(filepath.Join(mod, "sqlite3-binding.h"))
	if err != nil {
		return err
	}
	csrc, err := unwrap(filepath.Join(mod, "sqlite3-binding.c"))
	if err != nil {
		return err
	}
	csrc = strings.ReplaceAll(csrc, `#include "sqlite3-binding.h"`, `#include "sqlite3.h"`)
	if err := os.WriteFile(filepath.Join(deps, "include", "sqlite3.h"), []byte(hdr), 0o644); err != nil {
		return err
	}
	c := filepath.Join(deps, "sqlite", "sqlite3.c")
	if err := os.WriteFile(c, []byte(csrc), 0o644); err != nil {
		return err
	}
	obj := filepath.Join(deps, "sqlite", "sqlite3.o")
	// SQLite's own configure defaults, as Juju builds it.
	if _, err := run(ctx, deps, nil, "gcc", "-O2", "-fPIC", "-DSQLITE_THREADSAFE=1", "-DSQLITE_ENABLE_MATH_FUNCTIONS",
		"-I"+filepath.Join(deps, "include"), "-c", c, "-o", obj); err != nil {
		return err
	}
	if _, err := run(ctx, deps, nil, "ar", "rcs", lib+".tmp", obj); err != nil {
		return err
	}
	return os.Rename(lib+".tmp", lib)
}

// unwrap returns the file without go-sqlite3's #ifndef USE_LIBSQLITE3
// wrapper: from its second line up to the #else of that wrapper.
func unwrap(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := string(data)
	first, rest, ok := strings.Cut(s, "\n")
	if !ok || strings.TrimSpace(first) != "#ifndef USE_LIBSQLITE3" {
		return "", fmt.Errorf("%s does not start with #ifndef USE_LIBSQLITE3: go-sqlite3 changed its layout", path)
	}
	i := strings.LastIndex(rest, "\n#else // USE_LIBSQLITE3")
	if i < 0 {
		return "", fmt.Errorf("%s has no #else // USE_LIBSQLITE3: go-sqlite3 changed its layout", path)
	}
	return rest[:i+1], nil
}

// buildDqlite builds Dqlite's static library from its checksummed source
// archive, against deps' SQLite and Debian's libuv and lz4.
func buildDqlite(ctx context.Context, dir, deps string) error {
	lib := filepath.Join(deps, "lib", "libdqlite.a")
	if present(lib, filepath.Join(deps, "lib", "libuv.a")) {
		return nil
	}
	archive, err := dqliteArchive()
	if err != nil {
		return err
	}
	work := filepath.Join(dir, "dqlite-build")
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	if _, err := run(ctx, work, nil, "tar", "xzf", archive); err != nil {
		return err
	}
	srcDir := filepath.Join(work, "dqlite-"+DqliteVersion)
	if _, err := run(ctx, srcDir, nil, "autoreconf", "-i"); err != nil {
		return fmt.Errorf("%w (make deps installs autoconf, automake, libtool and pkg-config)", err)
	}
	if _, err := run(ctx, srcDir, nil, "./configure", "--enable-build-raft", "--disable-shared", "--enable-static", "--prefix="+deps,
		"SQLITE_CFLAGS=-I"+filepath.Join(deps, "include"), "SQLITE_LIBS=-L"+filepath.Join(deps, "lib")+" -lsqlite3"); err != nil {
		return fmt.Errorf("%w (make deps installs libuv1-dev and liblz4-dev)", err)
	}
	if _, err := run(ctx, srcDir, nil, "make", "-j2"); err != nil {
		return err
	}
	if _, err := run(ctx, srcDir, nil, "make", "install"); err != nil {
		return err
	}
	// Debian's static libuv is libuv_a.a; a static link looks for libuv.a.
	data, err := os.ReadFile("/usr/lib/" + debArch() + "/libuv_a.a")
	if err != nil {
		return fmt.Errorf("libuv's static library: %w (make deps installs libuv1-dev)", err)
	}
	if err := os.WriteFile(filepath.Join(deps, "lib", "libuv.a"), data, 0o644); err != nil {
		return err
	}
	return os.RemoveAll(work)
}

// dqliteArchive finds Dqlite's source archive and checks its sha256.
func dqliteArchive() (string, error) {
	for _, p := range DqliteArchives() {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != DqliteSHA256 {
			return "", fmt.Errorf("%s has sha256 %s, want %s: fetch it again from %s", p, got, DqliteSHA256, DqliteSource)
		}
		return p, nil
	}
	return "", fmt.Errorf("the source archive of Dqlite %s is in none of %v: put %s (sha256 %s) at the first",
		DqliteVersion, DqliteArchives(), DqliteSource, DqliteSHA256)
}

func debArch() string {
	out, err := exec.Command("gcc", "-dumpmachine").Output()
	if err != nil {
		return "x86_64-linux-gnu"
	}
	return strings.TrimSpace(string(out))
}

// run runs a command in dir with env added, and returns its stdout; an
// error carries its output.
func run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := stderr.String()
		if len(msg) > 4000 {
			msg = "…" + msg[len(msg)-4000:]
		}
		return "", fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, out, msg)
	}
	return string(out), nil
}
