package cluster

import (
	"context"
	"os"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestControlPlane(t *testing.T) {
	c := StartT(t)
	ctx := context.Background()
	admin := c.Client(UserAdmin)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin create namespace: %v", err)
	}
	// RBAC is on: a user without bindings is refused.
	_, err := c.Client(UserNobody).CoreV1().Services("demo").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("unbound user listing services: %v, want Forbidden", err)
	}
	// Dual-stack Services work (the service CIDRs are dual).
	policy := corev1.IPFamilyPolicyRequireDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "demo"},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			IPFamilyPolicy: &policy,
			Ports:          []corev1.ServicePort{{Port: 80}},
		},
	}
	got, err := admin.CoreV1().Services("demo").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create dual-stack LoadBalancer Service: %v", err)
	}
	if len(got.Spec.ClusterIPs) != 2 {
		t.Fatalf("cluster IPs %v, want one per family", got.Spec.ClusterIPs)
	}
	// Stop cleans up: processes gone, directory removed.
	pids := []int{}
	for _, p := range c.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("work dir %s not removed: %v", c.Dir, err)
	}
}
