package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/calico-lb/calico-lb/workload/allocator"
	"github.com/calico-lb/calico-lb/workload/config"
)

// AnnotationMirrored lists the spec.externalIPs the controller added (in
// calico-service-ip-option=external mode), so that it removes only those.
const AnnotationMirrored = "calico-lb.io/mirrored-external-ips"

// term is one leadership term: it owns the allocator.
type term struct {
	c       *Controller
	alloc   *allocator.Allocator
	active  *config.Config // the config whose pools the allocator has
	takenIn *config.Config // the latest config this term took in (held back or not)
	queue   workqueue.TypedRateLimitingInterface[string]
	writes  chan write
	api     chan apiCall

	// pending is a pool change held back because it would take addresses
	// in use out of every pool.
	pending *pendingChange
	// outside holds Services whose addresses lay outside every pool when
	// the term started (the pools changed while no controller ran). They
	// keep their addresses until the change is applied or reverted.
	outside map[allocator.ServiceKey][]netip.Addr
	// warned remembers the last Warning per Service so that a resync does
	// not repeat it.
	warned map[string]string
	// warnedOnce holds, per Service, the Warnings given once for its life
	// (a MetalLB annotation in use), so that they are not repeated.
	warnedOnce map[string]map[string]bool
	// waiting holds the Services whose request could not be met, with the
	// reason; they are retried whenever addresses are released, rather
	// than every Service.
	waiting map[string]string

	mu      sync.Mutex       // guards written, shared with the writers
	written map[string]wrote // the last status write per key

	// speakerCfg hands the config in force to the goroutine that keeps
	// the speaker DaemonSet: the pools in force, not a held-back change.
	speakerCfg chan *config.Config
}

type wrote struct {
	sentRV  string // the resourceVersion the write was based on
	ingress []corev1.LoadBalancerIngress
}

type write struct {
	key  string
	svc  *corev1.Service // the object to send
	spec bool            // Update (spec.externalIPs) rather than UpdateStatus
	seen time.Time       // when the Service was first seen without an IP, for the latency metric
}

type apiCall struct {
	fn   func(*term) any
	done chan any
}

func newTerm(c *Controller, cfg *config.Config) (*term, error) {
	alloc, err := cfg.NewAllocator()
	if err != nil {
		return nil, err
	}
	return &term{
		c:       c,
		alloc:   alloc,
		active:  cfg,
		takenIn: cfg,
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		writes:  make(chan write, 256),
		api:     make(chan apiCall),
		outside: map[allocator.ServiceKey][]netip.Addr{},
		warned:  map[string]string{},

		warnedOnce: map[string]map[string]bool{},
		waiting:    map[string]string{},

		speakerCfg: make(chan *config.Config, 1),
		written:    map[string]wrote{},
	}, nil
}

// run adopts every existing assignment before serving any pending Service,
// so that no restart or leadership change moves an IP or hands one out twice.
func (t *term) run(ctx context.Context) {
	defer t.queue.ShutDown()
	start := time.Now()
	n, outside := t.adoptAll()
	t.alloc.ResumeAfterHighest()
	t.c.log.Info("adopted existing assignments", "services", n, "outside-pools", outside, "took", time.Since(start).Round(time.Microsecond))
	if outside > 0 {
		t.holdBack(t.active, nil)
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); t.keepSpeakers(ctx) }()
	t.speakersChanged()
	for range t.c.opts.Writers {
		wg.Add(1)
		go func() { defer wg.Done(); t.writer(ctx) }()
	}
	keys := make(chan string)
	go func() {
		defer close(keys)
		for {
			key, quit := t.queue.Get()
			if quit {
				return
			}
			select {
			case keys <- key:
			case <-ctx.Done():
				t.queue.Done(key)
				return
			}
		}
	}()
	all, _ := t.c.services.List(labels.Everything())
	for _, svc := range all {
		if key, err := cache.MetaNamespaceKeyFunc(svc); err == nil {
			t.queue.Add(key)
		}
	}
	defer func() {
		t.queue.ShutDown()
		close(t.writes)
		wg.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case key, ok := <-keys:
			if !ok {
				return
			}
			t.process(ctx, key)
		case <-t.c.configChanged:
			t.reconfigure(t.c.cfg.Load())
		case call := <-t.api:
			call.done <- call.fn(t)
		}
	}
}

// adoptAll restores the term's allocator from the Services' status.
func (t *term) adoptAll() (adopted, outside int) {
	all, _ := t.c.services.List(labels.Everything())
	adopted, t.outside = adoptExisting(t.alloc, all, t.active.LoadBalancerClass, func(sk allocator.ServiceKey, ips []netip.Addr, err error) {
		// Held by an older Service: this one is allocated afresh.
		t.c.log.Warn("cannot adopt", "service", sk, "ips", ips, "error", err)
	})
	return adopted, len(t.outside)
}

// adoptExisting adopts the addresses in the status of every Service of the
// class, oldest Service first so that the oldest holder of a contested IP
// keeps it. It returns how many it adopted and the Services whose
// addresses lie outside every pool; clash reports the others it refused.
func adoptExisting(alloc *allocator.Allocator, all []*corev1.Service, class string, clash func(allocator.ServiceKey, []netip.Addr, error)) (int, map[allocator.ServiceKey][]netip.Addr) {
	all = slices.Clone(all)
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i].CreationTimestamp, all[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return all[i].Namespace+"/"+all[i].Name < all[j].Namespace+"/"+all[j].Name
	})
	alloc.Grow(len(all))
	adopted, outside := 0, map[allocator.ServiceKey][]netip.Addr{}
	for _, svc := range all {
		ips := IngressOf(svc)
		if len(ips) == 0 || !Managed(svc, class) {
			continue
		}
		req, err := RequestFor(svc)
		if err != nil {
			// Keep its IPs anyway: the request is what is wrong, not the holding.
			req.Request = allocator.Request{Service: req.Service, Labels: svc.Labels, Families: familiesOf(ips)}
		}
		_, err = alloc.Adopt(&req.Request, ips)
		var ae *allocator.Error
		switch {
		case err == nil:
			adopted++
		case errors.As(err, &ae) && ae.Reason == allocator.ReasonOutsidePools:
			outside[req.Service] = ips
		case clash != nil:
			clash(req.Service, ips, err)
		}
	}
	return adopted, outside
}

func familiesOf(ips []netip.Addr) []allocator.Family {
	var out []allocator.Family
	for _, ip := range ips {
		out = append(out, allocator.FamilyOf(ip))
	}
	return out
}

// process reconciles one Service. It calls queue.Done itself unless it
// hands a write to the writers, which then do.
func (t *term) process(ctx context.Context, key string) {
	handedOff := false
	defer func() {
		if !handedOff {
			t.queue.Forget(key)
			t.queue.Done(key)
		}
	}()
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	sk := allocator.ServiceKey{Namespace: ns, Name: name}
	svc, err := t.c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		if asg, held := t.alloc.Get(sk); held && t.alloc.Release(sk) {
			t.c.metrics.allocations.WithLabelValues("released").Inc()
			t.c.log.Info("released", "service", key, "reason", "deleted")
			t.recordRelease(nil, sk, asg, "the Service was deleted")
			t.retryWaiting()
		}
		delete(t.outside, sk)
		t.forgetWarnings(key)
		delete(t.waiting, key)
		t.trackPending(nil, sk)
		t.forget(key)
		return
	}
	if err != nil {
		return
	}
	if !Managed(svc, t.active.LoadBalancerClass) {
		handedOff = t.unmanage(key, sk, svc)
		return
	}
	if ips, held := t.outside[sk]; held {
		// Keeps its addresses until the pool change is applied or reverted.
		if !slices.Equal(IngressOf(svc), ips) {
			delete(t.outside, sk) // its status changed under us: treat it afresh
		} else {
			return
		}
	}
	req, err := RequestFor(svc)
	if err != nil {
		t.warn(svc, key, "InvalidRequest", err.Error())
		return
	}
	for _, a := range req.Compat {
		t.warnOnce(svc, key, a, "DeprecatedAnnotation", fmt.Sprintf("annotation %s is MetalLB's; calico-lb honours it, but prefer calico-lb.io/%s", a, a[strings.Index(a, "/")+1:]))
	}
	before, _ := t.alloc.Get(sk)
	start := time.Now()
	asg, aerr := t.alloc.Allocate(&req.Request)
	t.c.metrics.decide.Observe(time.Since(start).Seconds())
	if aerr != nil {
		var ae *allocator.Error
		reason, why := "AllocationFailed", "AllocationFailed"
		if errors.As(aerr, &ae) {
			why = string(ae.Reason)
		}
		// A decision, not a retry: counted once until the request, the
		// pools or the answer change (the message says all three).
		if t.warned[key] != aerr.Error() {
			t.c.metrics.allocations.WithLabelValues(why).Inc()
		}
		t.warn(svc, key, reason, aerr.Error())
		t.waiting[key] = why
	} else {
		delete(t.warned, key)
		delete(t.waiting, key)
		if asg.IPs != before.IPs {
			t.c.metrics.allocations.WithLabelValues("allocated").Inc()
			t.c.events.post(svc, corev1.EventTypeNormal, "IPAllocated", "", "Assigned %s from pool %s", joinIPs(asg.List()), strings.Join(uniq(asg.Pools()), ","))
			if misses := t.alloc.SharingMisses(&req.Request, asg); len(misses) > 0 {
				t.c.events.post(svc, corev1.EventTypeWarning, "SharingNotPossible", "", "allow-shared-ip %q: joined no address shared under the key, so %s is this Service's own: %s",
					req.SharingKey, joinIPs(asg.List()), strings.Join(misses, "; "))
			}
		}
	}
	t.trackPending(svc, sk)
	handedOff = t.sync(key, svc, asg.List())
}

// sync writes what the Service should show for ips, if it does not already.
func (t *term) sync(key string, svc *corev1.Service, ips []netip.Addr) bool {
	want := Ingress(ips)
	if !sameIngress(svc.Status.LoadBalancer.Ingress, want) {
		t.mu.Lock()
		w, ok := t.written[key]
		t.mu.Unlock()
		if ok && w.sentRV == svc.ResourceVersion && sameIngress(w.ingress, want) {
			// Our write succeeded; the cache has not caught up yet, and its
			// update will bring the key back.
			return false
		}
		out := svc.DeepCopy()
		out.Status.LoadBalancer.Ingress = want
		t.send(write{key: key, svc: out, seen: t.seen(svc)})
		return true
	}
	if t.active.ServiceIPOption == config.ServiceIPExternal || svc.Annotations[AnnotationMirrored] != "" {
		if out, changed := mirror(svc, ips, t.active.ServiceIPOption == config.ServiceIPExternal); changed {
			t.send(write{key: key, svc: out, spec: true})
			return true
		}
	}
	return false
}

func (t *term) seen(svc *corev1.Service) time.Time {
	if v, ok := t.c.firstSee.Load(svc.UID); ok {
		return v.(time.Time)
	}
	return time.Time{}
}

// mirror returns the Service with spec.externalIPs holding ips (when on)
// and the other entries the operator put there, and whether that differs.
func mirror(svc *corev1.Service, ips []netip.Addr, on bool) (*corev1.Service, bool) {
	ours := map[string]bool{}
	for _, s := range strings.Split(svc.Annotations[AnnotationMirrored], ",") {
		if s != "" {
			ours[s] = true
		}
	}
	var keep []string
	for _, s := range svc.Spec.ExternalIPs {
		if !ours[s] {
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

// unmanage releases a Service that left calico-lb's care (type or class
// changed) and clears what calico-lb wrote on it.
func (t *term) unmanage(key string, sk allocator.ServiceKey, svc *corev1.Service) bool {
	delete(t.outside, sk)
	t.forgetWarnings(key)
	defer t.trackPending(nil, sk)
	delete(t.waiting, key)
	if asg, held := t.alloc.Get(sk); held {
		t.alloc.Release(sk)
		t.retryWaiting()
		t.c.metrics.allocations.WithLabelValues("released").Inc()
		t.recordRelease(svc, sk, asg, "the Service is no longer a LoadBalancer served by calico-lb")
		if slices.Equal(IngressOf(svc), asg.List()) {
			// The mirrored externalIPs go on the next pass, which the
			// status update brings.
			out := svc.DeepCopy()
			out.Status.LoadBalancer.Ingress = nil
			t.send(write{key: key, svc: out})
			return true
		}
	}
	if svc.Annotations[AnnotationMirrored] != "" {
		if out, changed := mirror(svc, nil, false); changed {
			t.send(write{key: key, svc: out, spec: true})
			return true
		}
	}
	return false
}

func (t *term) send(w write) { t.writes <- w }

// retryWaiting requeues the Services waiting for addresses.
func (t *term) retryWaiting() {
	for key := range t.waiting {
		t.queue.Add(key)
	}
}

func (t *term) forget(key string) {
	t.mu.Lock()
	delete(t.written, key)
	t.mu.Unlock()
}

// warn records a Warning Event once per distinct message.
func (t *term) warn(svc *corev1.Service, key, reason, msg string) {
	if t.warned[key] == msg {
		return
	}
	t.warned[key] = msg
	t.c.events.post(svc, corev1.EventTypeWarning, reason, "", "%s", msg)
	t.c.log.Warn(reason, "service", key, "error", msg)
}

// warnOnce records a Warning Event about id once for the Service's life.
func (t *term) warnOnce(svc *corev1.Service, key, id, reason, msg string) {
	if t.warnedOnce[key][id] {
		return
	}
	if t.warnedOnce[key] == nil {
		t.warnedOnce[key] = map[string]bool{}
	}
	t.warnedOnce[key][id] = true
	t.c.events.post(svc, corev1.EventTypeWarning, reason, "", "%s", msg)
}

// forgetWarnings drops what was said about a Service that is gone or no
// longer calico-lb's: a term lives for weeks, through millions of them.
func (t *term) forgetWarnings(key string) {
	delete(t.warned, key)
	delete(t.warnedOnce, key)
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
			t.written[w.key] = wrote{sentRV: w.svc.ResourceVersion, ingress: w.svc.Status.LoadBalancer.Ingress}
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

func uniq(s [2]string) []string {
	if s[1] == "" || s[1] == s[0] {
		return []string{s[0]}
	}
	return s[:]
}

// call runs fn on the allocation loop and returns its result, or an error
// when no term is running or the loop does not answer in time.
func (c *Controller) call(ctx context.Context, fn func(*term) any) (any, error) {
	t := c.term.Load()
	if t == nil {
		return nil, errNotLeader
	}
	done := make(chan any, 1)
	select {
	case t.api <- apiCall{fn: fn, done: done}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(5 * time.Second):
		return nil, errors.New("the allocation loop did not answer within 5 s")
	}
	select {
	case v := <-done:
		return v, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

var errNotLeader = errors.New("this instance is not the leader")
