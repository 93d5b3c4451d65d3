package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/calico-lb/calico-lb/workload/allocator"
	"github.com/calico-lb/calico-lb/workload/config"
)

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

// apiCall is work another goroutine hands the allocation loop (inLoop).
type apiCall struct {
	fn func(*term)
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
	start := time.Now()
	n, outside := t.adoptAll()
	t.alloc.ResumeAfterHighest()
	t.c.log.Info("adopted existing assignments", "services", n, "outside-pools", outside, "took", time.Since(start).Round(time.Microsecond))
	if outside > 0 {
		t.holdBack(t.active, nil)
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); t.c.speakers.Run(ctx, t.speakerCfg) }()
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
	// The one shutdown: the queue (which ends the feeder above), then the
	// writers, once they have drained what they were given.
	defer func() {
		t.queue.ShutDown()
		close(t.writes)
		wg.Wait()
	}()
	publish := time.NewTicker(figuresEvery)
	defer publish.Stop()
	t.publish()
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
		case <-t.c.passwordsChanged:
			t.speakersChanged()
		case call := <-t.api:
			call.fn(t)
		case <-publish.C:
			t.publish()
		}
	}
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
		t.deleted(key, sk)
		return
	}
	if err != nil {
		return
	}
	t.flagForeignExternalIPs(svc, key)
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
	t.moveEvicted(svc)
	if aerr != nil {
		t.refused(svc, key, aerr)
	} else {
		t.allocated(svc, key, req, before, asg)
	}
	t.trackPending(svc, sk)
	handedOff = t.sync(key, svc, asg.List())
}

// deleted forgets a Service that is gone, and frees its addresses.
func (t *term) deleted(key string, sk allocator.ServiceKey) {
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
}

// refused records and reports why the allocator refused the Service.
func (t *term) refused(svc *corev1.Service, key string, aerr error) {
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
}

// allocated records an answer: an Event when the addresses changed, and
// why a sharing key joined nothing, if it did not.
func (t *term) allocated(svc *corev1.Service, key string, req Request, before, asg allocator.Assignment) {
	delete(t.warned, key)
	delete(t.waiting, key)
	if asg.IPs == before.IPs {
		return
	}
	t.c.metrics.allocations.WithLabelValues("allocated").Inc()
	t.c.events.post(svc, corev1.EventTypeNormal, "IPAllocated", "", "Assigned %s from pool %s", joinIPs(asg.List()), strings.Join(uniq(asg.Pools()), ","))
	if misses := t.alloc.SharingMisses(&req.Request, asg); len(misses) > 0 {
		t.c.events.post(svc, corev1.EventTypeWarning, "SharingNotPossible", "", "allow-shared-ip %q: joined no address shared under the key, so %s is this Service's own: %s",
			req.SharingKey, joinIPs(asg.List()), strings.Join(misses, "; "))
	}
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
			return t.send(write{key: key, svc: out})
		}
	}
	if svc.Annotations[AnnotationMirrored] != "" {
		if out, changed := mirror(svc, nil, false); changed {
			return t.send(write{key: key, svc: out, spec: true})
		}
	}
	return false
}

// retryWaiting requeues the Services waiting for addresses.
func (t *term) retryWaiting() {
	for key := range t.waiting {
		t.queue.Add(key)
	}
}

func uniq(s [2]string) []string {
	if s[1] == "" || s[1] == s[0] {
		return []string{s[0]}
	}
	return s[:]
}

var errNotLeader = errors.New("this instance is not the leader")

// speakersChanged passes the config in force to the speakers' Keeper (the
// latest replaces one not yet taken).
func (t *term) speakersChanged() {
	select {
	case <-t.speakerCfg:
	default:
	}
	t.speakerCfg <- t.active
}
