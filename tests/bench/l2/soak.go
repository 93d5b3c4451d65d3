package main

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/calico-lb/calico-lb/tests/bench/load"
	"github.com/calico-lb/calico-lb/tests/bench/stats"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// soak saturates both cores for d, with busy loops in every node's pods
// cgroup (beside the speakers) and outside the nodes, while the client
// requests the VIP every 10 ms: a false failover moves the VIP (a change
// of owner) and may fail requests. It prints, as its last line:
//
//	l2-soak minutes=… busy_loops=… requests=… failed=… p99_ms=… owner_changes=… ownership_changes_metric=…
func soak(ctx context.Context, b *spinebed.Bed, vip string, owner func() int, d time.Duration) error {
	before, err := ownershipChanges(b)
	if err != nil {
		return err
	}
	l, err := load.Start(b.Kubebed.Nodes, 2)
	if err != nil {
		return err
	}
	defer l.Stop()
	fmt.Printf("soak: %s for %s; requesting %s every 10 ms\n", l, d, vip)

	start, last := time.Now(), owner()
	var took []time.Duration
	failed, changes := 0, 0
	nextOwnerCheck := start
	for time.Since(start) < d && ctx.Err() == nil {
		attempt := time.Now()
		_, err := kubebed.Ask(b.Client, vip, 100*time.Millisecond)
		took = append(took, time.Since(attempt))
		if err != nil {
			failed++
		}
		if time.Now().After(nextOwnerCheck) {
			if o := owner(); o != 0 && o != last {
				changes++
				fmt.Printf("soak: at %s the client's neighbour entry moved from node%d to node%d\n", time.Since(start).Round(time.Millisecond), last, o)
				last = o
			}
			nextOwnerCheck = time.Now().Add(100 * time.Millisecond)
		}
		time.Sleep(time.Until(attempt.Add(10 * time.Millisecond)))
	}
	l.Stop()
	after, err := ownershipChanges(b)
	if err != nil {
		return err
	}
	if after < before {
		return fmt.Errorf("the speakers' ownership changes fell from %d to %d: a speaker restarted during the soak", before, after)
	}
	fmt.Printf("l2-soak minutes=%.0f busy_loops=%d requests=%d failed=%d p99_ms=%s owner_changes=%d ownership_changes_metric=%d\n",
		d.Minutes(), l.Inside+l.Outside, len(took), failed, stats.MS(stats.Percentile(slices.Sorted(slices.Values(took)), 99)), changes, after-before)
	return nil
}

// ownershipChanges sums calico_lb_l2_ownership_changes_total over the
// speakers, read from each one's status API on its node.
func ownershipChanges(b *spinebed.Bed) (int, error) {
	total := 0
	for i, ns := range b.Nodes {
		resp, err := netns.HTTPClient(ns, 2*time.Second).Get("http://" + b.NodeIPs[i] + ":9403/metrics")
		if err != nil {
			return 0, fmt.Errorf("node%d's speaker metrics: %w", i+1, err)
		}
		n, found := 0, false
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "calico_lb_l2_ownership_changes_total "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					resp.Body.Close()
					return 0, fmt.Errorf("node%d's ownership changes %q: %w", i+1, v, err)
				}
				n, found = int(f), true
			}
		}
		resp.Body.Close()
		if !found {
			return 0, fmt.Errorf("node%d's speaker exports no calico_lb_l2_ownership_changes_total", i+1)
		}
		total += n
	}
	return total, nil
}
