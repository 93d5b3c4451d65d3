package e2e

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// TestSourceRangesSurviveExternalMode: with calico-service-ip-option=external
// calico-lb mirrors each VIP into spec.externalIPs, and real kube-proxy
// (iptables mode) accepts traffic to an external IP before it applies
// loadBalancerSourceRanges. On real nodes, a client outside a Service's
// ranges:
//   - is refused by the Service calico-lb leaves unmirrored (a NotMirrored
//     Warning says why), while a Service without ranges is mirrored and
//     answers;
//   - gets through the moment the VIP sits in spec.externalIPs, as the
//     mirror of before the fix put it there: the hole this closes.
func TestSourceRangesSurviveExternalMode(t *testing.T) {
	b := newBed(t, spinebed.Start, spinebed.Options{})
	ctx := context.Background()
	cfg := maps.Clone(spineConfig)
	cfg["calico-service-ip-option"] = "external"
	deployUnit(t, b, cfg)
	waitSpeakers(t, b, 2)
	kb := b.Kubebed
	open, closed := kubebed.App{NS: "web", Name: "open", Replicas: 2}, kubebed.App{NS: "web", Name: "closed", Replicas: 2}
	for _, a := range []kubebed.App{open, closed} {
		if _, err := kb.Echo(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	// closed admits only a range the client (10.212.3.2) is not in.
	svcs := b.Kube.CoreV1().Services("web")
	update := func(name string, f func(*corev1.Service)) {
		t.Helper()
		s, err := svcs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f(s)
		if _, err := svcs.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update("closed", func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24"} })
	ovip, err := b.WaitIP("web", "open", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cvip, err := b.WaitIP("web", "closed", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	externalIPs := func(name string) []string {
		s, err := svcs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Spec.ExternalIPs
	}
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { return slices.Equal(externalIPs("open"), []string{ovip}) }); err != nil {
		t.Fatalf("open's VIP %s was not mirrored into spec.externalIPs: %v", ovip, externalIPs("open"))
	}
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { _, err := echo(b.Client, ovip); return err == nil }); err != nil {
		t.Fatalf("the client gets no answer from open (%s)", ovip)
	}
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { return warned(ctx, b, "closed", "NotMirrored") }); err != nil {
		t.Fatal("no NotMirrored Warning on closed")
	}
	if ips := externalIPs("closed"); len(ips) != 0 {
		t.Fatalf("closed, restricted by loadBalancerSourceRanges, was mirrored: %v", ips)
	}
	// kube-proxy filters closed's VIP by its ranges once it has synced
	// them: the client is refused, and stays refused (it asks several
	// times each round, so one lost packet proves nothing).
	refused := func() bool {
		for range 5 {
			if _, err := kubebed.Ask(b.Client, cvip, 300*time.Millisecond); err == nil {
				return false
			}
		}
		return true
	}
	_, err = netns.WaitFor(ctx, 30*time.Second, refused)
	for end := time.Now().Add(5 * time.Second); err == nil && time.Now().Before(end); {
		if !refused() {
			err = errors.New("answered again")
		}
	}
	if err != nil {
		var rules strings.Builder
		for _, ns := range b.Nodes {
			for _, table := range []string{"nat", "filter"} {
				out, _ := b.Net.Exec(ns, "iptables-save", "-t", table)
				for _, l := range strings.Split(out, "\n") {
					if strings.Contains(l, cvip) || strings.Contains(l, "KUBE-FW") || strings.Contains(l, "192.0.2.0") {
						rules.WriteString(ns + " " + table + ": " + l + "\n")
					}
				}
			}
		}
		s, _ := svcs.Get(ctx, "closed", metav1.GetOptions{})
		t.Fatalf("the client outside closed's ranges got answers from %s (%v); closed: externalIPs %v, loadBalancerSourceRanges %v; kube-proxy's rules for it:\n%s",
			cvip, err, s.Spec.ExternalIPs, s.Spec.LoadBalancerSourceRanges, rules.String())
	}
	// The attack as it was: the VIP in spec.externalIPs (what the mirror
	// wrote before) lets the client in past the ranges.
	update("closed", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{cvip} })
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { _, err := echo(b.Client, cvip); return err == nil }); err != nil {
		t.Fatalf("with %s in spec.externalIPs kube-proxy still refused the client: the hole this test guards is not reproduced", cvip)
	}
	t.Logf("with its VIP in spec.externalIPs, closed (loadBalancerSourceRanges 192.0.2.0/24) answered the client 10.212.3.2: the hole the unmirrored Service closes")
	update("closed", func(s *corev1.Service) { s.Spec.ExternalIPs = nil })
	if _, err := netns.WaitFor(ctx, 30*time.Second, refused); err != nil {
		t.Fatalf("closed still answers the client after its external IP went")
	}
}

// warned reports whether Service web/name has a Warning Event of reason.
func warned(ctx context.Context, b *spinebed.Bed, name, reason string) bool {
	evs, err := b.Kube.CoreV1().Events("web").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return false
	}
	for _, e := range evs.Items {
		if e.Type == corev1.EventTypeWarning && e.Reason == reason && strings.Contains(e.Message, "loadBalancerSourceRanges") {
			return true
		}
	}
	return false
}
