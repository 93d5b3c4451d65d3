package pebble

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canonical/pebble/client"

	"github.com/calico-lb/calico-lb/charm/plan"
	"github.com/calico-lb/calico-lb/tests/pebbled"
	"github.com/calico-lb/calico-lb/workload/config"
)

// Against a real Pebble: the first apply pushes both files with their
// modes and starts the service; the same plan again does nothing; a pool
// change pushes the config file without restarting the service; a change
// to the layer replans.
func TestApplyRealPebble(t *testing.T) {
	d := pebbled.StartT(t)
	dir := t.TempDir()
	// The workload stands in as a script that just stays up.
	bin := filepath.Join(dir, "calico-lb")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 1000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(pools, api string) *plan.Plan {
		t.Helper()
		o := config.DefaultOptions()
		o.Pools = pools
		cfg, _, err := config.FromOptions(o)
		if err != nil {
			t.Fatal(err)
		}
		cfg.APIAddress = api
		cfg.BGP.PasswordFile = filepath.Join(dir, "etc", "bgp-passwords.yaml")
		p, err := plan.Make(cfg, plan.Inputs{Binary: bin, ConfigPath: filepath.Join(dir, "etc", "config.yaml"), Passwords: map[string]string{"k": "v"}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	since := func() time.Time {
		t.Helper()
		svc, err := d.Service(plan.Service)
		if err != nil {
			t.Fatal(err)
		}
		if svc.Current != client.StatusActive {
			t.Fatalf("service %s is %s", plan.Service, svc.Current)
		}
		return svc.CurrentSince
	}

	res, err := Apply(d.Client, mk("10.0.0.0/24", "127.0.0.1:9402"), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pushed) != 2 || !res.Replaned {
		t.Fatalf("first apply: %+v", res)
	}
	for path, mode := range map[string]os.FileMode{"config.yaml": 0o644, "bgp-passwords.yaml": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, "etc", path))
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v, want %v", path, err, fi.Mode().Perm(), mode)
		}
	}
	started := since()

	if res, err = Apply(d.Client, mk("10.0.0.0/24", "127.0.0.1:9402"), 30*time.Second); err != nil || len(res.Pushed) != 0 || res.Replaned {
		t.Fatalf("the same plan again: %+v, %v", res, err)
	}
	res, err = Apply(d.Client, mk("10.0.1.0/24", "127.0.0.1:9402"), 30*time.Second)
	if err != nil || len(res.Pushed) != 1 || res.Replaned {
		t.Fatalf("pool change: %+v, %v", res, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "etc", "config.yaml")); !contains(got, "10.0.1.0/24") {
		t.Fatalf("config file not updated:\n%s", got)
	}
	if !since().Equal(started) {
		t.Fatal("a pool change restarted the workload")
	}
	res, err = Apply(d.Client, mk("10.0.1.0/24", "127.0.0.1:9500"), 30*time.Second)
	if err != nil || !res.Replaned {
		t.Fatalf("layer change: %+v, %v", res, err)
	}
	planBytes, err := d.Client.PlanBytes(nil)
	if err != nil || !contains(planBytes, "127.0.0.1:9500/readyz") {
		t.Fatalf("plan after the layer change:\n%s (%v)", planBytes, err)
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
