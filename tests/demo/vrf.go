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
	"github.com/calico-lb/calico-lb/tests/vmrouter"
)

// runVRF is `make demo MODE=vrf`: one router split in two VRFs, Calico's
// BGP (BIRD, standing in) on the default half, calico-lb's speakers on
// the lb half, and only the pool's /32s leaked across. It prints both
// halves' sessions and routes and the client's answers.
func runVRF(ctx context.Context) error {
	if m := append(append(netns.Missing(), cluster.MissingForNodes()...), vmrouter.Missing()...); len(m) > 0 {
		return fmt.Errorf("the VRF demo needs %s (run `sudo make demo MODE=vrf`; make deps installs them)", strings.Join(m, ", "))
	}
	step("VRF: a rack of two real Kubernetes nodes and a client on one router (FRR, AS 65001) split in two VRFs, default and lb\n    (the router runs in a small VM with Debian's kernel: this machine's kernel has no VRF devices)")
	b, err := spinebed.StartVRF(ctx, spinebed.Options{Log: func(s string) { fmt.Println("    " + s) }}, nil)
	if err != nil {
		return err
	}
	defer func() {
		b.Close()
		step("VRF test bed removed (router VM, nodes, namespaces, processes, cgroups)")
	}()
	step("Calico's BGP on every node (BIRD 2 standing in) peers the router's default VRF: juju config calico node-to-node-mesh=false subnet-bgp-peers=%q subnet-as-numbers=%q", spinebed.VRFSubnetPeers, spinebed.VRFSubnetAS)
	if _, err := netns.WaitFor(ctx, time.Minute, func() bool {
		out, _ := b.BIRD(1, "show", "protocols")
		return strings.Contains(out, "Established")
	}); err != nil {
		return fmt.Errorf("node1's BIRD did not reach the router")
	}
	const model, password = "0b6f2a9e-4c1d-4e8a-9f3b-7d5c2e1a6b04", "vrf-demo"
	fc, err := b.CalicoController(model, password)
	if err != nil {
		return err
	}
	defer fc.Close()
	peers := "{10.217.1.0/24: [{address: " + spinebed.VRFPeer + ", as-number: 65001}]}"
	step("juju deploy ./calico-lb_amd64.charm --trust --config peering-mode=spine --config as-number=64512 --config pools=10.217.100.0/28 --config subnet-spine-peers=%q (+ the Calico link)\n    (the speakers peer the lb VRF's address on the second subnet of the nodes' link)", peers)
	kb := b.Kubebed
	u, err := kb.DeployWith(ctx, "lb", map[string]any{"pools": "10.217.100.0/28", "peering-mode": "spine", "as-number": 64512.0, "subnet-spine-peers": peers,
		"juju-credentials": "secret:creds", "calico-model": model}, spinebed.LinkState(fc, password))
	if err != nil {
		return err
	}
	st, err := u.State(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("    juju status: calico-lb/0 %s: %s (the Calico link accepts it: %s is not one of Calico's peers)\n", st.UnitStatus.Name, st.UnitStatus.Message, spinebed.VRFPeer)
	if _, err := kb.WaitSpeakers(ctx, "lb", 2, 3*time.Minute); err != nil {
		return err
	}
	vip, lvip, err := shopApps(ctx, b, "node2")
	if err != nil {
		return err
	}
	if _, err := netns.WaitFor(ctx, time.Minute, func() bool { _, err := kubebed.Ask(b.Client, lvip, time.Second); return err == nil }); err != nil {
		return fmt.Errorf("the client gets no answer from %s", lvip)
	}
	step("The router's two halves: Calico's sessions in default, the speakers' in lb")
	out, _ := b.VRF.Vtysh("show bgp vrf all summary")
	fmt.Print(indent(out))
	step("The pool's /32s, learnt in lb (next hop: each speaker's lb address) and leaked into default")
	out, _ = b.VRF.Vtysh("show ip route vrf all")
	fmt.Print(indent(out))
	step("What lb holds outside the pool (%s, which it originates) is not leaked: the default VRF's BGP table", spinebed.VRFKept)
	out, _ = b.VRF.Vtysh("show bgp ipv4 unicast " + spinebed.VRFKept)
	fmt.Print(indent(out))
	step("The client, in the default VRF, asks each VIP")
	for _, v := range []string{vip, vip, vip, lvip} {
		a, err := kubebed.Ask(b.Client, v, time.Second)
		if err != nil {
			fmt.Printf("    %s: %v\n", v, err)
			continue
		}
		fmt.Printf("    %s: answered by %s on %s, which saw the client as %s\n", v, a.Pod, a.Node, a.Client)
	}
	step("The router config is in docs/topologies.md (VRF workaround); this runs as a test too (tests/e2e/vrf_test.go)")
	return nil
}
