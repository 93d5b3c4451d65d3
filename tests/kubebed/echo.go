package kubebed

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/calico-lb/calico-lb/tests/images"
	"github.com/calico-lb/calico-lb/tests/netns"
)

// EchoPort is the port the test application's Services expose.
const EchoPort = 80

// App describes a test application and its Service.
type App struct {
	NS, Name string
	Replicas int
	Policy   corev1.ServiceExternalTrafficPolicy // default Cluster
	Families []corev1.IPFamily                   // default the cluster's (IPv4)
	// DualStack asks for both families (RequireDualStack).
	DualStack bool
	Nodes     []string // the pods only on these nodes
}

// Echo deploys the test application as a Deployment of a.Replicas pods
// behind a LoadBalancer Service of the same name, and waits until the
// pods are ready. The EndpointSlices are the real EndpointSlice
// controller's.
func (b *Bed) Echo(ctx context.Context, a App) (*corev1.Service, error) {
	ns, name, nodes := a.NS, a.Name, a.Nodes
	if _, err := b.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		if _, err := b.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	labels := map[string]string{"app": name}
	spec := corev1.PodSpec{
		// Pods of a node that fails go elsewhere within seconds.
		Tolerations: []corev1.Toleration{
			{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(2))},
			{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(2))},
		},
		TerminationGracePeriodSeconds: ptr(int64(1)),
		Containers: []corev1.Container{{
			Name: "echo", Image: b.Image(images.Echo),
			Env:            []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
			Ports:          []corev1.ContainerPort{{ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
		}},
	}
	if len(nodes) > 0 {
		spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: nodes}}}}}}}
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(a.Replicas)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}},
	}
	if _, err := b.Kube.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: labels, ExternalTrafficPolicy: a.Policy, IPFamilies: a.Families,
			Ports: []corev1.ServicePort{{Port: EchoPort, TargetPort: intstr.FromInt32(8080)}}},
	}
	if a.DualStack {
		svc.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyRequireDualStack)
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	}
	svc, err := b.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return svc, b.WaitReady(ctx, ns, name, a.Replicas, 3*time.Minute)
}

// WaitReady waits until Deployment ns/name has want ready pods.
func (b *Bed) WaitReady(ctx context.Context, ns, name string, want int, limit time.Duration) error {
	var last string
	if _, err := netns.WaitFor(ctx, limit, func() bool {
		d, err := b.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprintf("%d/%d ready", d.Status.ReadyReplicas, want)
		return int(d.Status.ReadyReplicas) == want && d.Status.UpdatedReplicas == int32(want)
	}); err != nil {
		return fmt.Errorf("deployment %s/%s: %s", ns, name, last)
	}
	return nil
}
