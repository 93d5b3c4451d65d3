// Package lbservice holds what the controller and the speakers agree on
// about a Service: whether calico-lb serves it, and the IPs in its status.
package lbservice

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// Managed reports whether calico-lb serves this Service: type LoadBalancer
// and the configured load-balancer class (none when the class is empty).
func Managed(svc *corev1.Service, class string) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return class == ""
	}
	return *svc.Spec.LoadBalancerClass == class
}

// IngressOf returns the IPs in a Service's status, in order.
func IngressOf(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}
