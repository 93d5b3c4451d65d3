// Command l2 is `make bench-l2`: L2-mode failover as a client sees it, with
// the real controller and speakers on one L2 segment in network namespaces.
//
// Each trial finds the node that owns a VIP, starts probing the VIP from the
// client with TCP every 10 ms (each attempt limited to 100 ms, through the
// client's own ARP cache, so the gratuitous ARP is part of what is
// measured), breaks the owner, and records the time until a connection is
// answered by another node. The first half of the trials SIGKILL the
// owner's speaker, the second half take the owner's link down; after each
// the fault is repaired and ownership left to settle (hold-down included).
// The last line is the summary:
//
//	l2-failover trials=40 p50_ms=… p99_ms=… max_ms=…
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/bench/stats"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

func main() {
	binary := flag.String("binary", filepath.Join(cluster.Root(), "bin", "calico-lb"), "the calico-lb binary")
	trials := flag.Int("trials", 20, "trials of each fault (SIGKILL, link down)")
	flag.Parse()
	if m := netns.Missing(); len(m) > 0 {
		fmt.Fprintln(os.Stderr, "bench-l2 needs:", m, "(run as root after `make deps`)")
		os.Exit(1)
	}
	if err := run(*binary, *trials); err != nil {
		fmt.Fprintln(os.Stderr, "bench-l2:", err)
		os.Exit(1)
	}
}

const settle = 5 * time.Second // hold-down (3 s) and the move back, with margin

func run(binary string, trials int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "calico-lb-bench-l2-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := spinebed.StartL2(ctx, spinebed.Options{Binary: binary, Dir: dir, Log: func(s string) { fmt.Println(s) }})
	if err != nil {
		return err
	}
	defer b.Close()
	fail := func(err error) error { return fmt.Errorf("%w\n%s", err, b.Logs()) }
	if err := b.StartWorkload("mode: l2\npools:\n  bench: {addresses: [10.214.0.100-10.214.0.120]}\n"); err != nil {
		return err
	}
	kube := b.Kube.CoreV1()
	if _, err := kube.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "bench"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 8080}}}}
	if _, err := kube.Services("bench").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	vip, err := b.WaitIP("bench", "web", 30*time.Second)
	if err != nil {
		return fail(err)
	}
	// Every node serves the VIP (kube-proxy's part); only the owner is
	// reachable, because only it answers ARP.
	target := netip.AddrPortFrom(netip.MustParseAddr(vip), 8080).String()
	stop, err := b.ServeVIP(vip, 8080)
	if err != nil {
		return err
	}
	defer stop()
	time.Sleep(settle)

	var all []time.Duration
	for i := range 2 * trials {
		kill := i < trials
		owner, err := netns.AskWithin(b.Client, target, time.Second)
		if err != nil {
			return fail(fmt.Errorf("trial %d: VIP %s unreachable before the fault: %w", i+1, vip, err))
		}
		var n int
		if _, err := fmt.Sscanf(owner, "node%d", &n); err != nil {
			return fmt.Errorf("trial %d: unexpected answer %q", i+1, owner)
		}
		start := time.Now()
		if kill {
			b.Signal(n, syscall.SIGKILL)
		} else if _, err := b.Net.Exec(b.Nodes[n-1], "ip", "link", "set", "eth0", "down"); err != nil {
			return err
		}
		_, took, err := b.WaitOtherAnswer(target, owner, start, 10*time.Second)
		if err != nil {
			neigh, _ := b.Net.Exec(b.Client, "ip", "neigh", "show", vip)
			arp, _ := b.Net.Exec(b.Client, "arping", "-b", "-c", "3", "-w", "4", "-I", "eth0", vip)
			return fail(fmt.Errorf("trial %d, after %s broke: %w; client's neighbour entry: %s; ARP now: %s", i+1, owner, err, neigh, arp))
		}
		fault := "link-down"
		if kill {
			fault = "sigkill"
		}
		fmt.Printf("trial %d %s %s: client reconnected after %s ms\n", i+1, fault, owner, stats.MS(took))
		all = append(all, took)
		if kill {
			if err := b.StartSpeaker(n); err != nil {
				return err
			}
		} else if _, err := b.Net.Exec(b.Nodes[n-1], "ip", "link", "set", "eth0", "up"); err != nil {
			return err
		}
		time.Sleep(settle)
	}
	// The sorts copy, so all keeps the trial order for the split.
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{{"l2-sigkill", all[:trials]}, {"l2-link-down", all[trials:]}, {"l2-failover", all}} {
		d := slices.Sorted(slices.Values(r.d))
		fmt.Printf("%s trials=%d p50_ms=%s p99_ms=%s max_ms=%s\n", r.name, len(d),
			stats.MS(stats.Percentile(d, 50)), stats.MS(stats.Percentile(d, 99)), stats.MS(d[len(d)-1]))
	}
	return nil
}
