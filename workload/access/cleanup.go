package access

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Cleanup deletes what calico-lb created in a's namespace: the speaker
// DaemonSet with its ServiceAccount, RBAC, ConfigMap and Secret, the
// leader-election Lease, and the controller's own ServiceAccount, RBAC
// and fence Service.
// The charm runs it (`calico-lb cleanup`) when the application is removed,
// so nothing is left behind. Objects already gone are not errors.
func Cleanup(ctx context.Context, client kubernetes.Interface, a Access) error {
	// The controllers' account goes first: its tokens die with it, so a
	// standby still running in another unit (it takes the Lease the
	// moment this unit's controller stops) cannot put back what the
	// next steps delete.
	if err := a.removeControllerAccount(ctx, client); err != nil {
		return fmt.Errorf("remove the controller's ServiceAccount and RBAC: %w", err)
	}
	if err := client.AppsV1().DaemonSets(a.Namespace).Delete(ctx, SpeakerName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove the speakers' DaemonSet: %w", err)
	}
	if err := a.removeSpeakerAccess(ctx, client); err != nil {
		return fmt.Errorf("remove the speakers' ServiceAccount, RBAC, ConfigMap and Secret: %w", err)
	}
	if err := client.CoordinationV1().Leases(a.Namespace).Delete(ctx, a.lease(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove Lease %s/%s: %w", a.Namespace, a.lease(), err)
	}
	return nil
}
