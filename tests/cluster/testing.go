package cluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// E2E reports whether tests that need real parts must run (CI sets
// CALICO_LB_E2E=1): they then fail when something is missing rather than
// skip.
func E2E() bool { return os.Getenv("CALICO_LB_E2E") == "1" }

// SkipShort skips a test that needs real parts (what) under -short: `make
// unit` runs the fast tests alone, `make e2e` all of them.
func SkipShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short (make unit): needs " + what)
	}
}

// StartT starts a control plane for a test and stops it when the test ends,
// also when it fails. Without CALICO_LB_E2E=1 it skips when the binaries
// have not been built (`make tools`), instead of building for minutes.
func StartT(t testing.TB) *Cluster {
	t.Helper()
	SkipShort(t, "a real control plane")
	_, errE := os.Stat(filepath.Join(BinDir(), "etcd"))
	_, errA := os.Stat(filepath.Join(BinDir(), "kube-apiserver"))
	if (errE != nil || errA != nil) && !E2E() {
		t.Skip("kube-apiserver/etcd not built: run `make tools`, or set CALICO_LB_E2E=1 to build them")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Log: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(c.Dir, "control-plane.log")); err == nil && len(b) > 0 {
				const tail = 4000
				if len(b) > tail {
					b = b[len(b)-tail:]
				}
				t.Logf("control plane log (tail):\n%s", b)
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return c
}
