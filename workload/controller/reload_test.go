package controller

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/calico-lb/calico-lb/workload/config"
)

// A reload (the charm's POST /v1/reload) and the watcher's poll never load
// at once: when a load that read the old file is slow to finish, a later
// load of the new file still ends in force. Two loaders racing stored the
// old file's config after the new one's.
func TestLoadsNeverOverlap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	render := func(pools string) []byte {
		o := config.DefaultOptions()
		o.Pools, o.PeeringMode = pools, "calico"
		cfg, _, err := config.FromOptions(o)
		if err != nil {
			t.Fatal(err)
		}
		data, err := cfg.Render()
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	oldFile, newFile := render("10.0.0.0/24"), render("10.1.0.0/24")
	if err := os.WriteFile(path, oldFile, 0o644); err != nil {
		t.Fatal(err)
	}
	// An hour between polls: only reloads load here.
	c, err := New(Options{Client: fake.NewClientset(), ConfigPath: path, ConfigPoll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The first read of the old file is held until the test lets it go.
	var mu sync.Mutex
	held, release := make(chan struct{}), make(chan struct{})
	holding := false
	c.readFile = func(p string) ([]byte, error) {
		data, err := os.ReadFile(p)
		mu.Lock()
		hold := !holding && string(data) == string(oldFile)
		holding = holding || hold
		mu.Unlock()
		if hold {
			close(held)
			<-release
		}
		return data, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.watchConfig(ctx)
	first := make(chan error, 1)
	go func() { _, err := c.reload(ctx); first <- err }()
	<-held // the first reload has read the old file
	if err := os.WriteFile(path, newFile, 0o644); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { _, err := c.reload(ctx); second <- err }()
	time.Sleep(50 * time.Millisecond) // a second loader racing the first would be done by now
	close(release)
	for _, ch := range []chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if got := c.cfg.Load().Pools[0].Addresses[0].String(); got != "10.1.0.0/24" && got != "10.1.0.0-10.1.0.255" {
		t.Fatalf("in force after both reloads: %s, want the new file's 10.1.0.0/24", got)
	}
}
