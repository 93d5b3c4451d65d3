package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// runL2 is `make demo MODE=l2`: one L2 segment with a client and three
// nodes running the real speaker; the owner of a VIP answers ARP and NDP,
// and another node takes over when it dies.
func runL2(ctx context.Context, binary string) error {
	if m := netns.Missing(); len(m) > 0 {
		return fmt.Errorf("L2 mode needs %s (run `sudo make demo MODE=l2`; make deps installs them)", strings.Join(m, ", "))
	}
	step("L2 mode: one segment (a bridge), a client and node1..node3 running `calico-lb speaker`")
	dir, err := os.MkdirTemp("", "calico-lb-demo-l2-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b, err := spinebed.StartL2(ctx, spinebed.Options{Binary: binary, Dir: dir, Log: func(s string) { fmt.Println("    " + s) }})
	if err != nil {
		return err
	}
	defer func() {
		b.Close()
		step("L2 test bed removed (namespaces, processes)")
	}()
	cfg := "mode: l2\npools:\n  office: {addresses: [10.214.0.100-10.214.0.120, 'fd14::100-fd14::120']}\n"
	fmt.Printf("    config:\n%s", indent(cfg))
	if err := b.StartWorkload(cfg); err != nil {
		return err
	}
	if _, err := b.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	dual := corev1.IPFamilyPolicyRequireDualStack
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "shop"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 8080}},
			IPFamilyPolicy: &dual, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}}}
	if _, err := b.Kube.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	vip, err := b.WaitIP("shop", "shop", 30*time.Second)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, b.Logs())
	}
	got, err := b.Kube.CoreV1().Services("shop").Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		return err
	}
	var vips []string
	for _, in := range got.Status.LoadBalancer.Ingress {
		vips = append(vips, in.IP)
	}
	fmt.Printf("    shop got %s\n", strings.Join(vips, ", "))
	// Every node serves the VIPs (kube-proxy's part); only the owner is
	// reachable because only it answers ARP/NDP.
	for _, v := range vips {
		stop, err := b.ServeVIP(v, 8080)
		if err != nil {
			return err
		}
		defer stop()
	}
	time.Sleep(time.Second)
	out, _ := b.Net.Exec(b.Client, "arping", "-c", "2", "-I", "eth0", vip)
	fmt.Printf("    client: arping %s\n%s", vip, indent(out))
	for i, ns := range b.Nodes {
		fmt.Printf("    node%d's MAC is %s\n", i+1, strings.ToUpper(b.MAC(ns)))
	}
	owner := ""
	for _, v := range vips {
		who, err := netns.Ask(b.Client, netip.AddrPortFrom(netip.MustParseAddr(v), 8080).String())
		if err != nil {
			who = "error: " + err.Error()
		}
		fmt.Printf("    client connects to %s -> answered by %s\n", netip.AddrPortFrom(netip.MustParseAddr(v), 8080), who)
		if !strings.Contains(v, ":") {
			owner = who
		}
	}
	var n int
	if _, err := fmt.Sscanf(owner, "node%d", &n); err != nil {
		return fmt.Errorf("no owner answered for %s: %q\n%s", vip, owner, b.Logs())
	}

	step("Failover: SIGKILL of %s's speaker; the client probes %s:8080 every 10 ms", owner, vip)
	target := vip + ":8080"
	start := time.Now()
	b.Signal(n, syscall.SIGKILL)
	if who, took, err := b.WaitOtherAnswer(target, owner, start, 10*time.Second); err == nil {
		fmt.Printf("    %s answers after %s (liveness timeout 350 ms, then gratuitous ARP)\n", who, took.Round(time.Millisecond))
	} else {
		fmt.Printf("    %v\n", err)
	}
	step("%s's speaker restarts: it waits out the 3 s hold-down before taking its IPs back, so ownership moves once, not back and forth", owner)
	restarted := time.Now()
	if err := b.StartSpeaker(n); err != nil {
		return err
	}
	last, moves := "", 0
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		who, err := netns.AskWithin(b.Client, target, 200*time.Millisecond)
		if err != nil || who == last {
			continue
		}
		if last != "" {
			moves++
			fmt.Printf("    %s now answers (%s after the restart)\n", who, time.Since(restarted).Round(100*time.Millisecond))
		}
		last = who
	}
	fmt.Printf("    ownership moves after the restart: %d\n", moves)
	return nil
}
