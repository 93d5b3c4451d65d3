package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/calico-lb/calico-lb/workload/config"
)

// With the apiserver so slow that the writers fall behind, the allocation
// loop does not wait for them: it keeps running and publishing its
// figures, so /healthz (Pebble's alive check) does not take it for wedged.
// It used to block on the writers' full channel, and /healthz failed.
func TestLoopNeverWaitsForWriters(t *testing.T) {
	dir := t.TempDir()
	o := config.DefaultOptions()
	o.Pools, o.PeeringMode = "10.0.0.0/22", "calico"
	cfg, _, err := config.FromOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := cfg.Render()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for i := range 400 {
		objs = append(objs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("s", i), Namespace: "ns", UID: types.UID(fmt.Sprint("u", i))},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}})
	}
	client := fake.NewClientset(objs...)
	stuck := make(chan struct{})
	defer close(stuck)
	client.PrependReactor("update", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-stuck // an apiserver that does not answer
		return true, nil, fmt.Errorf("timeout")
	})
	c, err := New(Options{Client: client, ConfigPath: path, Writers: 1, LeaseNamespace: "lb",
		LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	// The writers' channel fills: 256 queued behind the one stuck writer.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if tm := c.term.Load(); tm != nil && len(tm.writes) == cap(tm.writes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writers' channel never filled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	f := c.figures.Load()
	if f == nil || time.Since(f.at) > time.Second {
		t.Fatalf("with the writers behind, the loop last published its figures %v ago: it is waiting on them", time.Since(f.at).Round(time.Millisecond))
	}
}
