// Command failover is `make bench-failover`: the failover-test action, run
// as an operator runs it (the charm's real dispatch, the probe agent on a
// host outside the cluster), each mode ten times on the spine bed (BFD
// 100 ms x 3) and on the L2 bed, against the Cluster Service "web" (two
// pods). Each run's outage-ms is printed beside an independent client's
// on the same host; per mode the median and p99, and for mode=pod the
// replacement pod's start-up (fault to its endpoint ready), which bounds
// it. The last line is the summary:
//
//	failover-summary l2_speaker_p99_ms=… l2_node_p99_ms=… spine_speaker_p99_ms=… spine_node_p99_ms=… l2_pod_p50_ms=… spine_pod_p50_ms=…
package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/calico-lb/calico-lb/tests/bench/stats"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/failoverbed"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

var modes = []string{"speaker", "node", "pod"}

func main() {
	runs := flag.Int("runs", 10, "runs of each mode on each bed")
	flag.Parse()
	if m := append(netns.Missing(), cluster.MissingForNodes()...); len(m) > 0 {
		fmt.Fprintln(os.Stderr, "bench-failover needs:", m, "(run as root after `make deps`)")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "calico-lb-bench-failover-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	binary, err := failoverbed.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	spinePeers := "{10.212.1.0/24: [{address: 10.212.1.1, as-number: 64500, hold-time: 9, bfd: true, bfd-interval: 100, bfd-multiplier: 3}], " +
		"10.212.2.0/24: [{address: 10.212.2.1, as-number: 64500, hold-time: 9, bfd: true, bfd-interval: 100, bfd-multiplier: 3}]}"
	beds := []struct {
		name     string
		start    func(context.Context, spinebed.Options) (*spinebed.Bed, error)
		cfg      map[string]any
		clientIP string
		pools    string
	}{
		{"spine", spinebed.Start, map[string]any{"pools": "10.212.100.0/28", "peering-mode": "spine", "as-number": 64512.0,
			"subnet-spine-peers": spinePeers, "speaker-node-selector": "rack in (r1,r2)"}, "10.212.3.2", "10.212.100.0/28"},
		{"l2", spinebed.StartL2, map[string]any{"pools": "10.214.0.100-10.214.0.120", "peering-mode": "l2"}, "10.214.0.2", "10.214.0.96/27"},
	}
	summary := map[string]string{}
	for _, bed := range beds {
		res, err := benchBed(bed.name, bed.start, bed.cfg, binary, bed.clientIP, bed.pools, *runs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-failover:", err)
			os.Exit(1)
		}
		maps.Copy(summary, res)
	}
	fmt.Printf("failover-summary l2_speaker_p99_ms=%s l2_node_p99_ms=%s spine_speaker_p99_ms=%s spine_node_p99_ms=%s l2_pod_p50_ms=%s spine_pod_p50_ms=%s\n",
		summary["l2_speaker_p99"], summary["l2_node_p99"], summary["spine_speaker_p99"], summary["spine_node_p99"], summary["l2_pod_p50"], summary["spine_pod_p50"])
}

func benchBed(name string, start func(context.Context, spinebed.Options) (*spinebed.Bed, error), cfg map[string]any, binary, clientIP, pools string, runs int) (map[string]string, error) {
	ctx := context.Background()
	opts := spinebed.Options{Log: func(s string) { fmt.Println(s) }}
	if name == "spine" {
		opts.BFD = true
	}
	b, err := start(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	fail := func(err error) error { return fmt.Errorf("%s: %w\n%s", name, err, b.Logs()) }
	env, err := failoverbed.Setup(ctx, b, cfg, failoverbed.Apps[:1], binary, clientIP, pools)
	if err != nil {
		return nil, fail(err)
	}
	vip := env.VIPs["web"]
	target := net.JoinHostPort(vip, strconv.Itoa(kubebed.EchoPort))
	out := map[string]string{}
	for _, mode := range modes {
		var outages, podReady, converged []time.Duration
		disagree := 0
		for i := range runs {
			if err := failoverbed.Settled(ctx, b, vip); err != nil {
				return nil, fail(err)
			}
			client := failoverbed.StartClient(b.Client, target)
			r, err := failoverbed.Run(ctx, env.Unit, client, env.Probe.With(map[string]any{"service": "shop/web", "mode": mode, "timeout": 60}))
			client.Stop()
			if err != nil {
				return nil, fail(err)
			}
			if r.Failed != "" || r.OutageMs < 0 {
				return nil, fail(fmt.Errorf("%s run %d: %s\n%s", mode, i+1, r.Failed, r.Results["timeline"]))
			}
			outage := time.Duration(r.OutageMs) * time.Millisecond
			if ms, err := strconv.Atoi(r.Results["announcements-converged-ms"]); err == nil {
				converged = append(converged, time.Duration(ms)*time.Millisecond)
			}
			outages = append(outages, outage)
			ready := replacementReady(r.Results)
			if mode == "pod" {
				podReady = append(podReady, ready)
			}
			agree := "agrees"
			if !r.Agree() {
				agree, disagree = "DISAGREES", disagree+1
			}
			fmt.Printf("%s %s run %d: target %s, outage-ms %d (client %s: %s), converged %s ms, attracted %s -> %s\n", name, mode, i+1, r.Results["target"],
				r.OutageMs, stats.MS(r.Client), agree, r.Results["announcements-converged-ms"], r.Results["attracting-nodes-before"], r.Results["attracting-nodes-after"])
		}
		med := stats.Median(outages)
		p99 := stats.Percentile(outages, 99)
		line := fmt.Sprintf("failover %s_%s runs=%d p50_ms=%s p99_ms=%s max_ms=%s disagree=%d", name, mode, runs, stats.MS(med), stats.MS(p99), stats.MS(outages[len(outages)-1]), disagree)
		if len(converged) > 0 {
			line += " converged_p50_ms=" + stats.MS(stats.Median(converged))
		}
		if mode == "pod" {
			line += " pod_ready_p50_ms=" + stats.MS(stats.Median(podReady))
		}
		fmt.Println(line)
		out[name+"_"+mode+"_p99"], out[name+"_"+mode+"_p50"] = stats.MS(p99), stats.MS(med)
	}
	return out, nil
}

// replacementReady is when, after the fault, the first pod the test did
// not remove became a ready endpoint: the replacement's start-up.
func replacementReady(res map[string]string) time.Duration {
	removed := map[string]bool{}
	for i := 0; res[fmt.Sprintf("timeline.%d.event", i)] != ""; i++ {
		ev := res[fmt.Sprintf("timeline.%d.event", i)]
		if p, ok := strings.CutPrefix(ev, "pod "); ok {
			removed[strings.Fields(p)[0]] = true
		}
	}
	for i := 0; res[fmt.Sprintf("timeline.%d.event", i)] != ""; i++ {
		k := fmt.Sprintf("timeline.%d.", i)
		f := strings.Fields(res[k+"event"])
		if len(f) >= 3 && f[0] == "endpoint" && !removed[f[1]] && strings.HasSuffix(res[k+"event"], " ready") && !strings.HasSuffix(res[k+"event"], "not ready") {
			ms, _ := strconv.Atoi(res[k+"t-ms"])
			if ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	return 0
}
