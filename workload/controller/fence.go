package controller

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/workload/access"
)

// AnnotationFence on the fence Service is the token of the last term that
// started.
const AnnotationFence = "calico-lb.io/fence"

// fence makes sure the Service cache holds every Service write made before
// this term began, the last leader's included: one write to the fence
// Service, then a wait until the cache shows it. A watch delivers in
// order, so every earlier Service write is in the cache by then. Without
// it, a standby that leads a fraction of a second after the leader died
// (leadership.Prober) or released the Lease could adopt from a cache that
// misses the last addresses the leader wrote, and hand them out again.
func (c *Controller) fence(ctx context.Context) error {
	svcs := c.opts.Client.CoreV1().Services(c.opts.LeaseNamespace)
	token := fmt.Sprintf("%s %d", c.opts.Identity, time.Now().UnixNano())
	svc, err := svcs.Get(ctx, access.FenceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// `calico-lb access` creates it; a controller run without it
		// (an admin's kubeconfig) creates its own.
		svc, err = svcs.Create(ctx, access.FenceService(c.opts.LeaseNamespace), metav1.CreateOptions{FieldManager: c.opts.Identity})
	}
	if err != nil {
		return fmt.Errorf("read the fence Service %s/%s: %w", c.opts.LeaseNamespace, access.FenceName, err)
	}
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	svc.Annotations[AnnotationFence] = token
	if _, err := svcs.Update(ctx, svc, metav1.UpdateOptions{FieldManager: c.opts.Identity}); err != nil {
		return fmt.Errorf("write the fence Service %s/%s: %w", c.opts.LeaseNamespace, access.FenceName, err)
	}
	for {
		if got, err := c.services.Services(c.opts.LeaseNamespace).Get(access.FenceName); err == nil && got.Annotations[AnnotationFence] == token {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the fence Service's write has not shown in the cache: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// fenceOrWait fences the cache, giving it at most a Lease's length; if
// that fails, it waits out the rest of the Lease's length from its start,
// what a new leader had to wait before there was a fence, so that an
// apiserver that does not answer delays a term by that much and no more.
func (c *Controller) fenceOrWait(ctx context.Context) {
	start := time.Now()
	fctx, cancel := context.WithTimeout(ctx, c.opts.LeaseDuration)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.fence(fctx) }()
	var err error
	select {
	case err = <-done:
	case <-fctx.Done(): // a client that ignores its context still ends the wait
		err = fctx.Err()
	}
	if err == nil {
		return
	}
	c.log.Warn("cannot fence the Service cache: waiting a Lease's length before adopting", "error", err)
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(start.Add(c.opts.LeaseDuration))):
	}
}
