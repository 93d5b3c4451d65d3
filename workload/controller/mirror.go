package controller

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// AnnotationMirrored lists the spec.externalIPs the controller added (in
// calico-service-ip-option=external mode), so that it removes only those.
const AnnotationMirrored = "calico-lb.io/mirrored-external-ips"

// mirrored lists the spec.externalIPs calico-lb put there (its annotation).
func mirrored(svc *corev1.Service) []string {
	var out []string
	for _, s := range strings.Split(svc.Annotations[AnnotationMirrored], ",") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// mirror returns the Service with spec.externalIPs holding ips (when on)
// and the other entries the operator put there, and whether that differs.
func mirror(svc *corev1.Service, ips []netip.Addr, on bool) (*corev1.Service, bool) {
	ours := mirrored(svc)
	var keep []string
	for _, s := range svc.Spec.ExternalIPs {
		if !slices.Contains(ours, s) {
			keep = append(keep, s)
		}
	}
	var mine []string
	if on {
		for _, ip := range ips {
			if !slices.Contains(keep, ip.String()) {
				mine = append(mine, ip.String())
			}
		}
	}
	want := append(slices.Clone(keep), mine...)
	if slices.Equal(want, svc.Spec.ExternalIPs) && svc.Annotations[AnnotationMirrored] == strings.Join(mine, ",") {
		return svc, false
	}
	out := svc.DeepCopy()
	out.Spec.ExternalIPs = want
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	if len(mine) == 0 {
		delete(out.Annotations, AnnotationMirrored)
	} else {
		out.Annotations[AnnotationMirrored] = strings.Join(mine, ",")
	}
	return out, true
}
