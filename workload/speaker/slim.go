package speaker

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The speakers cache every Service, Node and EndpointSlice of the cluster.
// These transforms keep only what they read (Announcements, L2Owners,
// NodeFrom and the Node Events), before the cache stores anything: any
// tenant can put hundreds of KiB of annotations on its Services, and whole
// objects in every speaker's cache would let a few hundred of them take
// every speaker past its memory limit at once, withdrawing every VIP.

func slimMeta(m metav1.ObjectMeta, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion, Labels: labels}
}

// slimService keeps a Service's name, type, class, traffic policy and
// load-balancer status.
func slimService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil // a tombstone: its object was slimmed on its way in
	}
	return &corev1.Service{
		ObjectMeta: slimMeta(svc.ObjectMeta, nil),
		Spec: corev1.ServiceSpec{Type: svc.Spec.Type, LoadBalancerClass: svc.Spec.LoadBalancerClass,
			ExternalTrafficPolicy: svc.Spec.ExternalTrafficPolicy},
		Status: corev1.ServiceStatus{LoadBalancer: svc.Status.LoadBalancer},
	}, nil
}

// slimNode keeps a Node's name, labels (speaker-node-selector) and
// addresses: not its images, conditions or annotations.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{ObjectMeta: slimMeta(n.ObjectMeta, n.Labels), Status: corev1.NodeStatus{Addresses: n.Status.Addresses}}, nil
}

// slimEndpointSlice keeps which Service a slice is of and its endpoints'
// nodes and readiness.
func slimEndpointSlice(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	out := &discoveryv1.EndpointSlice{AddressType: es.AddressType,
		ObjectMeta: slimMeta(es.ObjectMeta, map[string]string{discoveryv1.LabelServiceName: es.Labels[discoveryv1.LabelServiceName]})}
	for _, ep := range es.Endpoints {
		out.Endpoints = append(out.Endpoints, discoveryv1.Endpoint{NodeName: ep.NodeName, Conditions: ep.Conditions})
	}
	return out, nil
}
