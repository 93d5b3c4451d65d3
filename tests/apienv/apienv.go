// Package apienv gives a package's tests one real control plane (etcd
// and kube-apiserver, started on first use) and, per test, a namespace
// of its own and a client that is the controller's ServiceAccount with
// exactly the RBAC the charm grants it.
package apienv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/workload/access"
)

var (
	sharedOnce sync.Once
	shared     *cluster.Cluster
	sharedErr  error
)

// Main runs the package's tests (call it from TestMain) and then stops
// the control plane, if one was started.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// ControlPlane is the package's one control plane. Without the built
// binaries the test is skipped, unless CALICO_LB_E2E says they must be
// there (CI), where it fails.
func ControlPlane(t *testing.T) *cluster.Cluster {
	t.Helper()
	cluster.SkipShort(t, "a real control plane")
	_, errE := os.Stat(filepath.Join(cluster.BinDir(), "etcd"))
	_, errA := os.Stat(filepath.Join(cluster.BinDir(), "kube-apiserver"))
	if (errE != nil || errA != nil) && !cluster.E2E() {
		t.Skip("kube-apiserver/etcd not built: run `make tools`, or set CALICO_LB_E2E=1")
	}
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		shared, sharedErr = cluster.Start(ctx, cluster.Options{})
	})
	if sharedErr != nil {
		t.Fatalf("control plane: %v", sharedErr)
	}
	return shared
}

// Namespace creates a namespace named after the test (which the test
// also uses as its load-balancer class and Lease), deleted when it ends.
func Namespace(t *testing.T, client kubernetes.Interface) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("_", "-", "/", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	if _, err := client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// ControllerClient authenticates as the controller's own ServiceAccount
// in ns, created as the charm creates it: a test thereby runs with
// exactly the RBAC the charm grants, and a permission it lacks fails the
// test that needs it.
func ControllerClient(t *testing.T, cl *cluster.Cluster, ns, lease string) kubernetes.Interface {
	t.Helper()
	return kubernetes.NewForConfigOrDie(ControllerConfig(t, cl, ns, lease))
}

// ControllerConfig is ControllerClient's config, for a test that wraps
// its transport.
func ControllerConfig(t *testing.T, cl *cluster.Cluster, ns, lease string) *rest.Config {
	t.Helper()
	admin := cl.Client(cluster.UserAdmin)
	a := access.Access{Namespace: ns, LeaseName: lease}
	f := access.TokenFile{Path: filepath.Join(t.TempDir(), "token")}
	if err := a.Grant(context.Background(), admin, f, access.TokenTTL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Remove(context.Background(), admin) })
	cfg := rest.AnonymousClientConfig(cl.Config(cluster.UserAdmin))
	cfg.BearerTokenFile = f.Path
	cfg.QPS, cfg.Burst = 1000, 2000
	return cfg
}

// WaitUntil polls cond every 50 ms for up to 20 s, and fails the test
// naming what it waited for if cond never holds.
func WaitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting until %s", what)
}
