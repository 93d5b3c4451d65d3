// Package charm is `make bench-charm`: the wall time of the real dispatch
// binary for config-changed and update-status as they run in a unit, with
// the real workload binary under a live Pebble (the controller running
// against a real kube-apiserver, answering the charm's local-API calls)
// and `calico-lb access` run for real when it is due. The fake hook tools
// stand in for Juju's.
//
// Each round runs config-changed with the pools alternated (every run
// pushes the config file and the controller reloads it), update-status
// with access not due (its receipt current), and update-status with
// access due (the receipt removed first, as after its recheck time). The
// last line is the summary:
//
//	charm-dispatch runs=20 config_changed_ms=… update_status_ms=… update_status_access_ms=… (medians)
package charm

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/charm"
	"github.com/calico-lb/calico-lb/charm/plan"
	"github.com/calico-lb/calico-lb/tests/bench/stats"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/fakejuju"
	"github.com/calico-lb/calico-lb/tests/pebbled"
	"github.com/calico-lb/calico-lb/workload/config"
)

func BenchmarkDispatch(b *testing.B) {
	c := cluster.StartT(b)
	kc, err := c.WriteKubeconfig(cluster.UserAdmin)
	if err != nil {
		b.Fatal(err)
	}
	// The model's namespace, where Juju runs the unit.
	if _, err := c.Client(cluster.UserAdmin).CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lb"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	pb := pebbled.StartT(b)
	root := b.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr", "bin"), 0o755); err != nil {
		b.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(root, "usr", "bin", "calico-lb"), "./workload/cmd/calico-lb")
	build.Dir = cluster.Root()
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build calico-lb: %v\n%s", err, out)
	}
	dispatch := fakejuju.BuildDispatch(b)
	cfg := fakejuju.Defaults(b)
	cfg["pools"], cfg["peering-mode"] = "10.0.0.0/24", "calico"
	j := fakejuju.New(b, &fakejuju.State{Config: cfg, Leader: true})
	apiAddr, err := cluster.FreeAddress()
	if err != nil {
		b.Fatal(err)
	}
	j.Env = fakejuju.LayoutEnv(charm.Layout{PebbleSocket: pb.Socket, ContainerRoot: root, Kubeconfig: kc, APIAddress: apiAddr})
	hook := func(name string) time.Duration {
		start := time.Now()
		if out, err := j.Hook(dispatch, name); err != nil {
			b.Fatalf("%s: %v\n%s", name, err, out)
		}
		return time.Since(start)
	}
	// A new unit: access runs, the layer is added, the controller starts.
	for _, h := range []string{"install", charm.Container + "-pebble-ready", "config-changed"} {
		fmt.Printf("charm-dispatch-first hook=%s ms=%.1f\n", h, ms(hook(h)))
	}
	waitReady(b, "http://"+apiAddr+"/readyz")
	receipt := filepath.Join(root, plan.AccessReceiptFile)
	var changed, status, statusAccess []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		pools := "10.0.0.0/24"
		if i%2 == 0 {
			pools = "10.0.1.0/24"
		}
		b.StopTimer()
		j.Update(b, func(s *fakejuju.State) { s.Config["pools"] = pools })
		b.StartTimer()
		changed = append(changed, hook("config-changed"))
		status = append(status, hook("update-status"))
		b.StopTimer()
		if err := os.Remove(receipt); err != nil {
			b.Fatalf("the hooks left no access receipt: %v", err)
		}
		b.StartTimer()
		statusAccess = append(statusAccess, hook("update-status"))
		if _, err := os.Stat(receipt); err != nil {
			b.Fatalf("update-status with access due did not run it: %v", err)
		}
	}
	b.StopTimer()
	if st := j.State(b).UnitStatus; st.Name != "active" {
		b.Fatalf("unit status %+v", st)
	}
	if got, _ := os.ReadFile(filepath.Join(root, config.DefaultPath)); len(got) == 0 {
		b.Fatal("the config file was never pushed")
	}
	for _, s := range []struct {
		name  string
		times []time.Duration
	}{{"config-changed", changed}, {"update-status", status}, {"update-status access=due", statusAccess}} {
		fmt.Printf("charm-dispatch hook=%s runs=%d p50_ms=%.1f max_ms=%.1f\n", s.name, len(s.times), ms(stats.Median(s.times)), ms(slicesMax(s.times)))
	}
	b.ReportMetric(ms(stats.Median(changed)), "ms/config-changed")
	fmt.Printf("charm-dispatch runs=%d config_changed_ms=%.1f update_status_ms=%.1f update_status_access_ms=%.1f\n",
		len(changed), ms(stats.Median(changed)), ms(stats.Median(status)), ms(stats.Median(statusAccess)))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func slicesMax(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// waitReady waits until the controller Pebble started answers /readyz.
func waitReady(b *testing.B, url string) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("the controller never became ready at %s", url)
}
