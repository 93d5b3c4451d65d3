package controller

import (
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/workload/config"
)

// A write the controller made is not repeated while the cache may still
// be catching up with it, but one that has not shown for longer than the
// cache could lag counts as lost and goes again (the informer's resync
// brings the Service back every resyncEvery, so a lost write is repaired).
func TestLostWriteIsWrittenAgain(t *testing.T) {
	ip := netip.MustParseAddr("10.84.0.1")
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", ResourceVersion: "42"}}
	for _, tc := range []struct {
		age  time.Duration
		sent bool
	}{{time.Second, false}, {time.Minute, true}} {
		tm := &term{c: &Controller{}, active: &config.Config{}, writes: make(chan write, 1),
			written: map[string]wrote{"ns/web": {sentRV: "42", ingress: Ingress([]netip.Addr{ip}), at: time.Now().Add(-tc.age)}}}
		if got := tm.sync("ns/web", svc, []netip.Addr{ip}); got != tc.sent {
			t.Fatalf("written %s ago and not in the cache: wrote again = %v, want %v", tc.age, got, tc.sent)
		}
		if tc.sent {
			if w := <-tm.writes; len(w.svc.Status.LoadBalancer.Ingress) != 1 || w.svc.Status.LoadBalancer.Ingress[0].IP != ip.String() {
				t.Fatalf("wrote %+v", w.svc.Status)
			}
		}
	}
}
