package controller

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/workload/allocator"
)

// recordRelease records the IPReleased Event of a Service whose addresses
// went back to their pools, naming each address and its pool. A deleted
// Service is gone from the cache, so its Event refers to it by namespace
// and name.
func (t *term) recordRelease(svc *corev1.Service, sk allocator.ServiceKey, asg allocator.Assignment, why string) {
	if svc == nil {
		svc = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: sk.Namespace, Name: sk.Name}}
	}
	t.c.events.post(svc, corev1.EventTypeNormal, "IPReleased", "", "Released %s: %s", releasedTo(asg), why)
}

// releasedTo says where each address went: "10.0.0.1 to pool a, fd00::1 to pool b".
func releasedTo(asg allocator.Assignment) string {
	var parts []string
	pools := asg.Pools()
	for i, ip := range asg.IPs {
		if ip.IsValid() {
			parts = append(parts, ip.String()+" to pool "+pools[i])
		}
	}
	return strings.Join(parts, ", ")
}
