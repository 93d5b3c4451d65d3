package failovertest

import (
	"context"
	"fmt"
	"time"

	"github.com/calico-lb/calico-lb/workload/access"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// takeFailoverLease creates the test's Lease for run id, for d; one whose
// time is up (its controller died) is taken over. It says who holds it
// when it cannot.
func (c *Runner) takeFailoverLease(ctx context.Context, id string, d time.Duration) (string, error) {
	leases := c.opts.Client.CoordinationV1().Leases(c.opts.Namespace)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(d / time.Second)
	holder := c.opts.Identity + " " + id
	want := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: access.FailoverLeaseName, Namespace: c.opts.Namespace},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now}}
	for range 3 {
		_, err := leases.Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			return "", nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return "", fmt.Errorf("the failover test's Lease: %w", err)
		}
		have, err := leases.Get(ctx, access.FailoverLeaseName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // released meanwhile
		}
		if err != nil {
			return "", fmt.Errorf("the failover test's Lease: %w", err)
		}
		if !leaseExpired(have, time.Now()) {
			who := "another controller"
			if have.Spec.HolderIdentity != nil {
				who = *have.Spec.HolderIdentity
			}
			return fmt.Sprintf("a failover test (%s) holds the Lease %s/%s: one at a time", who, c.opts.Namespace, access.FailoverLeaseName), nil
		}
		// Its controller died mid-test: take it, unless someone else did.
		rv := have.ResourceVersion
		if err := leases.Delete(ctx, access.FailoverLeaseName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return "", fmt.Errorf("the failover test's expired Lease: %w", err)
		}
	}
	return "another controller is taking the failover test's Lease: try again", nil
}

// releaseFailoverLease gives the test's Lease up, if run id still holds it.
func (c *Runner) releaseFailoverLease(ctx context.Context, id string) error {
	leases := c.opts.Client.CoordinationV1().Leases(c.opts.Namespace)
	have, err := leases.Get(ctx, access.FailoverLeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if have.Spec.HolderIdentity == nil || *have.Spec.HolderIdentity != c.opts.Identity+" "+id {
		return nil
	}
	rv := have.ResourceVersion
	if err := leases.Delete(ctx, access.FailoverLeaseName, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return err
	}
	return nil
}

func leaseExpired(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return true
	}
	return now.After(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// Underway says whether a failover test of a's controllers runs
// (it holds the test's Lease) or a node carries a test's mark.
func Underway(ctx context.Context, client kubernetes.Interface, a access.Access) (bool, error) {
	l, err := client.CoordinationV1().Leases(a.Namespace).Get(ctx, access.FailoverLeaseName, metav1.GetOptions{})
	switch {
	case err == nil && !leaseExpired(l, time.Now()):
		return true, nil
	case err != nil && !apierrors.IsNotFound(err):
		return false, fmt.Errorf("the failover test's Lease: %w", err)
	}
	marks, err := nodeMarks(ctx, client)
	return len(marks) > 0, err
}
