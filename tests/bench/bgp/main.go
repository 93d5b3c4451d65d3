// Command bgp is `make bench-bgp`: spine-mode timings with the real
// controller and speakers against a real FRR spine, in network namespaces.
// It prints one line per measurement, ending with the summary:
//
//	bgp-local-move ms=…          EndpointSlice update -> route moved at FRR (median)
//	bgp-withdraw-graceful ms=…   speaker SIGTERM -> route gone at FRR (median)
//	bgp-bfd-failover ms=…        node black-holed, BFD 100 ms x 3 -> route gone at FRR (median)
//	bgp-announce routes=10000 s=…  speaker start -> FRR has every route
//	bgp-summary announce_s=… withdraw_ms=… bfd_ms=… move_ms=…
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/bench/stats"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

func main() {
	binary := flag.String("binary", filepath.Join(cluster.Root(), "bin", "calico-lb"), "the calico-lb binary")
	routes := flag.Int("routes", 10000, "Service IPs to announce in the announce run")
	trials := flag.Int("trials", 5, "trials of each failover measurement")
	flag.Parse()
	if m := netns.Missing(); len(m) > 0 {
		fmt.Fprintln(os.Stderr, "bench-bgp needs:", m, "(run as root after `make deps`)")
		os.Exit(1)
	}
	if err := run(*binary, *routes, *trials); err != nil {
		fmt.Fprintln(os.Stderr, "bench-bgp:", err)
		os.Exit(1)
	}
}

func run(binary string, nRoutes, trials int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "calico-lb-bench-bgp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := spinebed.Start(ctx, spinebed.Options{BFD: true, Binary: binary, Dir: dir, Log: func(s string) { fmt.Println(s) }})
	if err != nil {
		return err
	}
	defer b.Close()
	fail := func(err error) error { return fmt.Errorf("%w\n%s", err, b.Logs()) }
	// The bench pool is a /16 so that the announce run fits; peers use BFD.
	if err := b.StartWorkload(b.Config("  bench: {addresses: [10.120.0.0/16]}\n", ", bfd: true, bfd-interval: 100, bfd-multiplier: 3")); err != nil {
		return err
	}
	kube := b.Kube.CoreV1()
	if _, err := kube.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	n1, n2 := spinebed.NodeIP(1), spinebed.NodeIP(2)
	svc := func(name string, local bool) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "bench"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}
		if local {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		return s
	}
	for _, s := range []*corev1.Service{svc("web", false), svc("local", true)} {
		if _, err := kube.Services("bench").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	vip, err := b.WaitIP("bench", "web", 30*time.Second)
	if err != nil {
		return fail(err)
	}
	lvip, err := b.WaitIP("bench", "local", 30*time.Second)
	if err != nil {
		return fail(err)
	}
	if _, err := b.WaitNextHops(vip, 30*time.Second, n1, n2); err != nil {
		return fail(err)
	}
	time.Sleep(3 * time.Second) // let BFD come up on both sessions

	// Local: the endpoint moves between the nodes; the route follows.
	node, ready := "node1", true
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "local-1", Namespace: "bench", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.168.0.9"}, NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}
	if es, err = b.Kube.DiscoveryV1().EndpointSlices("bench").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := b.WaitNextHops(lvip, 30*time.Second, n1); err != nil {
		return fail(err)
	}
	var moves []time.Duration
	for i := range 2 * trials {
		to, hop := "node2", n2
		if i%2 == 1 {
			to, hop = "node1", n1
		}
		es.Endpoints[0].NodeName = &to
		start := time.Now()
		if es, err = b.Kube.DiscoveryV1().EndpointSlices("bench").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			return err
		}
		if _, err := b.WaitNextHops(lvip, 10*time.Second, hop); err != nil {
			return fail(err)
		}
		moves = append(moves, time.Since(start))
	}
	fmt.Printf("local move: %v\n", moves)

	// Graceful withdraw: SIGTERM of node1's speaker, then restart it.
	var withdraws []time.Duration
	for range trials {
		start := time.Now()
		b.Signal(1, syscall.SIGTERM)
		if _, err := b.WaitNextHops(vip, 10*time.Second, n2); err != nil {
			return fail(err)
		}
		withdraws = append(withdraws, time.Since(start))
		if err := b.StartSpeaker(1); err != nil {
			return err
		}
		if _, err := b.WaitNextHops(vip, 30*time.Second, n1, n2); err != nil {
			return fail(err)
		}
	}
	fmt.Printf("graceful withdraw: %v\n", withdraws)

	// BFD: black-hole node1 (its process keeps running); hold time is 9 s.
	time.Sleep(3 * time.Second) // BFD back up after the last restart
	var bfds []time.Duration
	for range trials {
		start := time.Now()
		if err := b.Net.Blackhole(b.Nodes[0], "10.212.1.1"); err != nil {
			return err
		}
		if _, err := b.WaitNextHops(vip, 10*time.Second, n2); err != nil {
			return fail(err)
		}
		bfds = append(bfds, time.Since(start))
		if err := b.Net.Unblackhole(b.Nodes[0]); err != nil {
			return err
		}
		if _, err := b.WaitNextHops(vip, 30*time.Second, n1, n2); err != nil {
			return fail(err)
		}
		time.Sleep(3 * time.Second) // BFD back up
	}
	fmt.Printf("BFD failover: %v\n", bfds)

	// Announce: nRoutes Services with IPs exist while no speaker runs; then
	// node1's speaker starts, and the clock runs until FRR has every route
	// from it (the BGP session set-up included).
	b.Signal(1, syscall.SIGTERM)
	b.Signal(2, syscall.SIGTERM)
	fmt.Printf("creating %d Services with IPs\n", nRoutes)
	if err := createMany(ctx, b, nRoutes); err != nil {
		return err
	}
	start := time.Now()
	if err := b.StartSpeaker(1); err != nil {
		return err
	}
	var have int
	if _, err := netns.WaitFor(ctx, 120*time.Second, func() bool {
		have = countVia(b, n1)
		return have >= nRoutes
	}); err != nil {
		return fail(fmt.Errorf("FRR has %d of %d routes via node1", have, nRoutes))
	}
	announce := time.Since(start)

	fmt.Printf("bgp-local-move ms=%s\n", stats.MS(stats.Median(moves)))
	fmt.Printf("bgp-withdraw-graceful ms=%s\n", stats.MS(stats.Median(withdraws)))
	fmt.Printf("bgp-bfd-failover ms=%s\n", stats.MS(stats.Median(bfds)))
	fmt.Printf("bgp-announce routes=%d s=%.2f\n", nRoutes, announce.Seconds())
	fmt.Printf("bgp-summary announce_s=%.2f withdraw_ms=%s bfd_ms=%s move_ms=%s\n", announce.Seconds(), stats.MS(stats.Median(withdraws)), stats.MS(stats.Median(bfds)), stats.MS(stats.Median(moves)))
	return nil
}

// createMany creates n LoadBalancer Services, each asking for its own IP
// of the bench pool, 16 clients at a time, and waits until the controller
// has given them.
func createMany(ctx context.Context, b *spinebed.Bed, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := b.Cluster.Client(cluster.UserAdmin).CoreV1().Services("bench")
			for i := w; i < n; i += 16 {
				no := false
				s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("many-%05d", i), Namespace: "bench"},
					Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: &no, Ports: []corev1.ServicePort{{Port: 80}},
						LoadBalancerIP: fmt.Sprintf("10.120.%d.%d", 100+i/250, 1+i%250)}}
				if _, err := c.Create(ctx, s, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	// The controller gives each its requested IP.
	_, err := netns.WaitFor(ctx, 300*time.Second, func() bool {
		list, err := b.Kube.CoreV1().Services("bench").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		got := 0
		for _, s := range list.Items {
			if len(s.Status.LoadBalancer.Ingress) > 0 {
				got++
			}
		}
		return got >= n
	})
	return err
}

// countVia counts the spine's kernel routes in the bench range via hop.
func countVia(b *spinebed.Bed, hop string) int {
	out, err := exec.Command("ip", "-4", "-n", b.Spine, "-j", "route", "show", "proto", "bgp").Output()
	if err != nil {
		return 0
	}
	var routes []struct {
		Dst      string `json:"dst"`
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if json.Unmarshal(out, &routes) != nil {
		return 0
	}
	n := 0
	for _, r := range routes {
		if !strings.HasPrefix(r.Dst, "10.120.") {
			continue
		}
		via := r.Gateway == hop
		for _, h := range r.Nexthops {
			via = via || h.Gateway == hop
		}
		if via {
			n++
		}
	}
	return n
}
