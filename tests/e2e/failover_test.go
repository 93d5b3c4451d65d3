package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/tests/failoverbed"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// failoverCase is one run of the failover-test action.
type failoverCase struct {
	service, mode string
	graceful      bool
}

// TestFailoverSpine runs the failover-test action through the real
// dispatch on the spine bed (BFD 100 ms x 3) in every mode, for a Cluster
// and a Local Service: each passes, its outage-ms agrees with an
// independent client's on the client host, the node is uncordoned, the
// speaker is back and the Service answers. Then a timeout shorter than the
// recovery fails with the timeline so far and restores, a second test
// while one runs is refused, and a Service with nowhere to go is refused.
func TestFailoverSpine(t *testing.T) {
	b := newBed(t, spinebed.Start, spinebed.Options{BFD: true})
	cfg := maps.Clone(spineConfig)
	cfg["subnet-spine-peers"] = "{10.212.1.0/24: [{address: 10.212.1.1, as-number: 64500, hold-time: 9, bfd: true, bfd-interval: 100, bfd-multiplier: 3}], " +
		"10.212.2.0/24: [{address: 10.212.2.1, as-number: 64500, hold-time: 9, bfd: true, bfd-interval: 100, bfd-multiplier: 3}]}"
	failoverOnBed(t, b, cfg, "10.212.3.2", "10.212.100.0/28")
}

// TestFailoverL2 is TestFailoverSpine on the L2 bed: three nodes on one
// segment, the ARP owner failing over.
func TestFailoverL2(t *testing.T) {
	b := newL2(t)
	failoverOnBed(t, b, map[string]any{"pools": "10.214.0.100-10.214.0.120", "peering-mode": "l2"}, "10.214.0.2", "10.214.0.96/27")
}

func failoverOnBed(t *testing.T, b *spinebed.Bed, cfg map[string]any, clientIP, pools string) {
	kb := b.Kubebed
	ctx := context.Background()
	env, err := failoverbed.Setup(ctx, b, cfg, failoverbed.Apps, binary, clientIP, pools)
	if err != nil {
		t.Fatal(err)
	}
	u, vips, probe := env.Unit, env.VIPs, env.Probe
	for _, c := range []failoverCase{
		{"web", "speaker", false}, {"local", "speaker", false}, {"web", "speaker", true},
		{"web", "pod", false}, {"local", "pod", false},
		{"web", "node", false}, {"local", "node", false},
	} {
		name := c.service + "-" + c.mode
		if c.graceful {
			name += "-graceful"
		}
		t.Run(name, func(t *testing.T) {
			vip := vips[c.service]
			client := failoverbed.StartClient(b.Client, net.JoinHostPort(vip, fmt.Sprint(kubebed.EchoPort)))
			r, err := failoverbed.Run(ctx, u, client, probe.With(map[string]any{"service": "shop/" + c.service, "mode": c.mode, "timeout": 60, "graceful": c.graceful}))
			client.Stop()
			if err != nil {
				t.Fatal(err)
			}
			res := r.Results
			t.Logf("%s %s: result %s, outage-ms %s (independent client %s, %d failed), converged %s ms, recovered %s ms, %s -> %s\n%s",
				c.service, c.mode, res["result"], res["outage-ms"], r.Client.Round(time.Millisecond), r.Failures, res["announcements-converged-ms"],
				res["recovered-ms"], res["attracting-nodes-before"], res["attracting-nodes-after"], res["timeline"])
			if c.service == "local" && c.mode == "node" {
				var all strings.Builder
				for _, k := range slices.Sorted(maps.Keys(res)) {
					fmt.Fprintf(&all, "%s: %q\n", k, res[k])
				}
				t.Logf("the action's log:\n%s\nevery result:\n%s", strings.Join(r.Logs, "\n"), &all)
			}
			if r.Failed != "" || res["result"] != "passed" {
				t.Fatalf("failed: %s\nlog: %s\n%s", r.Failed, strings.Join(r.Logs, "\n"), r.Output)
			}
			if !r.Agree() {
				t.Errorf("outage-ms %d does not agree with the independent client's %s (within max(100 ms, 20 %%))", r.OutageMs, r.Client)
			}
			if res["target"] == "" || strings.Contains(","+res["attracting-nodes-after"]+",", ","+res["target"]+",") && c.mode != "pod" {
				t.Errorf("after failing %s the VIP is attracted by %s", res["target"], res["attracting-nodes-after"])
			}
			if c.graceful != strings.Contains(res["timeline"], "speaker stopped gracefully") {
				t.Errorf("graceful=%v, timeline:\n%s", c.graceful, res["timeline"])
			}
			if res["timeline.0.t-ms"] == "" || res["restored.0"] == "" || len(r.Logs) < 3 || res["probe"] == "" {
				t.Errorf("no timeline, restore, progress or probe note: %v\nlog %v", res, r.Logs)
			}
			// Only the target's speaker stops, and only when the mode stops it.
			for i := 0; res[fmt.Sprintf("timeline.%d.event", i)] != ""; i++ {
				k := fmt.Sprintf("timeline.%d.", i)
				if res[k+"event"] == "speaker started" && !strings.HasPrefix(res[k+"t-ms"], "-") && (c.mode == "pod" || res[k+"node"] != res["target"]) {
					t.Errorf("a speaker on %s started during the test: %s", res[k+"node"], res["timeline"])
				}
			}
			checkRestored(t, b, vip)
		})
	}

	// A timeout shorter than the recovery: pinned's pod cannot go anywhere
	// but the cordoned node. Meanwhile a second test is refused.
	var (
		r1  failoverbed.Result
		e1  error
		wg  sync.WaitGroup
		vip = vips["pinned"]
	)
	// A drain above may have evicted it; it is back on node1 once uncordoned.
	if err := kb.WaitReady(ctx, "shop", "pinned", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, b, vip)
	wg.Add(1)
	go func() {
		defer wg.Done()
		r1, e1 = failoverbed.Run(ctx, u, nil, probe.With(map[string]any{"service": "shop/pinned", "mode": "pod", "timeout": 8}))
	}()
	// Its node marked (and cordoned): the test runs, not only its powers.
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool {
		msg := failoverbed.Restored(ctx, b.Kube)
		return strings.Contains(msg, "mark") || strings.Contains(msg, "cordoned")
	}); err != nil {
		t.Fatal("the pinned test never marked its node")
	}
	r2, err := failoverbed.Run(ctx, u, nil, probe.With(map[string]any{"service": "shop/web", "mode": "speaker"}))
	if err != nil || !strings.Contains(r2.Failed, "refused") || !strings.Contains(r2.Failed, "one at a time") {
		t.Fatalf("a second test while one runs: %v %q", err, r2.Failed)
	}
	t.Logf("second test refused: %s", r2.Failed)
	wg.Wait()
	if e1 != nil {
		t.Fatal(e1)
	}
	t.Logf("pinned pod, timeout 8 s: %s\n%s", r1.Failed, r1.Results["timeline"])
	if !strings.Contains(r1.Failed, "timed out after 8s") || r1.Results["result"] != "failed" || r1.Results["timeline.0.t-ms"] == "" || r1.Results["restored.0"] == "" {
		t.Fatalf("the timed-out test: %q %v", r1.Failed, r1.Results)
	}
	if err := kb.WaitReady(ctx, "shop", "pinned", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, b, vip)

	// Nowhere to go: pinned's one pod, its node's speaker.
	r3, err := failoverbed.Run(ctx, u, nil, probe.With(map[string]any{"service": "shop/pinned", "mode": "speaker"}))
	if err != nil || !strings.Contains(r3.Failed, "refused") || !strings.Contains(r3.Failed, "force=true") {
		t.Fatalf("a test with nowhere to go: %v %q", err, r3.Failed)
	}
	if msg := failoverbed.Restored(ctx, b.Kube); msg != "" {
		t.Fatal("a refused test changed a node: " + msg)
	}
}

// checkRestored: no node cordoned or marked, every speaker back, and the
// Service answering the client.
func checkRestored(t *testing.T, b *spinebed.Bed, vip string) {
	t.Helper()
	if err := failoverbed.Settled(context.Background(), b, vip); err != nil {
		t.Fatal(err)
	}
}
