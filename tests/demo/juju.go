package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/jujubed"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// runJuju is `make demo MODE=juju`: a real Juju controller bootstrapped
// onto the spine bed's real nodes, and calico-lb deployed through it with
// the juju commands of README's Deploy section, as an operator runs them;
// then a Service, the client's answers through the spine, and juju status.
func runJuju(ctx context.Context) error {
	if m := append(netns.Missing(), cluster.MissingForNodes()...); len(m) > 0 {
		return fmt.Errorf("MODE=juju needs %s (run `sudo make demo MODE=juju`; make deps installs them)", strings.Join(m, ", "))
	}
	step("The spine bed: FRR spine (AS 64500), node1 and node2 as real Kubernetes nodes, a client")
	logf := func(s string) { fmt.Println("    " + s) }
	b, err := spinebed.Start(ctx, spinebed.Options{Log: logf})
	if err != nil {
		return err
	}
	defer func() {
		b.Close()
		step("Bed removed (the controller with its cluster: nodes, namespaces, FRR, processes, cgroups)")
	}()
	dir, err := os.MkdirTemp("", "calico-lb-demo-juju-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step("juju bootstrap: a real Juju %s controller on the cluster (built from source into .cache/juju; the controller charm is a stand-in)", jujubed.JujuAgentVersion)
	ctrl, err := jujubed.Bootstrap(ctx, b.Kubebed, b.Kubeconfig, jujubed.Options{Dir: dir, Address: b.MgmtIPs[0], Log: logf})
	if err != nil {
		return err
	}
	const version = "demo"
	imgs, err := kubebed.Images()
	if err != nil {
		return err
	}
	if err := b.Kubebed.Registry.Push(ctx, "calico-lb:"+version, imgs["calico-lb:test"]); err != nil {
		return err
	}
	n1, n2 := spinebed.NodeIP(1), spinebed.NodeIP(2)
	vars := []string{"CONTROLLER=" + ctrl.Name, "REGISTRY=" + b.Kubebed.Registry.Host, "VERSION=" + version, "POOLS=10.212.100.0/28",
		"SPINE_PEERS={10.212.1.0/24: [{address: 10.212.1.1, as-number: 64500, hold-time: 9}], 10.212.2.0/24: [{address: 10.212.2.1, as-number: 64500, hold-time: 9}]}"}
	step("README's Deploy section, as written (%s)", strings.Join(vars, " "))
	ready := func() error {
		if _, err := ctrl.WaitUnit(ctx, "lb", "calico-lb", 5*time.Minute, jujubed.Active("spine mode")); err != nil {
			return err
		}
		return b.WaitEstablished(2*time.Minute, n1, n2)
	}
	if _, err := ctrl.DeployFromReadme(ctx, cluster.Root(), vars, ready, func(s string) {
		for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
			fmt.Println("    " + l)
		}
	}); err != nil {
		return err
	}

	step("kubectl create deployment shop (2 pods) and expose it as a LoadBalancer Service")
	if _, err := b.Kubebed.Echo(ctx, kubebed.App{NS: "shop", Name: "shop", Replicas: 2}); err != nil {
		return err
	}
	vip, err := b.WaitIP("shop", "shop", time.Minute)
	if err != nil {
		return err
	}
	if err := b.Kubebed.WaitReady(ctx, "shop", "shop", 2, 2*time.Minute); err != nil {
		return err
	}
	if _, err := b.WaitNextHops(vip, time.Minute, n1, n2); err != nil {
		return err
	}
	fmt.Printf("    shop got %s; the spine routes it to %v\n", vip, b.NextHops(vip))
	step("The client behind the spine asks %s", vip)
	// kube-proxy has the endpoints a moment after the pods are ready.
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool {
		_, err := kubebed.Ask(b.Client, vip, time.Second)
		return err == nil
	}); err != nil {
		return fmt.Errorf("the client got no answer from %s: %w", vip, err)
	}
	for range 6 {
		a, err := kubebed.Ask(b.Client, vip, time.Second)
		if err != nil {
			fmt.Printf("    %v\n", err)
			continue
		}
		fmt.Printf("    answered by pod %s (node %s), which saw the client as %s\n", a.Pod, a.Node, a.Client)
	}
	step("juju status -m lb")
	out, err := ctrl.Juju(ctx, "status", "-m", "lb")
	if err != nil {
		return err
	}
	fmt.Print(out)
	return nil
}
