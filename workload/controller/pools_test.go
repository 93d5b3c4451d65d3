package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func ipv6Only(s *corev1.Service) {
	single := corev1.IPFamilyPolicySingleStack
	s.Spec.IPFamilyPolicy = &single
	s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
}

// An IPv6 pool written as a prefix never hands out the prefix's all-zeros
// address, the Subnet-Router anycast address (RFC 4291 §2.6.1), unless the
// pool sets avoid-buggy-ips: false; asked for by name, it is refused with
// the reason and the fix.
func TestSubnetRouterAnycastSkipped(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  v6: {addresses: [\"fd00:208::/120\"]}\n  raw: {addresses: [\"fd00:209::/120\"], avoid-buggy-ips: false, auto-assign: false}\n")
	e.start("a")
	e.service("first", ipv6Only)
	e.waitIPs("first", "fd00:208::1")
	e.service("named", ipv6Only, func(s *corev1.Service) {
		s.Annotations = map[string]string{AnnotationIPs: "fd00:208::"}
	})
	e.waitEvent("named", "AllocationFailed", "fd00:208:: is the Subnet-Router anycast address")
	e.service("raw", ipv6Only, func(s *corev1.Service) {
		s.Annotations = map[string]string{AnnotationPool: "raw"}
	})
	e.waitIPs("raw", "fd00:209::")
}
