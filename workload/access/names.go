package access

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Names of what the controller creates for the speakers.
const (
	SpeakerName       = "calico-lb-speaker"
	SpeakerConfigName = "calico-lb-speaker-config"
	SpeakerSecretName = "calico-lb-bgp-passwords"
)

// FailoverLeaseName is the Lease a failover test holds while it runs:
// creating an object is atomic, so of two controllers (two units, or a
// leader and its successor) that start a test at once, one gets it and
// the other is refused, where the nodes' marks, read then written, would
// let both through.
const FailoverLeaseName = "calico-lb-failover-test"

// FenceName is the Service a new leader writes, and waits to see in its
// cache, before it adopts the Services' addresses (controller.fence).
const FenceName = "calico-lb-fence"

// FenceService is the fence: headless, with no selector and no ports, so
// no proxy, DNS record or load balancer serves it.
func FenceService(ns string) *corev1.Service {
	return &corev1.Service{ObjectMeta: Meta(ns, FenceName, map[string]string{"app.kubernetes.io/name": ControllerAccount}),
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: corev1.ClusterIPNone}}
}

// DefaultLeaseName is the leader-election Lease's name when none is given.
const DefaultLeaseName = "calico-lb-controller"

// SpeakerRoleName names the speakers' ClusterRole and its binding; it
// carries the namespace, so two calico-lb applications do not share one.
func SpeakerRoleName(ns string) string { return SpeakerName + "-" + ns }

// Meta is the metadata of an object calico-lb keeps: ns/name, labelled l.
func Meta(ns, name string, l map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l}
}
