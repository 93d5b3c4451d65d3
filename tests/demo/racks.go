package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

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
	step("juju deploy ./calico-lb.charm --trust --config peering-mode=spine --config as-number=64512 --config pools=10.215.100.0/28 --config subnet-spine-peers=%q\n    (the speakers peer the spine through their ToR: the ToR's session is Calico's)", cfg["subnet-spine-peers"])
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
	step("Two Services: web (Cluster, 2 pods) and local (Local, its pod on node3)")
	if _, err := kb.Echo(ctx, kubebed.App{NS: "shop", Name: "web", Replicas: 2}); err != nil {
		return err
	}
	if _, err := kb.Echo(ctx, kubebed.App{NS: "shop", Name: "local", Replicas: 1, Policy: corev1.ServiceExternalTrafficPolicyLocal, Nodes: []string{"node3"}}); err != nil {
		return err
	}
	vip, err := b.WaitIP("shop", "web", 30*time.Second)
	if err != nil {
		return err
	}
	lvip, err := b.WaitIP("shop", "local", 30*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("    web got %s, local got %s\n", vip, lvip)
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
	step("The router configs are in docs/topologies.md; the same topology's collision, dedicated racks and calico mode run as tests (tests/e2e/racks_test.go)")
	return nil
}
