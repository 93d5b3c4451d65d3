// Package charm is `make bench-charm`: the wall time of the real dispatch
// binary for config-changed, with the fake hook tools and a live Pebble.
// Each run alternates the pools, so every run pushes the workload config
// file; the layer does not change, so no run waits for a Pebble change.
// The last line is the summary:
//
//	charm-dispatch hook=config-changed runs=20 ms=… (median)
package charm

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/charm"
	"github.com/calico-lb/calico-lb/tests/bench/stats"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/fakejuju"
	"github.com/calico-lb/calico-lb/tests/pebbled"
	"github.com/calico-lb/calico-lb/workload/config"
)

func BenchmarkDispatchConfigChanged(b *testing.B) {
	pb := pebbled.StartT(b)
	root := b.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr", "bin"), 0o755); err != nil {
		b.Fatal(err)
	}
	// The workload stands in as a process that stays up: the hook's time
	// is the charm's, not the workload's.
	if err := os.WriteFile(filepath.Join(root, "usr", "bin", "calico-lb"), []byte("#!/bin/sh\nexec sleep 1000\n"), 0o755); err != nil {
		b.Fatal(err)
	}
	dispatch := fakejuju.BuildDispatch(b)
	cfg := fakejuju.Defaults(b)
	cfg["pools"], cfg["peering-mode"] = "10.0.0.0/24", "calico"
	j := fakejuju.New(b, &fakejuju.State{Config: cfg, Leader: true})
	// A free port for the (absent) workload API: nothing else on the host
	// may answer for it.
	apiAddr, err := cluster.FreeAddress()
	if err != nil {
		b.Fatal(err)
	}
	j.Env = fakejuju.LayoutEnv(charm.Layout{PebbleSocket: pb.Socket, ContainerRoot: root, APIAddress: apiAddr})
	// The first hook adds the layer and starts the service (a replan).
	if out, err := j.Hook(dispatch, "config-changed"); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	var times []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		pools := "10.0.0.0/24"
		if i%2 == 0 {
			pools = "10.0.1.0/24"
		}
		b.StopTimer()
		j.Update(b, func(s *fakejuju.State) { s.Config["pools"] = pools })
		b.StartTimer()
		start := time.Now()
		if out, err := j.Hook(dispatch, "config-changed"); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	if got, _ := os.ReadFile(filepath.Join(root, config.DefaultPath)); len(got) == 0 {
		b.Fatal("the config file was never pushed")
	}
	med := stats.Median(times)
	b.ReportMetric(float64(med.Microseconds())/1000, "ms/hook-median")
	fmt.Printf("charm-dispatch hook=config-changed runs=%d ms=%.1f\n", len(times), float64(med.Microseconds())/1000)
}
