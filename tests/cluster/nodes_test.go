package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/images"
	"github.com/calico-lb/calico-lb/tests/netns"
)

// TestRealNodes runs two real nodes (containerd, kubelet, kube-proxy in
// their own namespaces) against the control plane with its
// controller-manager and scheduler: a Deployment of the test application,
// pulled from the test registry, is scheduled on them, and a client in its
// own namespace reaches it through kube-proxy at a NodePort.
func TestRealNodes(t *testing.T) {
	cluster.RequireNodes(t)
	nb := netns.NewT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	var spaces []string
	for _, r := range []string{"node1", "node2", "client"} {
		ns, err := nb.NS(r)
		if err != nil {
			t.Fatal(err)
		}
		spaces = append(spaces, ns)
	}
	mgmt, err := nb.Management(216, spaces...)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []cluster.NodeOptions{}
	for i := range 2 {
		nodes = append(nodes, cluster.NodeOptions{Name: fmt.Sprint("node", i+1), NetNS: spaces[i],
			IP: netns.ManagementAddr(216, i), PodCIDR: podRange(216, i+1)})
	}
	if err := cluster.RouteNodes(nodes, mgmt); err != nil {
		t.Fatal(err)
	}
	reg, err := cluster.StartRegistry(net.JoinHostPort(mgmt, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	built := time.Now()
	imgs, err := images.Build(cluster.Root())
	if err != nil {
		t.Fatal(err)
	}
	for name, img := range imgs {
		if err := reg.Push(ctx, name, img); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("images built and pushed in %s", time.Since(built).Round(time.Millisecond))

	c, err := cluster.Start(ctx, cluster.Options{BindAddress: mgmt, Nodes: []string{"node1", "node2"}, Log: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	cpReady := time.Now()
	for _, o := range nodes {
		o.Registry = reg.Host
		if _, err := c.StartNode(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("bed up in %s: control plane, then both nodes Ready %s later", time.Since(start).Round(time.Millisecond), time.Since(cpReady).Round(time.Millisecond))

	kube := c.Client(cluster.UserAdmin)
	labels := map[string]string{"app": "echo"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "echo", Image: reg.Ref(images.Echo),
					Env:            []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
					Ports:          []corev1.ContainerPort{{ContainerPort: 8080}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
				}}},
			},
		},
	}
	applied := time.Now()
	if _, err := kube.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: labels,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	if svc, err = kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := netns.WaitFor(ctx, 3*time.Minute, func() bool {
		d, err := kube.AppsV1().Deployments("default").Get(ctx, "echo", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 2
	}); err != nil {
		pods, _ := kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		for _, p := range pods.Items {
			t.Logf("pod %s on %q: %s %+v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.ContainerStatuses)
		}
		t.Fatalf("the echo Deployment is not ready: %v", err)
	}
	t.Logf("Deployment of 2 ready %s after it was applied", time.Since(applied).Round(time.Millisecond))

	// The client, outside the cluster, reaches both pods through
	// kube-proxy on either node, once kube-proxy has programmed the ready
	// endpoints (its rules follow the EndpointSlices within a second or so).
	client := netns.HTTPClient(spaces[2], 2*time.Second)
	for _, o := range nodes {
		url := "http://" + net.JoinHostPort(o.IP, strconv.Itoa(int(svc.Spec.Ports[0].NodePort))) + "/"
		seen := map[string]bool{}
		var last string
		took, err := netns.WaitFor(ctx, 30*time.Second, func() bool {
			resp, err := client.Get(url)
			if err != nil {
				last = err.Error()
				return false
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var a struct{ Client, Pod, Node string }
			if err := json.Unmarshal(body, &a); err != nil || a.Pod == "" {
				last = fmt.Sprintf("%q (%v)", body, err)
				return false
			}
			seen[a.Pod] = true
			return len(seen) == 2
		})
		if err != nil {
			t.Fatalf("%s: answers from %v, want both pods (last: %s)", url, seen, last)
		}
		t.Logf("%s: both pods answered within %s of the Deployment being ready", url, took.Round(time.Millisecond))
	}
	cp, perNode := c.Memory()
	var total uint64
	var parts []string
	for _, m := range []map[string]uint64{cp, perNode} {
		for name, b := range m {
			total += b
			parts = append(parts, fmt.Sprintf("%s %d MiB", name, b>>20))
		}
	}
	sort.Strings(parts)
	t.Logf("memory (RSS): %d MiB in all: %s", total>>20, strings.Join(parts, ", "))
	if perNode["node1"] == 0 || cp["kube-apiserver"] == 0 {
		t.Fatalf("memory not measured: %v %v", cp, perNode)
	}
}

func ptr[T any](v T) *T { return &v }
