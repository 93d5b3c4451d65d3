package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// runRacks is `make demo MODE=racks`: the topology calico-lb is for. Two
// racks of two real nodes, a ToR each, a spine, a client, and Calico's BGP
// (BIRD, standing in) on every node peering its ToR; calico-lb's speakers
// peer the spine instead, and the client reaches a Cluster and a Local
// Service through spine and ToR. It prints the routers' routes and the
// client's answers.
func runRacks(ctx context.Context) error {
	if m := append(netns.Missing(), cluster.MissingForNodes()...); len(m) > 0 {
		return fmt.Errorf("the racks demo needs %s (run `sudo make demo MODE=racks`; make deps installs them)", strings.Join(m, ", "))
	}
	step("Racks: two racks of two real Kubernetes nodes, an FRR ToR each (AS 65001, 65002), an FRR spine (AS 65000), a client behind it")
	b, err := spinebed.StartRacks(ctx, spinebed.Options{Log: func(s string) { fmt.Println("    " + s) }}, nil)
	if err != nil {
		return err
	}
	defer func() {
		b.Close()
		step("Racks test bed removed (nodes, routers, namespaces, processes, cgroups)")
	}()
	step("Calico's BGP on every node (BIRD 2 standing in for calico-node) peers its rack's ToR: juju config calico node-to-node-mesh=false subnet-bgp-peers=%q subnet-as-numbers=%q", spinebed.RackSubnetPeers, spinebed.RackSubnetAS)
	if _, err := netns.WaitFor(ctx, time.Minute, func() bool {
		out, _ := b.BIRD(1, "show", "protocols")
		return strings.Contains(out, "Established")
	}); err != nil {
		return fmt.Errorf("node1's BIRD did not reach its ToR")
	}
	out, _ := b.BIRD(1, "show", "protocols")
	fmt.Print(indent(out))

	cfg := map[string]any{"pools": "10.215.100.0/28", "peering-mode": "spine", "as-number": 64512.0,
		"subnet-spine-peers": "{10.215.1.0/24: [{address: 10.215.101.1, as-number: 65000, multihop: 2}], 10.215.2.0/24: [{address: 10.215.102.1, as-number: 65000, multihop: 2}]}"}
	step("juju deploy ./calico-lb_amd64.charm --trust --config peering-mode=spine --config as-number=64512 --config pools=10.215.100.0/28 --config subnet-spine-peers=%q\n    (the speakers peer the spine through their ToR: the ToR's session is Calico's)", cfg["subnet-spine-peers"])
	kb := b.Kubebed
	u, err := kb.Deploy(ctx, "lb", cfg)
	if err != nil {
		return err
	}
	st, err := u.State(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("    juju status: calico-lb/0 %s: %s\n", st.UnitStatus.Name, st.UnitStatus.Message)
	if _, err := kb.WaitSpeakers(ctx, "lb", 4, 3*time.Minute); err != nil {
		return err
	}
	vip, lvip, err := shopApps(ctx, b, "node3")
	if err != nil {
		return err
	}
	if _, err := netns.WaitFor(ctx, time.Minute, func() bool { _, err := kubebed.Ask(b.Client, lvip, time.Second); return err == nil }); err != nil {
		return fmt.Errorf("the client gets no answer from %s", lvip)
	}
	step("The spine's BGP table: each /32 from the nodes that announce it (web: all four; local: node3 only)")
	out, _ = b.FRR.Vtysh("-c", "show ip bgp")
	fmt.Print(indent(out))
	step("Each ToR forwards a VIP to its own nodes (the spine passes them on with the node as next hop)")
	for r, tor := range b.Racks.ToRs {
		out, _ := b.Net.Exec(tor.NS, "ip", "route", "show", vip)
		fmt.Printf("    tor%d: %s\n", r+1, strings.TrimSpace(strings.ReplaceAll(out, "\n", " ")))
	}
	step("The client behind the spine asks each VIP")
	for _, v := range []string{vip, vip, vip, vip, lvip} {
		a, err := kubebed.Ask(b.Client, v, time.Second)
		if err != nil {
			fmt.Printf("    %s: %v\n", v, err)
			continue
		}
		fmt.Printf("    %s: answered by %s on %s, which saw the client as %s\n", v, a.Pod, a.Node, a.Client)
	}
	if err := dedicatedRacks(ctx, b, u, vip, lvip); err != nil {
		return err
	}
	if err := collision(ctx, b, u); err != nil {
		return err
	}
	step("The router configs are in docs/topologies.md; the same scenarios, and calico mode, run as tests (tests/e2e/racks_test.go)")
	return nil
}

// dedicatedRacks runs the speakers in rack 1 only: web stays reachable
// through rack 1's nodes; local, whose pod is in rack 2, is announced by
// no one, and verify says why.
func dedicatedRacks(ctx context.Context, b *spinebed.Bed, u *kubebed.Unit, vip, lvip string) error {
	step("Dedicated racks: speakers in rack 1 only (juju config calico-lb speaker-node-selector=\"tor in (1)\", nodes labelled by rack)")
	for i := 1; i <= 4; i++ {
		n, err := b.Kube.CoreV1().Nodes().Get(ctx, fmt.Sprint("node", i), metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Labels["tor"] = fmt.Sprint((i + 1) / 2)
		if _, err := b.Kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if out, err := u.Configure(ctx, map[string]any{"speaker-node-selector": "tor in (1)"}); err != nil {
		return fmt.Errorf("config-changed: %w\n%s", err, out)
	}
	if _, err := b.Kubebed.WaitSpeakers(ctx, "lb", 2, 3*time.Minute); err != nil {
		return err
	}
	// The DaemonSet rolls to the new selector: wait until rack 1's two
	// speakers announce web again and rack 2's are gone.
	if _, err := netns.WaitFor(ctx, 2*time.Minute, func() bool {
		out, _ := b.FRR.Vtysh("-c", "show ip bgp "+vip+"/32")
		return len(b.FRR.Routes(lvip)) == 0 && strings.Contains(out, "10.215.1.11 from") && strings.Contains(out, "10.215.1.12 from") &&
			!strings.Contains(out, "10.215.2.")
	}); err != nil {
		return fmt.Errorf("the spine's paths for %s did not settle on rack 1", vip)
	}
	out, _ := b.FRR.Vtysh("-c", "show ip bgp "+vip+"/32")
	fmt.Print(indent(out))
	for range 2 {
		if a, err := kubebed.Ask(b.Client, vip, time.Second); err == nil {
			fmt.Printf("    %s: in through rack 1 (kube-proxy forwards), answered by %s on %s\n", vip, a.Pod, a.Node)
		}
	}
	if _, err := kubebed.Ask(b.Client, lvip, time.Second); err != nil {
		fmt.Printf("    %s (local, its pod in rack 2): no answer, as expected\n", lvip)
	}
	st, _, err := u.Action(ctx, "verify", nil)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(st.Results["table"], "\n") {
		if strings.Contains(line, "shop/local") && strings.Contains(line, "advertised") {
			fmt.Println("    verify: " + strings.Join(strings.Fields(line), " "))
		}
	}
	return nil
}

// collision points the speakers at their own ToR, whose session from
// the node is Calico's, and shows what the ToR does about it.
func collision(ctx context.Context, b *spinebed.Bed, u *kubebed.Unit) error {
	tors := "{10.215.1.0/24: [{address: 10.215.1.1, as-number: 65001}], 10.215.2.0/24: [{address: 10.215.2.1, as-number: 65002}]}"
	step("The collision: the speakers (rack 1) told to peer their own ToR, where Calico already has the session from the same address: juju config calico-lb subnet-spine-peers=%q", tors)
	if out, err := u.Configure(ctx, map[string]any{"subnet-spine-peers": tors}); err != nil {
		return fmt.Errorf("config-changed: %w\n%s", err, out)
	}
	time.Sleep(15 * time.Second)
	shown := 0
	for _, l := range strings.Split(b.Racks.ToRs[0].Log(), "\n") {
		if strings.Contains(l, "Collision") && shown < 4 {
			fmt.Println("    tor1: " + strings.TrimSpace(l))
			shown++
		}
	}
	out, _ := b.BIRD(1, "show", "protocols")
	fmt.Print(indent(out))
	fmt.Println("    Calico's sessions stay; the speakers' never hold. With the Calico link configured, the charm refuses this config instead (blocked, naming the peer and calico's subnet-bgp-peers).")
	return nil
}

// shopApps deploys web (Cluster, 2 pods) and local (Local, its pod on
// localNode) in namespace shop, and returns their IPs.
func shopApps(ctx context.Context, b *spinebed.Bed, localNode string) (vip, lvip string, err error) {
	step("Two Services: web (Cluster, 2 pods) and local (Local, its pod on %s)", localNode)
	for _, app := range []kubebed.App{{NS: "shop", Name: "web", Replicas: 2},
		{NS: "shop", Name: "local", Replicas: 1, Policy: corev1.ServiceExternalTrafficPolicyLocal, Nodes: []string{localNode}}} {
		if _, err := b.Kubebed.Echo(ctx, app); err != nil {
			return "", "", err
		}
	}
	if vip, err = b.WaitIP("shop", "web", 30*time.Second); err != nil {
		return "", "", err
	}
	if lvip, err = b.WaitIP("shop", "local", 30*time.Second); err != nil {
		return "", "", err
	}
	fmt.Printf("    web got %s, local got %s\n", vip, lvip)
	return vip, lvip, nil
}
