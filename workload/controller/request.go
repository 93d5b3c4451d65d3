package controller

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/calico-lb/calico-lb/workload/allocator"
	"github.com/calico-lb/calico-lb/workload/lbservice"
)

// Annotations a Service may carry to shape its request. The MetalLB names
// (metallb.io/... and the older metallb.universe.tf/...) are honoured too,
// so clusters can migrate without editing every Service.
const (
	AnnotationIPs     = "calico-lb.io/loadBalancerIPs"
	AnnotationPool    = "calico-lb.io/address-pool"
	AnnotationSharing = "calico-lb.io/allow-shared-ip"
)

var compatPrefixes = []string{"metallb.io/", "metallb.universe.tf/"}

// annotation returns the value of our annotation (name "calico-lb.io/x")
// or of a MetalLB one with the same suffix, and the name it came from.
func annotation(svc *corev1.Service, name string) (value, from string, ok bool) {
	if v, ok := svc.Annotations[name]; ok {
		return v, name, true
	}
	suffix := strings.TrimPrefix(name, "calico-lb.io/")
	for _, p := range compatPrefixes {
		if v, ok := svc.Annotations[p+suffix]; ok {
			return v, p + suffix, true
		}
	}
	return "", "", false
}

// Managed reports whether calico-lb serves this Service (see lbservice).
func Managed(svc *corev1.Service, class string) bool { return lbservice.Managed(svc, class) }

// Request is what the controller asks the allocator for a Service, plus the
// MetalLB annotation names it used (the controller suggests ours in a
// Warning event).
type Request struct {
	allocator.Request
	Compat []string
}

// RequestFor turns a Service into an allocator request. An invalid
// annotation is an error that names it and the fix.
func RequestFor(svc *corev1.Service) (Request, error) {
	r := Request{Request: allocator.Request{
		Service: allocator.ServiceKey{Namespace: svc.Namespace, Name: svc.Name},
		Labels:  svc.Labels,
		Policy:  policyOf(svc),
	}}
	for _, f := range svc.Spec.IPFamilies {
		if f == corev1.IPv6Protocol {
			r.Families = append(r.Families, allocator.IPv6)
		} else {
			r.Families = append(r.Families, allocator.IPv4)
		}
	}
	if len(r.Families) == 0 {
		// The apiserver always fills spec.ipFamilies; this is for objects
		// that did not go through it.
		r.Families = []allocator.Family{allocator.IPv4}
	}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		r.Ports = append(r.Ports, allocator.Port{Protocol: proto, Port: p.Port})
	}
	if v, from, ok := annotation(svc, AnnotationSharing); ok {
		r.SharingKey = strings.TrimSpace(v)
		r.compat(from)
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && r.SharingKey != "" {
		// With Local, traffic only reaches pods on the announcing node, so
		// Services may share an IP only if they select the same pods.
		r.BackendKey = labels.Set(svc.Spec.Selector).String()
	}
	if v, from, ok := annotation(svc, AnnotationPool); ok {
		r.Pool = strings.TrimSpace(v)
		r.compat(from)
		if r.Pool == "" {
			return r, fmt.Errorf("annotation %s is empty; give a pool name or remove it", from)
		}
	}
	if v, from, ok := annotation(svc, AnnotationIPs); ok {
		r.compat(from)
		for i, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			ip, err := netip.ParseAddr(s)
			if err != nil || ip.Zone() != "" {
				return r, fmt.Errorf("annotation %s: entry %d %q is not an IP address; write one IPv4 and/or one IPv6 address separated by a comma", from, i+1, s)
			}
			r.IPs = append(r.IPs, ip.Unmap())
		}
		if len(r.IPs) == 0 {
			return r, fmt.Errorf("annotation %s is empty; give one IPv4 and/or one IPv6 address or remove it", from)
		}
	}
	if s := strings.TrimSpace(svc.Spec.LoadBalancerIP); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return r, fmt.Errorf("spec.loadBalancerIP %q is not an IP address", s)
		}
		ip = ip.Unmap()
		switch {
		case len(r.IPs) == 0:
			r.IPs = []netip.Addr{ip}
		case !contains(r.IPs, ip):
			return r, fmt.Errorf("spec.loadBalancerIP %s and annotation %s (%s) disagree; keep one of them (the annotation supports dual-stack)", ip, AnnotationIPs, joinIPs(r.IPs))
		}
	}
	return r, nil
}

func (r *Request) compat(from string) {
	if !strings.HasPrefix(from, "calico-lb.io/") {
		r.Compat = append(r.Compat, from)
	}
}

func policyOf(svc *corev1.Service) allocator.FamilyPolicy {
	if svc.Spec.IPFamilyPolicy == nil {
		return allocator.SingleStack
	}
	switch *svc.Spec.IPFamilyPolicy {
	case corev1.IPFamilyPolicyPreferDualStack:
		return allocator.PreferDualStack
	case corev1.IPFamilyPolicyRequireDualStack:
		return allocator.RequireDualStack
	}
	return allocator.SingleStack
}

func contains(ips []netip.Addr, ip netip.Addr) bool {
	for _, x := range ips {
		if x == ip {
			return true
		}
	}
	return false
}

func joinIPs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}

// IngressOf returns the IPs in a Service's status, in order.
func IngressOf(svc *corev1.Service) []netip.Addr { return lbservice.IngressOf(svc) }

// Ingress is the status a Service should have for an assignment: each IP
// with ipMode VIP. Setting ipMode ourselves matters: the apiserver fills it
// in when it is missing, and a controller that leaves it out sees a
// difference and writes every status twice.
func Ingress(ips []netip.Addr) []corev1.LoadBalancerIngress {
	if len(ips) == 0 {
		return nil
	}
	vip := corev1.LoadBalancerIPModeVIP
	out := make([]corev1.LoadBalancerIngress, len(ips))
	for i, ip := range ips {
		out[i] = corev1.LoadBalancerIngress{IP: ip.String(), IPMode: &vip}
	}
	return out
}

// sameIngress reports whether the status already says exactly want.
func sameIngress(have []corev1.LoadBalancerIngress, want []corev1.LoadBalancerIngress) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if have[i].IP != want[i].IP || have[i].Hostname != "" || len(have[i].Ports) != 0 {
			return false
		}
		if have[i].IPMode == nil || *have[i].IPMode != *want[i].IPMode {
			return false
		}
	}
	return true
}

func ipStrings(ips []netip.Addr) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
