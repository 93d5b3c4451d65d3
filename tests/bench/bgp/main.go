// Command bgp is `make bench-bgp`: spine-mode timings on real nodes
// (containerd, kubelet, kube-proxy in network namespaces) against a real
// FRR spine, with calico-lb deployed as Juju deploys it: the controller in
// its pod, the speakers as the DaemonSet it writes, the test application's
// pods behind the Services. It prints one line per measurement, ending
// with the summary:
//
//	bgp-local-move ms=…          the Local pod Ready on its new node -> route moved at FRR (median)
//	bgp-withdraw-pod-delete ms=… speaker pod deleted -> its route gone at FRR (median)
//	bgp-withdraw-graceful ms=…   speaker process SIGTERM -> its route gone at FRR (median)
//	bgp-bfd-failover ms=…        node black-holed, BFD --bfd-interval x 3 -> route gone at FRR (median)
//	bgp-soak …                   with --soak: BFD sessions down and requests failed with both cores saturated
//	bgp-announce routes=10000 s=…  speaker pod started -> FRR has every route
//	bgp-speaker-usage routes=10000 received=80000 mem_mib=… peak_mib=… anon_mib=… cpu_s=…
//	                             the speaker container's cgroup after the
//	                             announce, and again with the spine sending
//	                             it 80,000 routes besides the 10,000 it
//	                             echoes: just below max-prefixes
//	bgp-summary announce_s=… withdraw_ms=… bfd_ms=… move_ms=… client_failed=…
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/bench/stats"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

func main() {
	routes := flag.Int("routes", 10000, "Service IPs to announce in the announce run")
	trials := flag.Int("trials", 5, "trials of each failover measurement")
	bfdInterval := flag.Duration("bfd-interval", 100*time.Millisecond, "BFD interval of the speakers and the spine (detect multiplier 3)")
	soakFor := flag.Duration("soak", 0, "at the end, saturate both cores this long while a client requests a Service every 10 ms, counting BFD sessions down and next-hop changes (0: no soak)")
	received := flag.Int("received", 80000, "routes the spine sends each speaker in the usage run, besides the speakers' own it sends back (together below max-prefixes, 100000 by default)")
	flag.Parse()
	if m := append(netns.Missing(), cluster.MissingForNodes()...); len(m) > 0 {
		fmt.Fprintln(os.Stderr, "bench-bgp needs:", m, "(run as root after `make deps`)")
		os.Exit(1)
	}
	if err := run(*routes, *trials, *received, *bfdInterval, *soakFor); err != nil {
		fmt.Fprintln(os.Stderr, "bench-bgp:", err)
		os.Exit(1)
	}
}

const peer = "{address: 10.212.%d.1, as-number: 64500, hold-time: 9, bfd: true, bfd-interval: %d, bfd-multiplier: 3}"

func run(nRoutes, trials, nReceived int, bfdInterval, soakFor time.Duration) error {
	ctx := context.Background()
	b, err := spinebed.Start(ctx, spinebed.Options{BFD: true, BFDInterval: bfdInterval, Log: func(s string) { fmt.Println(s) }})
	if err != nil {
		return err
	}
	defer b.Close()
	kb := b.Kubebed
	fail := func(err error) error { return fmt.Errorf("%w\n%s", err, kb.Describe(ctx, "lb")) }
	rack := func(node, r string) error {
		n, err := b.Kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Labels["rack"] = r
		_, err = b.Kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	}
	for _, n := range []string{"node1", "node2"} {
		if err := rack(n, "bench"); err != nil {
			return err
		}
	}
	// The bench pool is a /16 so that the announce run fits; peers use BFD.
	if _, err := kb.Deploy(ctx, "lb", map[string]any{"pools": "10.120.0.0/16", "peering-mode": "spine", "as-number": 64512.0,
		"subnet-spine-peers":    "{10.212.1.0/24: [" + fmt.Sprintf(peer, 1, bfdInterval.Milliseconds()) + "], 10.212.2.0/24: [" + fmt.Sprintf(peer, 2, bfdInterval.Milliseconds()) + "]}",
		"speaker-node-selector": "rack=bench"}); err != nil {
		return err
	}
	if _, err := kb.WaitSpeakers(ctx, "lb", 2, 3*time.Minute); err != nil {
		return err
	}
	if _, err := kb.Echo(ctx, kubebed.App{NS: "bench", Name: "web", Replicas: 2}); err != nil {
		return err
	}
	if _, err := kb.Echo(ctx, kubebed.App{NS: "bench", Name: "local", Replicas: 1, Policy: corev1.ServiceExternalTrafficPolicyLocal, Nodes: []string{"node1"}}); err != nil {
		return err
	}
	vip, err := b.WaitIP("bench", "web", 30*time.Second)
	if err != nil {
		return fail(err)
	}
	lvip, err := b.WaitIP("bench", "local", 30*time.Second)
	if err != nil {
		return fail(err)
	}
	n1, n2 := spinebed.NodeIP(1), spinebed.NodeIP(2)
	if _, err := b.WaitNextHops(vip, 30*time.Second, n1, n2); err != nil {
		return fail(err)
	}
	if _, err := b.WaitNextHops(lvip, 30*time.Second, n1); err != nil {
		return fail(err)
	}
	time.Sleep(3 * time.Second) // let BFD come up on both sessions

	// Local: the pod moves between the nodes; timed from the new pod
	// Ready (what calico-lb reacts to) to the route moved at the spine.
	var moves, totals []time.Duration
	for i := range 2 * trials {
		to, hop := "node2", n2
		if i%2 == 1 {
			to, hop = "node1", n1
		}
		start := time.Now()
		var ready time.Time
		errc := make(chan error, 1)
		go func() { errc <- kb.MoveApp(ctx, "bench", "local", to) }()
		if _, err := netns.WaitFor(ctx, 2*time.Minute, func() bool {
			if ready.IsZero() && podReadyOn(ctx, b, "bench", "app=local", to) {
				ready = time.Now()
			}
			return !ready.IsZero() && slicesEqual(b.NextHops(lvip), hop)
		}); err != nil {
			return fail(fmt.Errorf("local move to %s: next hops %v", to, b.NextHops(lvip)))
		}
		moves, totals = append(moves, time.Since(ready)), append(totals, time.Since(start))
		if err := <-errc; err != nil {
			return err
		}
	}
	fmt.Printf("local move, pod Ready -> route moved: %v\nlocal move, Deployment changed -> route moved: %v\n", moves, totals)

	// Graceful withdraw: node1's speaker pod deleted; the DaemonSet
	// recreates it. A client requests the VIP every 10 ms meanwhile.
	var withdraws []time.Duration
	probe := startProbe(b.Client, vip)
	for range trials {
		pods, err := kb.WaitSpeakers(ctx, "lb", 2, 2*time.Minute)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := b.Kube.CoreV1().Pods("lb").Delete(ctx, pods[0].Name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		if _, err := b.WaitNextHops(vip, 30*time.Second, n2); err != nil {
			return fail(err)
		}
		withdraws = append(withdraws, time.Since(start))
		if _, err := b.WaitNextHops(vip, 60*time.Second, n1, n2); err != nil {
			return fail(err)
		}
	}
	// The speaker process alone stops (SIGTERM, as Pebble or the kubelet
	// stops it): what calico-lb itself takes to withdraw; Pebble then
	// starts it again.
	var sigterms []time.Duration
	for range trials {
		pid, err := kubebed.SpeakerPID(b.Nodes[0])
		if err != nil {
			return fail(err)
		}
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			return err
		}
		if _, err := b.WaitNextHops(vip, 30*time.Second, n2); err != nil {
			return fail(err)
		}
		sigterms = append(sigterms, time.Since(start))
		if _, err := b.WaitNextHops(vip, 60*time.Second, n1, n2); err != nil {
			return fail(err)
		}
	}
	sent, failed := probe()
	fmt.Printf("speaker pod deleted -> route gone: %v\nspeaker SIGTERM -> route gone: %v\nclient requests meanwhile: %d, failed %d\n", withdraws, sigterms, sent, failed)

	// BFD: black-hole node1 (its speaker keeps running); hold time is 9 s.
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
	if soakFor > 0 {
		if err := soak(b, vip, bfdInterval, soakFor); err != nil {
			return fail(err)
		}
	}

	// The speaker's usage with the bench's few Services, against which the
	// announce run's is compared.
	pid, err := kubebed.SpeakerPID(b.Nodes[0])
	if err != nil {
		return fail(err)
	}
	base, err := kubebed.ContainerUsage(pid)
	if err != nil {
		return err
	}
	fmt.Printf("speaker container with a few Services: %s\n", base)

	// Announce: the nodes leave the speakers' selector, nRoutes Services
	// get IPs, then node1 rejoins; timed from its speaker container's
	// start until FRR has every route from it.
	for _, n := range []string{"node1", "node2"} {
		if err := rack(n, "none"); err != nil {
			return err
		}
	}
	if _, err := kb.WaitSpeakers(ctx, "lb", 0, 2*time.Minute); err != nil {
		return err
	}
	fmt.Printf("creating %d Services with IPs\n", nRoutes)
	if err := createMany(ctx, b, nRoutes); err != nil {
		return err
	}
	labelled := time.Now()
	if err := rack("node1", "bench"); err != nil {
		return err
	}
	var have int
	var started time.Time
	if _, err := netns.WaitFor(ctx, 180*time.Second, func() bool {
		if started.IsZero() {
			if _, err := kubebed.SpeakerPID(b.Nodes[0]); err == nil {
				started = time.Now()
			}
		}
		have = countVia(b, n1)
		return have >= nRoutes
	}); err != nil {
		return fail(fmt.Errorf("FRR has %d of %d routes via node1", have, nRoutes))
	}
	total := time.Since(labelled)
	announce := time.Since(started)
	fmt.Printf("announce: node labelled -> every route at FRR %.2f s (the DaemonSet's pod scheduled and started on the way); speaker process started -> every route %.2f s\n",
		total.Seconds(), announce.Seconds())

	if pid, err = kubebed.SpeakerPID(b.Nodes[0]); err != nil {
		return err
	}
	announced, err := kubebed.ContainerUsage(pid)
	if err != nil {
		return err
	}
	fmt.Printf("speaker container after announcing %d routes: %s\n", nRoutes, announced)
	loaded, err := receiveRoutes(b, pid, nReceived)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("speaker container with the spine sending it %d routes as well: %s\n", nReceived, loaded)

	fmt.Printf("bgp-local-move ms=%s\n", stats.MS(stats.Median(moves)))
	fmt.Printf("bgp-withdraw-pod-delete ms=%s\n", stats.MS(stats.Median(withdraws)))
	fmt.Printf("bgp-withdraw-graceful ms=%s\n", stats.MS(stats.Median(sigterms)))
	fmt.Printf("bgp-bfd-failover ms=%s\n", stats.MS(stats.Median(bfds)))
	fmt.Printf("bgp-announce routes=%d s=%.2f\n", nRoutes, announce.Seconds())
	fmt.Printf("bgp-speaker-usage routes=%d received=%d mem_mib=%.1f peak_mib=%.1f anon_mib=%.1f cpu_s=%.2f\n", nRoutes, nReceived,
		float64(loaded.Memory)/(1<<20), float64(loaded.MemoryPeak)/(1<<20), float64(loaded.Anon)/(1<<20), loaded.CPU.Seconds())
	fmt.Printf("bgp-summary announce_s=%.2f withdraw_ms=%s pod_delete_ms=%s bfd_ms=%s move_ms=%s client_failed=%d/%d\n", announce.Seconds(),
		stats.MS(stats.Median(sigterms)), stats.MS(stats.Median(withdraws)), stats.MS(stats.Median(bfds)), stats.MS(stats.Median(moves)), failed, sent)
	return nil
}

func slicesEqual(got []string, want ...string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}

// podReadyOn reports whether a pod matching selector in ns is Ready on node.
func podReadyOn(ctx context.Context, b *spinebed.Bed, ns, selector, node string) bool {
	l, err := b.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return false
	}
	for _, p := range l.Items {
		if p.Spec.NodeName == node && kubebed.PodReady(&p) {
			return true
		}
	}
	return false
}

// startProbe requests the test application at vip from ns every 10 ms
// (each request limited to 200 ms) until the returned function is called,
// which reports how many requests were sent and how many failed.
func startProbe(ns, vip string) func() (sent, failed int) {
	var s, f atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			attempt := time.Now()
			s.Add(1)
			if _, err := kubebed.Ask(ns, vip, 200*time.Millisecond); err != nil {
				f.Add(1)
			}
			time.Sleep(time.Until(attempt.Add(10 * time.Millisecond)))
		}
	}()
	return func() (int, int) {
		close(stop)
		<-done
		return int(s.Load()), int(f.Load())
	}
}

// createMany creates n LoadBalancer Services, each asking for its own IP
// of the bench pool, 16 clients at a time, and waits until the controller
// has given them. kube-proxy is told to leave them alone
// (service-proxy-name): they have no pods, and 10,000 Services' rules
// would only measure iptables.
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
				s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("many-%05d", i), Namespace: "bench",
					Labels: map[string]string{"service.kubernetes.io/service-proxy-name": "none"}},
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
// receiveRoutes has the spine send n routes to the speakers (the worst a
// spine may do without being cut off) and returns the speaker's usage once
// they have all gone out and GoBGP has taken them in.
func receiveRoutes(b *spinebed.Bed, pid, n int) (kubebed.Usage, error) {
	// In batches: one vtysh with every network would pass the argument
	// limit.
	for from := 0; from < n; from += 5000 {
		args := []string{"-c", "configure terminal", "-c", "router bgp 64500", "-c", "no bgp network import-check", "-c", "address-family ipv4 unicast"}
		for i := from; i < min(n, from+5000); i++ {
			args = append(args, "-c", fmt.Sprintf("network 10.%d.%d.%d/32", 150+i/62500, i/250%250, 1+i%250))
		}
		if out, err := b.FRR.Vtysh(args...); err != nil {
			return kubebed.Usage{}, fmt.Errorf("vtysh: %w\n%s", err, out)
		}
	}
	var sent, steady int
	var state string
	if _, err := netns.WaitFor(context.Background(), 3*time.Minute, func() bool {
		time.Sleep(500 * time.Millisecond)
		out, _ := b.FRR.Vtysh("-c", "show bgp ipv4 unicast summary json")
		var sum struct {
			Peers map[string]struct {
				PfxSnt int    `json:"pfxSnt"`
				State  string `json:"state"`
			} `json:"peers"`
		}
		_ = json.Unmarshal([]byte(out), &sum)
		last := sent
		sent, state = sum.Peers["10.212.1.2"].PfxSnt, sum.Peers["10.212.1.2"].State
		// The spine may send node1 its own routes back too: done when
		// the count has stopped growing.
		if sent < n || sent != last {
			steady = 0
			return false
		}
		steady++
		return steady >= 3
	}); err != nil {
		return kubebed.Usage{}, fmt.Errorf("the spine sent node1 %d of %d routes (session %s)", sent, n, state)
	}
	time.Sleep(5 * time.Second) // taken in, and a GC cycle or two
	u, err := kubebed.ContainerUsage(pid)
	if err != nil {
		return u, fmt.Errorf("the speaker (process %d) is gone: %w", pid, err)
	}
	out, _ := b.FRR.Vtysh("-c", "show bgp ipv4 unicast summary json")
	if !strings.Contains(out, `"state":"Established"`) {
		return u, fmt.Errorf("node1's session is down with %d routes sent:\n%s", sent, out)
	}
	return u, nil
}

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
		if !strings.HasPrefix(r.Dst, "10.120.") || strings.HasPrefix(r.Dst, "10.120.0.") {
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
