package controller

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/iprange"
)

// foreignExternalIPs are the addresses of svc's spec.externalIPs inside
// calico-lb's pools that calico-lb did not put there (its mirror lists
// what it did). In calico-service-ip-option=external mode Calico announces
// every Service's externalIPs in those CIDRs, so such an entry pulls
// another Service's VIP, or takes an unallocated pool address past the
// pools' namespace rules (CVE-2020-8554's class, made routable). Any Service
// type counts: a ClusterIP Service can carry externalIPs too.
func foreignExternalIPs(svc *corev1.Service, pools []config.Pool) []netip.Addr {
	ours := mirrored(svc)
	var out []netip.Addr
	for _, s := range svc.Spec.ExternalIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil || slices.Contains(ours, s) {
			continue
		}
		for _, p := range pools {
			if slices.ContainsFunc(p.Addresses, func(r iprange.Range) bool { return r.Contains(ip) }) {
				out = append(out, ip)
				break
			}
		}
	}
	return out
}

// flagForeignExternalIPs warns, once per address, of externalIPs inside the
// pools that calico-lb did not write.
func (t *term) flagForeignExternalIPs(svc *corev1.Service, key string) {
	for _, ip := range foreignExternalIPs(svc, t.active.Pools) {
		t.warnOnce(svc, key, "foreign-external-ip:"+ip.String(), "ExternalIPInPool", fmt.Sprintf(
			"spec.externalIPs holds %s, inside calico-lb's pools, which calico-lb did not put there: kube-proxy (and, with calico-service-ip-option=external, Calico) send that address's traffic to this Service, whichever Service calico-lb gave it; remove it, and let only calico-lb set externalIPs inside the pools (the admission policy in docs/security.md)", ip))
	}
}
