package controller

import (
	"fmt"
	"strings"
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

// Next-fit keeps its place: a reload that adds an unrelated pool, a pool
// of two ranges and a restart each hand out an address never used before,
// not one released a moment ago.
func TestNextFitKeepsItsPlace(t *testing.T) {
	e := newEnv(t)
	e.config("pools:\n  p: {addresses: [10.96.0.0/24]}\n  two: {addresses: [10.96.1.1-10.96.1.2, 10.96.2.1-10.96.2.2], auto-assign: false}\n")
	r := e.start("a")
	inTwo := func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationPool: "two"} }
	for i, name := range []string{"a", "b", "c"} {
		e.service(name)
		e.waitIPs(name, fmt.Sprintf("10.96.0.%d", i+1))
	}
	e.service("two-a", inTwo)
	e.waitIPs("two-a", "10.96.1.1")
	e.service("two-b", inTwo)
	e.waitIPs("two-b", "10.96.1.2")
	e.delete("a")
	e.delete("two-a")
	e.waitEvent("a", "IPReleased", "10.96.0.1")
	e.waitEvent("two-a", "IPReleased", "10.96.1.1")

	// A reload that only adds a pool.
	e.config("pools:\n  p: {addresses: [10.96.0.0/24]}\n  two: {addresses: [10.96.1.1-10.96.1.2, 10.96.2.1-10.96.2.2], auto-assign: false}\n  unrelated: {addresses: [10.97.0.0/24], auto-assign: false}\n")
	waitUntil(t, "the reload is taken in", func() bool {
		_, body := httpGet(t, r, "/v1/allocations")
		return strings.Contains(body, "unrelated")
	})
	e.service("d")
	e.waitIPs("d", "10.96.0.4")
	// The second range of a pool before the address released in the first.
	e.service("two-c", inTwo)
	e.waitIPs("two-c", "10.96.2.1")

	// A restart resumes past the highest address in use.
	r.stop()
	e.delete("b")
	e.start("b")
	e.service("f")
	e.waitIPs("f", "10.96.0.5")
}
