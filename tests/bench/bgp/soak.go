package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/calico-lb/calico-lb/tests/bench/load"
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
	before, err := b.BFDDowns()
	if err != nil {
		return err
	}
	// The spine is a router of its own in a network, not a tenant of the
	// nodes' cores: its daemons get the CPU first, so that what is
	// counted is the speakers' BFD, not FRR's starved here.
	if err := renice(b.Spine, -20); err != nil {
		return err
	}
	defer func() { _ = renice(b.Spine, 0) }()
	l, err := load.Start(b.Kubebed.Nodes, 2)
	if err != nil {
		return err
	}
	defer l.Stop()
	fmt.Printf("soak: %s for %s, the spine's FRR at nice -20; requesting %s every 10 ms\n", l, d, vip)
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
	after, err := b.BFDDowns()
	if err != nil {
		return err
	}
	fmt.Printf("bgp-soak minutes=%.0f bfd_interval_ms=%d busy_loops=%d requests=%d failed=%d bfd_downs=%d next_hop_changes=%d\n",
		d.Minutes(), bfdInterval.Milliseconds(), l.Inside+l.Outside, sent, failed, after-before, changes)
	return nil
}

// renice sets the nice value of every thread of every process in network
// namespace ns.
func renice(ns string, nice int) error {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return fmt.Errorf("ip netns pids %s: %w", ns, err)
	}
	for _, f := range strings.Fields(string(out)) {
		// Nice is per thread: every thread of the process.
		tasks, _ := os.ReadDir("/proc/" + f + "/task")
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice); err != nil {
				return fmt.Errorf("renice thread %d of %s in %s: %w", tid, f, ns, err)
			}
		}
	}
	return nil
}
