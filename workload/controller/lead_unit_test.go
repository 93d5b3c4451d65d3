package controller

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/config"
)

// A leader whose term cannot start gives the Lease up, so that a standby
// can lead, instead of renewing a Lease it does nothing with.
func TestLeaderThatCannotStartGivesUpTheLease(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	o := config.DefaultOptions()
	o.PeeringMode = "l2"
	cfg, _, err := config.FromOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	data, err := cfg.Render()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	c, err := New(Options{Client: client, ConfigPath: path, Identity: "broken", LeaseNamespace: "lb",
		LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var tries atomic.Int32
	c.newTerm = func(*Controller, *config.Config) (*term, error) {
		tries.Add(1)
		return nil, errors.New("allocator: broken on purpose")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := client.CoordinationV1().Leases("lb").Get(ctx, access.DefaultLeaseName, metav1.GetOptions{})
		if tries.Load() > 0 && err == nil && (l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "") {
			break // taken, failed, given up
		}
		if time.Now().After(deadline) {
			holder := "none"
			if err == nil && l.Spec.HolderIdentity != nil {
				holder = *l.Spec.HolderIdentity
			}
			t.Fatalf("after %d failed terms the Lease is still held by %q", tries.Load(), holder)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
