package pebble

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	var uid *int
	mk := func(pools, api string) *plan.Plan {
		t.Helper()
		o := config.DefaultOptions()
		o.Pools, o.PeeringMode = pools, "calico"
		cfg, _, err := config.FromOptions(o)
		if err != nil {
			t.Fatal(err)
		}
		cfg.APIAddress = api
		cfg.BGP.PasswordFile = filepath.Join(dir, "etc", "bgp-passwords.yaml")
		p, err := plan.Make(cfg, plan.Inputs{Binary: bin, ConfigPath: filepath.Join(dir, "etc", "config.yaml"), Passwords: map[string]string{"k": "v"}, UID: uid})
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
	if len(res.Pushed) != 2 || !res.Replanned {
		t.Fatalf("first apply: %+v", res)
	}
	for path, mode := range map[string]os.FileMode{"config.yaml": 0o644, "bgp-passwords.yaml": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, "etc", path))
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v, want %v", path, err, fi.Mode().Perm(), mode)
		}
	}
	started := since()

	if res, err = Apply(d.Client, mk("10.0.0.0/24", "127.0.0.1:9402"), 30*time.Second); err != nil || len(res.Pushed) != 0 || res.Replanned {
		t.Fatalf("the same plan again: %+v, %v", res, err)
	}
	res, err = Apply(d.Client, mk("10.0.1.0/24", "127.0.0.1:9402"), 30*time.Second)
	if err != nil || len(res.Pushed) != 1 || res.Replanned {
		t.Fatalf("pool change: %+v, %v", res, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "etc", "config.yaml")); !contains(got, "10.0.1.0/24") {
		t.Fatalf("config file not updated:\n%s", got)
	}
	if !since().Equal(started) {
		t.Fatal("a pool change restarted the workload")
	}
	res, err = Apply(d.Client, mk("10.0.1.0/24", "127.0.0.1:9500"), 30*time.Second)
	if err != nil || !res.Replanned {
		t.Fatalf("layer change: %+v, %v", res, err)
	}
	planBytes, err := d.Client.PlanBytes(nil)
	if err != nil || !contains(planBytes, "127.0.0.1:9500/readyz") {
		t.Fatalf("plan after the layer change:\n%s (%v)", planBytes, err)
	}

	// The workload's user set (as in the image): the service runs as it
	// and the files it reads, unchanged in content, become its own.
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root")
	}
	user := 584792
	uid = &user
	// The user must reach the stand-in workload through the test's directories.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if res, err = Apply(d.Client, mk("10.0.1.0/24", "127.0.0.1:9500"), 30*time.Second); err != nil || !res.Replanned || len(res.Pushed) != 2 {
		t.Fatalf("user change: %+v, %v", res, err)
	}
	for _, path := range []string{"config.yaml", "bgp-passwords.yaml"} {
		fi, err := os.Stat(filepath.Join(dir, "etc", path))
		if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 584792 || fi.Sys().(*syscall.Stat_t).Gid != 584792 {
			t.Fatalf("%s: not owned by the workload's user (%v)", path, err)
		}
	}
	if planBytes, _ = d.Client.PlanBytes(nil); !contains(planBytes, "user-id: 584792") || !contains(planBytes, "group-id: 584792") {
		t.Fatalf("plan with the workload's user:\n%s", planBytes)
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
