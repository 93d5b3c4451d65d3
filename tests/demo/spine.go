package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// runSpine is the spine-mode part of the demo: a spine router (FRR) in a
// network namespace, two nodes running the real speaker, and a client.
func runSpine(ctx context.Context, binary string) error {
	if m := netns.Missing(); len(m) > 0 {
		step("Spine mode skipped: it needs %s (run `sudo make demo`; make deps installs FRR)", strings.Join(m, ", "))
		return nil
	}
	step("Spine mode: FRR spine (AS 64500), node1 and node2 running `calico-lb speaker` (AS 64512), a client")
	dir, err := os.MkdirTemp("", "calico-lb-demo-spine-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := spinebed.Start(ctx, spinebed.Options{BFD: true, Binary: binary, Dir: dir, Log: func(s string) { fmt.Println("    " + s) }})
	if err != nil {
		return err
	}
	defer func() {
		b.Close()
		step("Spine test bed removed (namespaces, FRR, processes)")
	}()
	cfg := b.Config("  public: {addresses: [10.212.100.0/28]}\n", ", bfd: true, bfd-interval: 100, bfd-multiplier: 3")
	fmt.Printf("    config:\n%s", indent(cfg))
	if err := b.StartWorkload(cfg); err != nil {
		return err
	}
	if _, err := b.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 8080}}}}
	created := time.Now()
	if _, err := b.Kube.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	vip, err := b.WaitIP("shop", "shop", 30*time.Second)
	if err != nil {
		return err
	}
	n1, n2 := spinebed.NodeIP(1), spinebed.NodeIP(2)
	if _, err := b.WaitNextHops(vip, 30*time.Second, n1, n2); err != nil {
		return fmt.Errorf("%w\n%s", err, b.Logs())
	}
	fmt.Printf("    shop got %s; both nodes announce it %s after the create (BGP sessions set up on the way)\n", vip, time.Since(created).Round(time.Millisecond))
	out, _ := b.FRR.Vtysh("-c", "show ip route "+vip)
	fmt.Printf("    FRR (vtysh -c 'show ip route %s'):\n%s", vip, indent(out))

	step("A client behind the spine connects to %s:8080 (a listener on each node stands in for kube-proxy)", vip)
	stop, err := b.ServeVIP(vip, 8080)
	if err != nil {
		return err
	}
	defer stop()
	var answers []string
	for range 8 {
		who, err := netns.Ask(b.Client, vip+":8080")
		if err != nil {
			who = "error: " + err.Error()
		}
		answers = append(answers, who)
	}
	fmt.Printf("    8 connections answered by: %s (ECMP over both nodes)\n", strings.Join(answers, " "))

	step("Failover: node1's network goes silent (black-holed, its speaker still running); BFD 100 ms x 3")
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
	var after []string
	for range 4 {
		who, err := netns.Ask(b.Client, vip+":8080")
		if err != nil {
			who = "error"
		}
		after = append(after, who)
	}
	fmt.Printf("    4 connections after the failover answered by: %s (%s after the fault)\n", strings.Join(after, " "), time.Since(start).Round(time.Millisecond))
	return nil
}
