package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/calico-lb/calico-lb/tests/bench/load"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// soak saturates both cores for d (busy loops in every node's pods cgroup,
// beside the speakers, and outside the nodes) while the client requests
// vip every 10 ms, and counts the BFD sessions the spine saw go down and
// the changes of its next hops for vip: with BFD at 50 ms x 3, a speaker
// starved for 150 ms looks dead and its routes go. It prints:
//
//	bgp-soak minutes=… bfd_interval_ms=… busy_loops=… requests=… failed=… bfd_downs=… next_hop_changes=…
func soak(b *spinebed.Bed, vip string, bfdInterval, d time.Duration) error {
	before, err := bfdDowns(b.FRR)
	if err != nil {
		return err
	}
	l, err := load.Start(b.Kubebed.Nodes, 2)
	if err != nil {
		return err
	}
	defer l.Stop()
	fmt.Printf("soak: %s for %s; requesting %s every 10 ms\n", l, d, vip)
	probe := startProbe(b.Client, vip)
	start, hops, changes := time.Now(), b.NextHops(vip), 0
	for time.Since(start) < d {
		time.Sleep(100 * time.Millisecond)
		if now := b.NextHops(vip); !slices.Equal(now, hops) {
			changes++
			fmt.Printf("soak: at %s the spine's next hops for %s went from %v to %v\n", time.Since(start).Round(time.Millisecond), vip, hops, now)
			hops = now
		}
	}
	sent, failed := probe()
	l.Stop()
	after, err := bfdDowns(b.FRR)
	if err != nil {
		return err
	}
	fmt.Printf("bgp-soak minutes=%.0f bfd_interval_ms=%d busy_loops=%d requests=%d failed=%d bfd_downs=%d next_hop_changes=%d\n",
		d.Minutes(), bfdInterval.Milliseconds(), l.Inside+l.Outside, sent, failed, after-before, changes)
	return nil
}

// bfdDowns sums the BFD sessions' down events at the spine.
func bfdDowns(f *netns.FRR) (int, error) {
	out, err := f.Vtysh("-c", "show bfd peers counters json")
	if err != nil {
		return 0, fmt.Errorf("show bfd peers counters: %w: %s", err, out)
	}
	var peers []struct {
		Downs int `json:"session-down-events"`
	}
	if err := json.Unmarshal([]byte(out), &peers); err != nil {
		return 0, fmt.Errorf("show bfd peers counters json: %w: %s", err, out)
	}
	n := 0
	for _, p := range peers {
		n += p.Downs
	}
	return n, nil
}
