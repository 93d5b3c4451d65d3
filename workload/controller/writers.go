package controller

import (
	"context"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/workload/config"
)

type wrote struct {
	sentRV  string // the resourceVersion the write was based on
	ingress []corev1.LoadBalancerIngress
	at      time.Time
}

// cacheLag is how long a status write may take to show in the cache
// before the controller writes it again.
const cacheLag = 30 * time.Second

type write struct {
	key  string
	svc  *corev1.Service // the object to send
	spec bool            // Update (spec.externalIPs) rather than UpdateStatus
	seen time.Time       // when the Service was first seen without an IP, for the latency metric
}

// sync writes what the Service should show for ips, if it does not already.
func (t *term) sync(key string, svc *corev1.Service, ips []netip.Addr) bool {
	want := Ingress(ips)
	if !sameIngress(svc.Status.LoadBalancer.Ingress, want) {
		t.mu.Lock()
		w, ok := t.written[key]
		t.mu.Unlock()
		if ok && w.sentRV == svc.ResourceVersion && sameIngress(w.ingress, want) && time.Since(w.at) < cacheLag {
			// Our write succeeded; the cache has not caught up yet, and its
			// update will bring the key back. Past cacheLag the write
			// counts as lost and goes again: if it was not, the apiserver
			// answers Conflict and the next pass sees the fresh object.
			return false
		}
		out := svc.DeepCopy()
		out.Status.LoadBalancer.Ingress = want
		return t.send(write{key: key, svc: out, seen: t.seen(svc)})
	}
	external := t.active.ServiceIPOption == config.ServiceIPExternal
	if external && len(svc.Spec.LoadBalancerSourceRanges) > 0 {
		// kube-proxy lets an external IP through before it applies the
		// source ranges: the mirror would open the Service to everyone.
		t.warnOnce(svc, key, "source-ranges", "NotMirrored", notMirrored)
		external = false
	}
	if external || svc.Annotations[AnnotationMirrored] != "" {
		if out, changed := mirror(svc, ips, external); changed {
			return t.send(write{key: key, svc: out, spec: true})
		}
	}
	return false
}

// notMirrored is why a Service with loadBalancerSourceRanges keeps its IP
// out of spec.externalIPs.
const notMirrored = "not mirrored into spec.externalIPs (calico-service-ip-option=external): kube-proxy accepts traffic to an external IP before it applies loadBalancerSourceRanges, so the mirror would open this Service to every source. Its load-balancer IP stays filtered by the ranges, and Calico announces it only within the pool's CIDR (not as a /32 from the nodes with endpoints, which externalTrafficPolicy: Local needs); calico-service-ip-option=loadbalancer (Calico 3.18 or later) announces it per Service and keeps the ranges"

func (t *term) seen(svc *corev1.Service) time.Time {
	if v, ok := t.c.firstSee.Load(svc.UID); ok {
		return v.(time.Time)
	}
	return time.Time{}
}

// writersBusyRetry is when a Service whose write found the writers behind
// is looked at again.
const writersBusyRetry = 500 * time.Millisecond

// send hands w to the writers and reports whether it did. It never waits:
// when the writers are behind (a slow apiserver), the Service is looked at
// again a little later, and the loop goes on allocating and publishing its
// figures, so that /healthz does not take a slow apiserver for a wedged
// loop and have Pebble restart a healthy controller.
func (t *term) send(w write) bool {
	select {
	case t.writes <- w:
		return true
	default:
		t.queue.AddAfter(w.key, writersBusyRetry)
		return false
	}
}

func (t *term) forget(key string) {
	t.mu.Lock()
	delete(t.written, key)
	t.mu.Unlock()
}

// writer performs status and spec writes. It owns the key until it calls
// queue.Done, so writes of one Service never race.
func (t *term) writer(ctx context.Context) {
	for w := range t.writes {
		t.perform(ctx, w)
	}
}

func (t *term) perform(ctx context.Context, w write) {
	defer t.queue.Done(w.key)
	if ctx.Err() != nil {
		return // the term ended: the next leader decides
	}
	svcs := t.c.opts.Client.CoreV1().Services(w.svc.Namespace)
	opts := metav1.UpdateOptions{FieldManager: "calico-lb"}
	var err error
	if w.spec {
		_, err = svcs.Update(ctx, w.svc, opts)
	} else {
		_, err = svcs.UpdateStatus(ctx, w.svc, opts)
	}
	result := "ok"
	switch {
	case err == nil:
		t.queue.Forget(w.key)
		if !w.spec {
			t.mu.Lock()
			t.written[w.key] = wrote{sentRV: w.svc.ResourceVersion, ingress: w.svc.Status.LoadBalancer.Ingress, at: time.Now()}
			t.mu.Unlock()
			if len(w.svc.Status.LoadBalancer.Ingress) > 0 && !w.seen.IsZero() {
				t.c.metrics.latency.Observe(time.Since(w.seen).Seconds())
				t.c.firstSee.Delete(w.svc.UID)
			}
		}
	case apierrors.IsNotFound(err):
		result = "gone"
		t.queue.Forget(w.key)
	case apierrors.IsConflict(err):
		result = "conflict"
		t.queue.AddRateLimited(w.key)
	default:
		result = "error"
		t.c.log.Warn("write failed", "service", w.key, "error", err)
		t.queue.AddRateLimited(w.key)
	}
	t.c.metrics.writes.WithLabelValues(result).Inc()
}
