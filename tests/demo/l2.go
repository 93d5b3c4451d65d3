package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// runL2 is `make demo MODE=l2`: one L2 segment with a client and three real
// dual-stack nodes; calico-lb deployed as Juju deploys it; the owner of a
// VIP answers ARP and NDP, the client reaches the pods through it and
// kube-proxy, and another node takes over when the owner's link goes.
func runL2(ctx context.Context) error {
	if m := append(netns.Missing(), cluster.MissingForNodes()...); len(m) > 0 {
		return fmt.Errorf("L2 mode needs %s (run `sudo make demo MODE=l2`; make deps installs them)", strings.Join(m, ", "))
	}
	step("L2 mode: one segment (a bridge), a client and node1..node3 as real Kubernetes nodes (containerd, kubelet, kube-proxy)")
	b, err := spinebed.StartL2(ctx, spinebed.Options{Log: func(s string) { fmt.Println("    " + s) }})
	if err != nil {
		return err
	}
	defer func() {
		b.Close()
		step("L2 test bed removed (nodes, namespaces, processes, cgroups)")
	}()
	kb := b.Kubebed
	cfg := map[string]any{"pools": "10.214.0.100-10.214.0.120 fd14::100-fd14::120", "peering-mode": "l2"}
	step("juju deploy ./calico-lb_amd64.charm --resource workload-image=%s --trust --config pools=%q --config peering-mode=l2", kb.Image("calico-lb:test"), cfg["pools"])
	u, err := kb.Deploy(ctx, "lb", cfg)
	if err != nil {
		return err
	}
	st, err := u.State(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("    juju status: calico-lb/0 %s: %s\n", st.UnitStatus.Name, st.UnitStatus.Message)
	if _, err := kb.WaitSpeakers(ctx, "lb", 3, 3*time.Minute); err != nil {
		return err
	}
	fmt.Println("    3 speaker pods Ready (NET_RAW only, read-only root, under the image's Pebble)")

	step("The shop application: 3 pods behind a dual-stack LoadBalancer Service")
	if _, err := kb.Echo(ctx, kubebed.App{NS: "shop", Name: "shop", Replicas: 3, DualStack: true}); err != nil {
		return err
	}
	var vips []string
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool {
		s, err := b.Kube.CoreV1().Services("shop").Get(ctx, "shop", metav1.GetOptions{})
		vips = vips[:0]
		for _, in := range s.Status.LoadBalancer.Ingress {
			vips = append(vips, in.IP)
		}
		return err == nil && len(vips) == 2
	}); err != nil {
		return fmt.Errorf("shop got %v, want an IPv4 and an IPv6 address", vips)
	}
	fmt.Printf("    shop got %s\n", strings.Join(vips, ", "))
	macs := map[string]string{}
	for i, ns := range b.Nodes {
		macs[strings.ToUpper(b.MAC(ns))] = fmt.Sprint("node", i+1)
		fmt.Printf("    node%d's MAC is %s\n", i+1, strings.ToUpper(b.MAC(ns)))
	}
	owner := func() string {
		out, _ := b.Net.Exec(b.Client, "arping", "-b", "-c", "1", "-w", "2", "-I", "eth0", vips[0])
		for mac, node := range macs {
			if strings.Contains(out, "["+mac+"]") {
				return node
			}
		}
		return "nobody"
	}
	time.Sleep(time.Second)
	out, _ := b.Net.Exec(b.Client, "arping", "-c", "2", "-I", "eth0", vips[0])
	fmt.Printf("    client: arping %s\n%s", vips[0], indent(out))
	for _, v := range vips {
		host := v
		if strings.Contains(v, ":") {
			host = "[" + v + "]"
		}
		var a kubebed.Answer
		_, err := netns.WaitFor(ctx, 20*time.Second, func() bool {
			a, err = kubebed.Ask(b.Client, host, 2*time.Second)
			return err == nil
		})
		if err != nil {
			return fmt.Errorf("client to %s: %w", host, err)
		}
		fmt.Printf("    client -> http://%s/ answered by pod %s on %s, which saw the client as %s\n", host, a.Pod, a.Node, a.Client)
	}
	was := owner()

	step("Failover: %s (the owner of %s) loses its link; the client probes http://%s/ every 10 ms", was, vips[0], vips[0])
	var n int
	if _, err := fmt.Sscanf(was, "node%d", &n); err != nil {
		return fmt.Errorf("no node answers ARP for %s", vips[0])
	}
	start := time.Now()
	if _, err := b.Net.Exec(b.Nodes[n-1], "ip", "link", "set", "eth0", "down"); err != nil {
		return err
	}
	var took time.Duration
	for took == 0 && time.Since(start) < 20*time.Second {
		attempt := time.Now()
		if _, err := kubebed.Ask(b.Client, vips[0], 100*time.Millisecond); err == nil {
			took = time.Since(start)
			break
		}
		time.Sleep(time.Until(attempt.Add(10 * time.Millisecond)))
	}
	if took == 0 {
		return fmt.Errorf("no answer within 20 s of %s's link going down", was)
	}
	taker := owner()
	fmt.Printf("    answered again after %s; %s now answers ARP (liveness timeout 350 ms, then gratuitous ARP)\n", took.Round(time.Millisecond), taker)
	if _, err := b.Net.Exec(b.Nodes[n-1], "ip", "link", "set", "eth0", "up"); err != nil {
		return err
	}
	step("%s's link is back: it waits out the 3 s hold-down before taking its IPs back, so ownership moves at most once", was)
	last, moves := taker, 0
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		if now := owner(); now != last && now != "nobody" {
			moves++
			fmt.Printf("    %s now answers ARP\n", now)
			last = now
		}
	}
	fmt.Printf("    ownership moves after the link came back: %d\n", moves)
	return nil
}
