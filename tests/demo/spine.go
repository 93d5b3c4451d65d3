package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// runSpine is the spine-mode part of the demo, on real nodes: a spine
// router (FRR) in a network namespace, two nodes with their own containerd,
// kubelet and kube-proxy, calico-lb deployed as Juju deploys it (the
// controller in its pod, the speakers as the DaemonSet it writes), the
// test application behind a LoadBalancer Service, and a client.
func runSpine(ctx context.Context) error {
	if m := append(netns.Missing(), cluster.MissingForNodes()...); len(m) > 0 {
		step("Spine mode skipped: it needs %s (run `sudo make demo`; make deps installs them)", strings.Join(m, ", "))
		return nil
	}
	step("Spine mode: FRR spine (AS 64500), node1 and node2 as real Kubernetes nodes (containerd, kubelet, kube-proxy), a client")
	b, err := spinebed.Start(ctx, spinebed.Options{BFD: true, Log: func(s string) { fmt.Println("    " + s) }})
	if err != nil {
		return err
	}
	defer func() {
		b.Close()
		step("Spine test bed removed (nodes, namespaces, FRR, processes, cgroups)")
	}()
	kb := b.Kubebed
	cfg := map[string]any{"pools": "10.212.100.0/28", "peering-mode": "spine", "as-number": 64512.0,
		"subnet-spine-peers": "{10.212.1.0/24: [{address: 10.212.1.1, as-number: 64500, hold-time: 9, bfd: true, bfd-interval: 100, bfd-multiplier: 3}], " +
			"10.212.2.0/24: [{address: 10.212.2.1, as-number: 64500, hold-time: 9, bfd: true, bfd-interval: 100, bfd-multiplier: 3}]}"}
	step("juju deploy ./calico-lb_amd64.charm --resource workload-image=%s --trust (a StatefulSet shaped as Juju makes it; hooks run in its charm container)", kb.Image("calico-lb:test"))
	for k, v := range cfg {
		fmt.Printf("    --config %s=%v\n", k, v)
	}
	u, err := kb.Deploy(ctx, "lb", cfg)
	if err != nil {
		return err
	}
	st, err := u.State(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("    juju status: calico-lb/0 %s: %s\n", st.UnitStatus.Name, st.UnitStatus.Message)
	pods, err := kb.WaitSpeakers(ctx, "lb", 2, 3*time.Minute)
	if err != nil {
		return err
	}
	for _, p := range pods {
		fmt.Printf("    speaker pod %s on %s: Ready, image %s (the controller's own)\n", p.Name, p.Spec.NodeName, p.Spec.Containers[0].Image)
	}

	step("kubectl create deployment shop (2 pods) and expose it as a LoadBalancer Service")
	created := time.Now()
	if _, err := kb.Echo(ctx, kubebed.App{NS: "shop", Name: "shop", Replicas: 2}); err != nil {
		return err
	}
	vip, err := b.WaitIP("shop", "shop", 30*time.Second)
	if err != nil {
		return err
	}
	n1, n2 := spinebed.NodeIP(1), spinebed.NodeIP(2)
	if _, err := b.WaitNextHops(vip, 30*time.Second, n1, n2); err != nil {
		return fmt.Errorf("%w\n%s", err, kb.Describe(ctx, "lb"))
	}
	fmt.Printf("    shop got %s; both nodes announce it %s after the create (pods started on the way)\n", vip, time.Since(created).Round(time.Millisecond))
	out, _ := b.FRR.Vtysh("-c", "show ip route "+vip)
	fmt.Printf("    FRR (vtysh -c 'show ip route %s'):\n%s", vip, indent(out))

	step("A client behind the spine connects to http://%s/ (spine ECMP, then kube-proxy to a pod)", vip)
	ask := func(n int) string {
		var answers []string
		for range n {
			a, err := kubebed.Ask(b.Client, vip, 2*time.Second)
			if err != nil {
				answers = append(answers, "error")
				continue
			}
			answers = append(answers, a.Pod+"@"+a.Node)
		}
		return strings.Join(answers, " ")
	}
	// kube-proxy follows the ready endpoints within a second or so.
	answered := map[string]bool{}
	_, _ = netns.WaitFor(ctx, 20*time.Second, func() bool {
		if a, err := kubebed.Ask(b.Client, vip, 2*time.Second); err == nil {
			answered[a.Pod] = true
		}
		return len(answered) == 2
	})
	fmt.Printf("    8 requests answered by: %s\n", ask(8))

	step("Failover: node1's network to the spine goes silent (black-holed, its speaker still running); BFD 100 ms x 3")
	time.Sleep(2 * time.Second) // BFD up on both sessions
	start := time.Now()
	if err := b.Net.Blackhole(b.Nodes[0], "10.212.1.1"); err != nil {
		return err
	}
	took, err := b.WaitNextHops(vip, 10*time.Second, n2)
	if err != nil {
		return err
	}
	fmt.Printf("    the spine dropped node1 after %s (hold time is 9 s; BFD caught it)\n", took.Round(time.Millisecond))
	fmt.Printf("    4 requests after the failover (%s after the fault), all through node2: %s\n", time.Since(start).Round(time.Millisecond), ask(4))
	return nil
}
