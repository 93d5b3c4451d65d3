// Command l2 is `make bench-l2`: L2-mode failover as a client sees it, on
// three real nodes (containerd, kubelet, kube-proxy) on one L2 segment,
// with calico-lb deployed as Juju deploys it and the test application's
// pods behind the Service, so every request goes through the owner's
// kube-proxy to a pod.
//
// Each trial finds the node that owns the VIP (the client's neighbour
// entry after a request), starts requesting the VIP from the client every
// 10 ms (each request limited to 100 ms, through the client's own ARP
// cache, so the gratuitous ARP is part of what is measured), breaks the
// owner, and records:
//   - sigkill: the owner's speaker process SIGKILLed in its pod (the image's
//     Pebble restarts it). The owner's kube-proxy still forwards, so the
//     client should see no failure; what is timed is the takeover: until
//     the client's neighbour entry names another node.
//   - link-down: the owner's link goes down; timed until a request is
//     answered again, through another node, and (as for sigkill) until
//     the client's neighbour entry names another node: the first is the
//     second rounded up to the client's next request, which a failed
//     request's 100 ms limit spaces.
//
// After each trial the fault is repaired and ownership left to settle
// (hold-down included). The summary:
//
//	l2-failover trials=40 p50_ms=… p99_ms=… max_ms=…
//
// Then, with --soak, both cores are saturated (soak.go) and false
// failovers counted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/calico-lb/calico-lb/tests/bench/stats"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

func main() {
	trials := flag.Int("trials", 20, "trials of each fault (SIGKILL, link down)")
	soakFor := flag.Duration("soak", 0, "then saturate both cores this long while the client requests the VIP every 10 ms, counting false failovers (0: no soak)")
	flag.Parse()
	if m := append(netns.Missing(), cluster.MissingForNodes()...); len(m) > 0 {
		fmt.Fprintln(os.Stderr, "bench-l2 needs:", m, "(run as root after `make deps`)")
		os.Exit(1)
	}
	if err := run(*trials, *soakFor); err != nil {
		fmt.Fprintln(os.Stderr, "bench-l2:", err)
		os.Exit(1)
	}
}

const settle = 5 * time.Second // hold-down (3 s) and the move back, with margin

func run(trials int, soakFor time.Duration) error {
	ctx := context.Background()
	b, err := spinebed.StartL2(ctx, spinebed.Options{Log: func(s string) { fmt.Println(s) }})
	if err != nil {
		return err
	}
	defer b.Close()
	kb := b.Kubebed
	fail := func(err error) error { return fmt.Errorf("%w\n%s", err, kb.Describe(ctx, "lb")) }
	if _, err := kb.Deploy(ctx, "lb", map[string]any{"pools": "10.214.0.100-10.214.0.120", "peering-mode": "l2"}); err != nil {
		return err
	}
	if _, err := kb.WaitSpeakers(ctx, "lb", 3, 3*time.Minute); err != nil {
		return err
	}
	if _, err := kb.Echo(ctx, kubebed.App{NS: "bench", Name: "web", Replicas: 3}); err != nil {
		return err
	}
	vip, err := b.WaitIP("bench", "web", 30*time.Second)
	if err != nil {
		return fail(err)
	}
	nodeOf := map[string]int{}
	for i, ns := range b.Nodes {
		nodeOf[strings.ToLower(b.MAC(ns))] = i + 1
	}
	// owner is the node the client's neighbour entry for the VIP names.
	owner := func() int {
		out, _ := b.Net.Exec(b.Client, "ip", "neigh", "show", vip)
		f := strings.Fields(out)
		for i, w := range f {
			if w == "lladdr" && i+1 < len(f) {
				return nodeOf[strings.ToLower(f[i+1])]
			}
		}
		return 0
	}
	ask := func(limit time.Duration) error {
		_, err := kubebed.Ask(b.Client, vip, limit)
		return err
	}
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { return ask(time.Second) == nil }); err != nil {
		return fail(fmt.Errorf("VIP %s unreachable: %w", vip, err))
	}
	time.Sleep(settle)

	var sigkills, links, linkMoves []time.Duration
	sigkillFailed, sigkillSent := 0, 0
	for i := range 2 * trials {
		kill := i < trials
		if err := ask(time.Second); err != nil {
			return fail(fmt.Errorf("trial %d: VIP %s unreachable before the fault: %w", i+1, vip, err))
		}
		n := owner()
		if n == 0 {
			return fail(fmt.Errorf("trial %d: the client has no neighbour entry for %s", i+1, vip))
		}
		var start time.Time
		if kill {
			pid, err := kubebed.SpeakerPID(b.Nodes[n-1])
			if err != nil {
				return fail(err)
			}
			start = time.Now()
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				return err
			}
		}
		moved := make(chan time.Duration, 1)
		if !kill {
			start = time.Now()
			if _, err := b.Net.Exec(b.Nodes[n-1], "ip", "link", "set", "eth0", "down"); err != nil {
				return err
			}
			go func() {
				for time.Since(start) < 15*time.Second {
					if o := owner(); o != 0 && o != n {
						moved <- time.Since(start)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
				moved <- 0
			}()
		}
		var took time.Duration
		sent, failed := 0, 0
		for time.Since(start) < 15*time.Second {
			attempt := time.Now()
			err := ask(100 * time.Millisecond)
			sent++
			if err != nil {
				failed++
			}
			if err == nil && owner() != n {
				took = time.Since(start)
				break
			}
			time.Sleep(time.Until(attempt.Add(10 * time.Millisecond)))
		}
		if took == 0 {
			neigh, _ := b.Net.Exec(b.Client, "ip", "neigh", "show", vip)
			return fail(fmt.Errorf("trial %d: no other node took %s from node%d within 15 s; client's neighbour entry: %s", i+1, vip, n, neigh))
		}
		if kill {
			fmt.Printf("trial %d sigkill node%d: node%d took over after %s ms; client requests failed meanwhile: %d of %d\n", i+1, n, owner(), stats.MS(took), failed, sent)
			sigkills = append(sigkills, took)
			sigkillFailed, sigkillSent = sigkillFailed+failed, sigkillSent+sent
		} else {
			m := <-moved
			fmt.Printf("trial %d link-down node%d: client answered again through node%d after %s ms (its neighbour entry moved after %s ms)\n", i+1, n, owner(), stats.MS(took), stats.MS(m))
			links, linkMoves = append(links, took), append(linkMoves, m)
			if _, err := b.Net.Exec(b.Nodes[n-1], "ip", "link", "set", "eth0", "up"); err != nil {
				return err
			}
		}
		time.Sleep(settle)
	}
	fmt.Printf("l2-sigkill-client failed=%d sent=%d\n", sigkillFailed, sigkillSent)
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{{"l2-sigkill", sigkills}, {"l2-link-down-takeover", linkMoves}, {"l2-link-down", links}, {"l2-failover", append(slices.Clone(sigkills), links...)}} {
		d := slices.Sorted(slices.Values(r.d))
		fmt.Printf("%s trials=%d p50_ms=%s p99_ms=%s max_ms=%s\n", r.name, len(d),
			stats.MS(stats.Percentile(d, 50)), stats.MS(stats.Percentile(d, 99)), stats.MS(d[len(d)-1]))
	}
	if soakFor > 0 {
		if err := soak(ctx, b, vip, owner, soakFor); err != nil {
			return fail(err)
		}
	}
	return nil
}
