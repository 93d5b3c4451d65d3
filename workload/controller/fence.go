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

// fenceWait bounds the wait for the fence to show in the cache.
const fenceWait = 10 * time.Second

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
	deadline := time.Now().Add(fenceWait)
	for {
		if got, err := c.services.Services(c.opts.LeaseNamespace).Get(access.FenceName); err == nil && got.Annotations[AnnotationFence] == token {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the fence Service's write did not show in the cache within %s", fenceWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}
