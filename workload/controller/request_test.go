package controller

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/workload/allocator"
)

func lbService(mod func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web", Labels: map[string]string{"tier": "web"}},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeLoadBalancer,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:      []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}, {Port: 53, Protocol: corev1.ProtocolUDP}},
			Selector:   map[string]string{"app": "web"},
		},
	}
	if mod != nil {
		mod(s)
	}
	return s
}

func TestManaged(t *testing.T) {
	class := "example.com/lb"
	tests := []struct {
		svc   *corev1.Service
		class string
		want  bool
	}{
		{lbService(nil), "", true},
		{lbService(nil), class, false},
		{lbService(func(s *corev1.Service) { s.Spec.LoadBalancerClass = &class }), class, true},
		{lbService(func(s *corev1.Service) { s.Spec.LoadBalancerClass = &class }), "", false},
		{lbService(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }), "", false},
		{lbService(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }), "", false},
	}
	for i, tc := range tests {
		if got := Managed(tc.svc, tc.class); got != tc.want {
			t.Errorf("case %d: Managed = %v, want %v", i, got, tc.want)
		}
	}
}

func TestRequestFor(t *testing.T) {
	dual := corev1.IPFamilyPolicyRequireDualStack
	prefer := corev1.IPFamilyPolicyPreferDualStack
	tests := []struct {
		name   string
		mod    func(*corev1.Service)
		check  func(t *testing.T, r Request)
		errSub string
	}{
		{name: "plain", check: func(t *testing.T, r Request) {
			want := allocator.Request{
				Service:  allocator.ServiceKey{Namespace: "demo", Name: "web"},
				Labels:   map[string]string{"tier": "web"},
				Families: []allocator.Family{allocator.IPv4},
				Ports:    []allocator.Port{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}},
			}
			if !reflect.DeepEqual(r.Request, want) || len(r.Compat) != 0 {
				t.Fatalf("%+v", r)
			}
		}},
		{name: "our annotations", mod: func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationIPs: "10.0.0.5, fd00::5", AnnotationPool: "public", AnnotationSharing: "dns"}
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
			s.Spec.IPFamilyPolicy = &dual
		}, check: func(t *testing.T, r Request) {
			if r.Pool != "public" || r.SharingKey != "dns" || len(r.IPs) != 2 || r.IPs[1] != netip.MustParseAddr("fd00::5") ||
				r.Policy != allocator.RequireDualStack || r.Families[0] != allocator.IPv6 || r.BackendKey != "" || len(r.Compat) != 0 {
				t.Fatalf("%+v", r)
			}
		}},
		{name: "MetalLB annotations are honoured and reported", mod: func(s *corev1.Service) {
			s.Annotations = map[string]string{"metallb.io/loadBalancerIPs": "10.0.0.5", "metallb.universe.tf/address-pool": "public", "metallb.universe.tf/allow-shared-ip": "k"}
		}, check: func(t *testing.T, r Request) {
			if r.Pool != "public" || r.SharingKey != "k" || r.IPs[0] != netip.MustParseAddr("10.0.0.5") {
				t.Fatalf("%+v", r)
			}
			if strings.Join(r.Compat, " ") != "metallb.universe.tf/allow-shared-ip metallb.universe.tf/address-pool metallb.io/loadBalancerIPs" {
				t.Fatalf("compat = %v", r.Compat)
			}
		}},
		{name: "ours win over MetalLB's", mod: func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationPool: "a", "metallb.io/address-pool": "b"}
		}, check: func(t *testing.T, r Request) {
			if r.Pool != "a" || len(r.Compat) != 0 {
				t.Fatalf("%+v", r)
			}
		}},
		{name: "Local with a key shares by selector", mod: func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationSharing: "k"}
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}, check: func(t *testing.T, r Request) {
			if r.BackendKey != "app=web" {
				t.Fatalf("backend key %q", r.BackendKey)
			}
		}},
		{name: "spec.loadBalancerIP", mod: func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.0.0.9" }, check: func(t *testing.T, r Request) {
			if len(r.IPs) != 1 || r.IPs[0] != netip.MustParseAddr("10.0.0.9") {
				t.Fatalf("%+v", r)
			}
		}},
		{name: "spec.loadBalancerIP agreeing with the annotation", mod: func(s *corev1.Service) {
			s.Spec.LoadBalancerIP = "10.0.0.9"
			s.Annotations = map[string]string{AnnotationIPs: "10.0.0.9,fd00::9"}
			s.Spec.IPFamilyPolicy = &prefer
		}, check: func(t *testing.T, r Request) {
			if len(r.IPs) != 2 || r.Policy != allocator.PreferDualStack {
				t.Fatalf("%+v", r)
			}
		}},
		{name: "spec.loadBalancerIP disagreeing", mod: func(s *corev1.Service) {
			s.Spec.LoadBalancerIP = "10.0.0.9"
			s.Annotations = map[string]string{AnnotationIPs: "10.0.0.8"}
		}, errSub: "disagree"},
		{name: "bad IP annotation", mod: func(s *corev1.Service) {
			s.Annotations = map[string]string{"metallb.io/loadBalancerIPs": "10.0.0.1,banana"}
		}, errSub: `annotation metallb.io/loadBalancerIPs: entry 2 "banana" is not an IP address`},
		{name: "empty pool annotation", mod: func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationPool: " "} }, errSub: "is empty"},
		{name: "bad spec.loadBalancerIP", mod: func(s *corev1.Service) { s.Spec.LoadBalancerIP = "x" }, errSub: `spec.loadBalancerIP "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := RequestFor(lbService(tc.mod))
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("error = %v, want %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
}

func TestIngress(t *testing.T) {
	ips := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}
	want := Ingress(ips)
	if len(want) != 2 || want[1].IP != "fd00::1" || *want[0].IPMode != corev1.LoadBalancerIPModeVIP {
		t.Fatalf("%+v", want)
	}
	svc := lbService(func(s *corev1.Service) { s.Status.LoadBalancer.Ingress = want })
	if got := IngressOf(svc); !reflect.DeepEqual(got, ips) {
		t.Fatalf("IngressOf = %v", got)
	}
	if !sameIngress(want, Ingress(ips)) || sameIngress(want[:1], want) || sameIngress([]corev1.LoadBalancerIngress{{IP: "10.0.0.1"}, want[1]}, want) {
		t.Fatal("sameIngress wrong")
	}
	if Ingress(nil) != nil || !sameIngress(nil, nil) {
		t.Fatal("empty ingress")
	}
}
