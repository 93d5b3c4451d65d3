package controller

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/calico-lb/calico-lb/workload/allocator"
	"github.com/calico-lb/calico-lb/workload/api"
)

// Served is the Service key (namespace/name) names, if calico-lb
// serves it; otherwise an error that says why (api.Refused, api.ErrNoService).
func (c *Controller) Served(key, class string) (*corev1.Service, error) {
	ns, name, ok := strings.Cut(key, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, api.Refused{Msg: fmt.Sprintf("service %q: write it as namespace/name", key)}
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("service %s: %w", key, api.ErrNoService)
	}
	if err != nil {
		return nil, err
	}
	if !Managed(svc, class) {
		return nil, api.Refused{Msg: fmt.Sprintf("service %s is not a LoadBalancer Service that calico-lb serves (type %s, class %s)", key, svc.Spec.Type, classOf(svc))}
	}
	return svc, nil
}

// reallocate gives the Service key (namespace/name) new addresses from its
// pools and queues the status write. The old addresses are free at once,
// but next-fit allocation hands them out again only after the pools wrap.
func (t *term) reallocate(key string) (api.Reallocation, error) {
	svc, err := t.c.Served(key, t.active.LoadBalancerClass)
	if err != nil {
		return api.Reallocation{}, err
	}
	sk := allocator.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
	if _, outside := t.outside[sk]; outside {
		return api.Reallocation{}, api.Refused{Msg: fmt.Sprintf("service %s holds addresses outside every pool while a pool change is held back; run apply-pool-change, which moves it", key)}
	}
	before, held := t.alloc.Get(sk)
	if !held {
		why := "it has no address yet"
		if w := t.warned[key]; w != "" {
			why += ": " + w
		}
		return api.Reallocation{}, api.Refused{Msg: fmt.Sprintf("service %s: %s", key, why)}
	}
	req, err := RequestFor(svc)
	if err != nil {
		return api.Reallocation{}, api.Refused{Msg: fmt.Sprintf("service %s: %v", key, err)}
	}
	asg, err := t.alloc.Reallocate(&req.Request)
	if err != nil {
		return api.Reallocation{}, api.Refused{Msg: err.Error()}
	}
	old, now := before.List(), asg.List()
	t.c.metrics.allocations.WithLabelValues("reallocated").Inc()
	t.c.events.post(svc, corev1.EventTypeNormal, "IPReallocated", "", "Moved from %s to %s (reallocate action)", joinIPs(old), joinIPs(now))
	t.c.log.Info("reallocated", "service", key, "from", joinIPs(old), "to", joinIPs(now))
	t.retryWaiting()
	// The Service's own pass writes the status: it alone may hand the
	// key to a writer.
	t.queue.Add(key)
	return api.Reallocation{Service: key, OldIPs: ipStrings(old), NewIPs: ipStrings(now), Pools: uniq(asg.Pools())}, nil
}

func classOf(svc *corev1.Service) string {
	if svc.Spec.LoadBalancerClass == nil {
		return "none"
	}
	return *svc.Spec.LoadBalancerClass
}

// serveReallocate is POST /v1/reallocate?service=ns/name. It answers once
// the Service's status shows the new addresses, or after 10 s saying the
// write is still on its way.
func (c *Controller) serveReallocate(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("service")
	res, err := inLoop(r.Context(), c, func(t *term) (api.Reallocation, error) { return t.reallocate(key) })
	switch code, refused := api.Refusal(err); {
	case refused:
		http.Error(w, err.Error(), code)
		return
	case err != nil:
		c.notLeader(w, err)
		return
	}
	res.Written = c.waitIngress(r.Context(), key, res.NewIPs, 10*time.Second)
	api.WriteJSON(w, http.StatusOK, res)
}

// waitIngress waits until the cached Service's status lists ips.
func (c *Controller) waitIngress(ctx context.Context, key string, ips []string, limit time.Duration) bool {
	ns, name, _ := strings.Cut(key, "/")
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if svc, err := c.services.Services(ns).Get(name); err == nil && slices.Equal(ipStrings(IngressOf(svc)), ips) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}
