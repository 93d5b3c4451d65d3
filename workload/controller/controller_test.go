package controller

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/workload/api"
)

const twoPools = `pools:
  general: {addresses: [10.50.0.0/30], avoid-buggy-ips: false}
  reserved: {addresses: [10.60.0.10-10.60.0.20], auto-assign: false}
`

func TestAllocateReleaseAndRequests(t *testing.T) {
	e := newEnv(t)
	e.config(twoPools)
	r := e.start("a")

	// A plain Service gets the next address, with ipMode VIP.
	e.service("plain")
	s := e.waitIPs("plain", "10.50.0.0")
	if m := s.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeVIP {
		t.Fatalf("ipMode = %v", m)
	}
	e.waitEvent("plain", "IPAllocated", "Assigned 10.50.0.0 from pool general")

	// Requested by annotation, by MetalLB's annotation (with a Warning), and by pool.
	e.service("requested", func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationIPs: "10.60.0.15"} })
	e.waitIPs("requested", "10.60.0.15")
	e.service("migrated", func(s *corev1.Service) {
		s.Annotations = map[string]string{"metallb.universe.tf/loadBalancerIPs": "10.60.0.16"}
	})
	e.waitIPs("migrated", "10.60.0.16")
	e.waitEvent("migrated", "DeprecatedAnnotation", "prefer calico-lb.io/loadBalancerIPs")
	e.service("by-pool", func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationPool: "reserved"} })
	e.waitIPs("by-pool", "10.60.0.10")

	// A request that cannot be met stays pending, with the reason.
	e.service("outside", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.7" })
	e.waitEvent("outside", "AllocationFailed", "192.0.2.7 is not in any pool")
	e.service("taken", func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationIPs: "10.60.0.15"} })
	e.waitEvent("taken", "AllocationFailed", "10.60.0.15 is used by")
	if len(e.get("taken").Status.LoadBalancer.Ingress) != 0 {
		t.Fatal("a refused Service has an IP")
	}

	// Exhaustion names the pool; freeing an address serves the pending one.
	e.service("b")
	e.service("c")
	e.service("d")
	e.waitAnyIP("b")
	e.waitAnyIP("c")
	e.waitAnyIP("d")
	e.service("e")
	msg := e.waitEvent("e", "AllocationFailed", `pool "general" has no free IPv4 address (4 of 4 in use)`)
	// ... and what to do about it.
	for _, fix := range []string{"add addresses to the pool (juju config calico-lb pools=…)", "delete Services that no longer need theirs",
		`request pool "reserved", which has free addresses, with the calico-lb.io/address-pool annotation`} {
		if !strings.Contains(msg, fix) {
			t.Errorf("the exhaustion event does not say %q: %s", fix, msg)
		}
	}
	if err := e.client.CoreV1().Services(e.ns).Delete(context.Background(), "c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitAnyIP("e")

	// Changing the request moves the Service; changing the type releases it.
	svc := e.get("plain")
	svc.Annotations = map[string]string{AnnotationIPs: "10.60.0.20"}
	if _, err := e.client.CoreV1().Services(e.ns).Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitIPs("plain", "10.60.0.20")
	svc = e.get("plain")
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	svc.Spec.LoadBalancerClass = nil
	if _, err := e.client.CoreV1().Services(e.ns).Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("plain", "lost its IP", func(s *corev1.Service) bool { return len(s.Status.LoadBalancer.Ingress) == 0 })
	e.service("reuse", func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationIPs: "10.60.0.20"} })
	e.waitIPs("reuse", "10.60.0.20")

	// Services of another class are not touched.
	e.service("other-class", func(s *corev1.Service) { other := "other.example/lb"; s.Spec.LoadBalancerClass = &other })
	time.Sleep(500 * time.Millisecond)
	if len(e.get("other-class").Status.LoadBalancer.Ingress) != 0 {
		t.Fatal("a Service of another class got an IP")
	}

	// The local API lists pools and Services: general holds b, d, e; reserved
	// holds requested, migrated, by-pool and reuse.
	code, body := httpGet(t, r, "/v1/allocations")
	var snap Snapshot
	if code != 200 || json.Unmarshal([]byte(body), &snap) != nil || !snap.Leader || snap.Source != "allocator" {
		t.Fatalf("/v1/allocations: %d %s", code, body)
	}
	if len(snap.Pools) != 2 || snap.Pools[0].Name != "general" || snap.Pools[0].InUse != 3 || snap.Pools[0].Capacity != "4" || snap.Pools[1].InUse != 4 {
		t.Fatalf("pools: %+v", snap.Pools)
	}
	if code, body := httpGet(t, r, "/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	code, body = httpGet(t, r, "/metrics")
	for _, want := range []string{
		`calico_lb_pool_addresses{family="ipv4",pool="general"} 4`,
		`calico_lb_pool_addresses_in_use{family="ipv4",pool="general"} 3`,
		`calico_lb_allocations_total{result="PoolExhausted"}`,
		`calico_lb_allocation_latency_seconds_count`,
		`calico_lb_leader 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
}

func TestSharingAndDualStack(t *testing.T) {
	e := newEnv(t)
	e.config(`pools:
  dual: {addresses: [10.70.0.0/29, "fd00:70::/125"]}
`)
	e.start("a")
	e.service("dns-tcp", func(s *corev1.Service) {
		s.Annotations = map[string]string{AnnotationSharing: "dns"}
		s.Spec.Ports = []corev1.ServicePort{{Port: 53, Protocol: corev1.ProtocolTCP}}
	})
	e.service("dns-udp", func(s *corev1.Service) {
		s.Annotations = map[string]string{AnnotationSharing: "dns"}
		s.Spec.Ports = []corev1.ServicePort{{Port: 53, Protocol: corev1.ProtocolUDP}}
	})
	a, b := e.waitAnyIP("dns-tcp"), e.waitAnyIP("dns-udp")
	if a != b {
		t.Fatalf("shared pair got %s and %s", a, b)
	}
	// The same key with a port that is taken: an address of its own, and
	// a Warning that says which Service holds the port.
	e.service("dns-tcp-2", func(s *corev1.Service) {
		s.Annotations = map[string]string{AnnotationSharing: "dns"}
		s.Spec.Ports = []corev1.ServicePort{{Port: 53, Protocol: corev1.ProtocolTCP}}
	})
	if c := e.waitAnyIP("dns-tcp-2"); c == a {
		t.Fatalf("dns-tcp-2 joined %s although its port is taken there", a)
	}
	e.waitEvent("dns-tcp-2", "SharingNotPossible", a+": port TCP/53 is taken there by "+e.ns+"/dns-tcp")
	policy := corev1.IPFamilyPolicyRequireDualStack
	e.service("dual", func(s *corev1.Service) { s.Spec.IPFamilyPolicy = &policy })
	s := e.waitFor("dual", "got two IPs", func(s *corev1.Service) bool { return len(s.Status.LoadBalancer.Ingress) == 2 })
	if got := ingressStrings(s); !strings.Contains(got[0], ".") || !strings.Contains(got[1], ":") {
		t.Fatalf("dual-stack ingress %v, want IPv4 first (the primary family)", got)
	}
}

func TestExternalIPsMirror(t *testing.T) {
	e := newEnv(t)
	e.config("calico-service-ip-option: external\npools:\n  p: {addresses: [10.80.0.1-10.80.0.5]}\n")
	e.start("a")
	e.service("web", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"198.51.100.1"} })
	ip := e.waitAnyIP("web")
	s := e.waitFor("web", "mirrored its IP", func(s *corev1.Service) bool { return len(s.Spec.ExternalIPs) == 2 })
	if s.Spec.ExternalIPs[0] != "198.51.100.1" || s.Spec.ExternalIPs[1] != ip || s.Annotations[AnnotationMirrored] != ip {
		t.Fatalf("externalIPs %v, annotation %q", s.Spec.ExternalIPs, s.Annotations[AnnotationMirrored])
	}
	// Leaving LoadBalancer removes only what was mirrored.
	s.Spec.Type = corev1.ServiceTypeClusterIP
	s.Spec.LoadBalancerClass = nil
	if _, err := e.client.CoreV1().Services(e.ns).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s = e.waitFor("web", "dropped the mirrored IP", func(s *corev1.Service) bool {
		return len(s.Spec.ExternalIPs) == 1 && s.Annotations[AnnotationMirrored] == ""
	})
	if s.Spec.ExternalIPs[0] != "198.51.100.1" {
		t.Fatalf("externalIPs %v", s.Spec.ExternalIPs)
	}
}

// A Service its owner restricted with loadBalancerSourceRanges is never
// mirrored into spec.externalIPs: kube-proxy lets external IPs through
// before it applies the source ranges, so the mirror would open it to all.
// It gets its IP, no external IP, and a Warning that says why and what to
// do; one that gains source ranges loses the mirror.
func TestSourceRangesAreNeverMirrored(t *testing.T) {
	e := newEnv(t)
	e.config("calico-service-ip-option: external\npools:\n  p: {addresses: [10.80.1.1-10.80.1.5]}\n")
	e.start("a")
	e.service("closed", func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24"} })
	e.waitAnyIP("closed")
	e.waitEvent("closed", "NotMirrored", "loadBalancerSourceRanges")
	if s := e.get("closed"); len(s.Spec.ExternalIPs) != 0 || s.Annotations[AnnotationMirrored] != "" {
		t.Fatalf("a source-restricted Service was mirrored: externalIPs %v", s.Spec.ExternalIPs)
	}
	e.service("opened")
	e.waitFor("opened", "mirrored its IP", func(s *corev1.Service) bool { return len(s.Spec.ExternalIPs) == 1 })
	s := e.get("opened")
	s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24"}
	if _, err := e.client.CoreV1().Services(e.ns).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("opened", "dropped the mirror once restricted", func(s *corev1.Service) bool {
		return len(s.Spec.ExternalIPs) == 0 && s.Annotations[AnnotationMirrored] == "" && len(s.Status.LoadBalancer.Ingress) == 1
	})
}

// An externalIP inside the pools that calico-lb did not write (a tenant's
// ClusterIP Service naming another Service's VIP, CVE-2020-8554's class) is
// flagged with a Warning on that Service; one outside the pools, or one
// calico-lb mirrored, is not.
func TestForeignExternalIPsAreFlagged(t *testing.T) {
	e := newEnv(t)
	e.config("calico-service-ip-option: external\npools:\n  p: {addresses: [10.80.2.1-10.80.2.5]}\n")
	r := e.start("a")
	e.service("victim")
	vip := e.waitAnyIP("victim")
	e.waitFor("victim", "mirrored its IP", func(s *corev1.Service) bool { return len(s.Spec.ExternalIPs) == 1 })
	thief := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "thief", Namespace: e.ns}, Spec: corev1.ServiceSpec{
		Ports: []corev1.ServicePort{{Port: 80}}, ExternalIPs: []string{vip, "198.51.100.7"}}}
	if _, err := e.client.CoreV1().Services(e.ns).Create(context.Background(), thief, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	msg := e.waitEvent("thief", "ExternalIPInPool", vip)
	if strings.Contains(msg, "198.51.100.7") || !strings.Contains(msg, "admission policy") {
		t.Fatalf("the Warning: %q", msg)
	}
	// verify's facts list it too.
	want := e.ns + "/thief: " + vip
	waitUntil(t, "the facts list "+want, func() bool {
		var f api.ServicesFacts
		code, body := httpGet(t, r, "/v1/services")
		return code == 200 && json.Unmarshal([]byte(body), &f) == nil && slices.Equal(f.ForeignExternalIPs, []string{want})
	})
	evs, err := e.client.CoreV1().Events(e.ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=victim,reason=ExternalIPInPool"})
	if err != nil || len(evs.Items) != 0 {
		t.Fatalf("calico-lb's own mirror was flagged: %v %v", err, evs)
	}
}
