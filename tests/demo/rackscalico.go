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
	"github.com/calico-lb/calico-lb/workload/calico"
)

// runRacksCalico is `make demo MODE=racks-calico`: the racks in calico
// mode. No speakers: the Calico link puts the pool into calico's
// service-IP option (in a fake Juju controller the charm reaches from its
// pod), and Calico's BGP (BIRD, standing in, rendered from that option)
// advertises it from every node, and a Local Service's /32 only from the
// node with its pod. It prints the spine's routes as they change and the
// client's answers.
func runRacksCalico(ctx context.Context) error {
	if m := append(netns.Missing(), cluster.MissingForNodes()...); len(m) > 0 {
		return fmt.Errorf("the racks-calico demo needs %s (run `sudo make demo MODE=racks-calico`; make deps installs them)", strings.Join(m, ", "))
	}
	step("Racks: two racks of two real Kubernetes nodes, an FRR ToR each, an FRR spine, a client behind it; Calico's BGP (BIRD 2 standing in) on every node")
	b, err := spinebed.StartRacks(ctx, spinebed.Options{Log: func(s string) { fmt.Println("    " + s) }}, map[string]any{calico.OptLoadBalancerIPs: "", calico.OptExternalIPs: ""})
	if err != nil {
		return err
	}
	defer func() {
		b.Close()
		step("Racks test bed removed (nodes, routers, namespaces, processes, cgroups)")
	}()
	const model, password = "5b2d0c9e-7d2b-4c55-9a1e-2b7c4d6e8f02", "racks-demo"
	fc, err := b.CalicoController(model, password)
	if err != nil {
		return err
	}
	defer fc.Close()
	b.FollowController(fc, model)
	fmt.Printf("    calico's %s before: %q\n", calico.OptLoadBalancerIPs, spinebed.CalicoOption(fc, model, calico.OptLoadBalancerIPs))
	step("juju deploy ./calico-lb_amd64.charm --trust --config peering-mode=calico --config pools=10.215.100.0/28 --config calico-model=… --config juju-credentials=…")
	kb := b.Kubebed
	u, err := kb.DeployWith(ctx, "lb", map[string]any{"pools": "10.215.100.0/28", "peering-mode": "calico", "juju-credentials": "secret:creds", "calico-model": model},
		spinebed.LinkState(fc, password))
	if err != nil {
		return err
	}
	st, err := u.State(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("    juju status: calico-lb/0 %s: %s\n", st.UnitStatus.Name, st.UnitStatus.Message)
	fmt.Printf("    calico's %s now: %q (set by the Calico link; Calico advertises it)\n", calico.OptLoadBalancerIPs, spinebed.CalicoOption(fc, model, calico.OptLoadBalancerIPs))
	vip, lvip, err := shopApps(ctx, b, "node3")
	if err != nil {
		return err
	}
	spineRoute := func(prefix string) string {
		out, _ := b.FRR.Vtysh("-c", "show ip route "+prefix)
		return out
	}
	answers := func(node string) bool {
		a, err := kubebed.Ask(b.Client, lvip, time.Second)
		return err == nil && a.Node == node
	}
	if _, err := netns.WaitFor(ctx, time.Minute, func() bool {
		pool, _ := b.FRR.Vtysh("-c", "show ip bgp 10.215.100.0/28")
		return strings.Contains(pool, "10.215.101.2") && strings.Contains(pool, "10.215.102.2") &&
			strings.Contains(spineRoute(lvip+"/32"), "10.215.102.2") && answers("node3")
	}); err != nil {
		return fmt.Errorf("the spine did not learn the pool from both racks and %s from rack 2", lvip)
	}
	step("The spine: the pool from both racks' ToRs (its BGP table), and local's /32 from rack 2's only (node3 has its pod)")
	out, _ := b.FRR.Vtysh("-c", "show ip bgp 10.215.100.0/28")
	fmt.Print(indent(out))
	fmt.Print(indent(spineRoute(lvip + "/32")))
	ask := func() {
		for _, v := range []string{vip, vip, lvip} {
			a, err := kubebed.Ask(b.Client, v, time.Second)
			if err != nil {
				fmt.Printf("    %s: %v\n", v, err)
				continue
			}
			fmt.Printf("    %s: answered by %s on %s, which saw the client as %s\n", v, a.Pod, a.Node, a.Client)
		}
	}
	step("The client behind the spine asks each VIP (local's pod sees the client's own address)")
	ask()
	step("local's pod moves to node1 (rack 1): its /32 follows")
	if err := kb.MoveApp(ctx, "shop", "local", "node1"); err != nil {
		return err
	}
	if _, err := netns.WaitFor(ctx, time.Minute, func() bool {
		return strings.Contains(spineRoute(lvip+"/32"), "10.215.101.2") && answers("node1")
	}); err != nil {
		return fmt.Errorf("local's /32 did not move to rack 1")
	}
	fmt.Print(indent(spineRoute(lvip + "/32")))
	ask()
	res, _, err := u.Action(ctx, "verify", nil)
	if err != nil {
		return err
	}
	fmt.Printf("    juju run calico-lb/leader verify: %s failed\n", res.Results["failed"])
	step("The Calico link's check: calico's %s emptied (juju config calico %s=\"\"), verify names the fix", calico.OptLoadBalancerIPs, calico.OptLoadBalancerIPs)
	spinebed.SetCalicoOption(fc, model, calico.OptLoadBalancerIPs, "")
	res, _, err = u.Action(ctx, "verify", nil)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(res.Results["table"], "\n") {
		if strings.Contains(line, "calico") && strings.HasPrefix(strings.TrimSpace(line), "fail") {
			fmt.Println("    verify: " + strings.Join(strings.Fields(line), " "))
		}
	}
	step("The same scenario runs as a test (tests/e2e/racks_test.go, TestRacksCalicoMode)")
	return nil
}
