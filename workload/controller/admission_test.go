package controller

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/calico-lb/calico-lb/tests/cluster"
)

// documentedPolicy is the admission policy docs/security.md ships, with
// the model and pool filled in.
func documentedPolicy(t *testing.T, model, pool string) (*admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding) {
	t.Helper()
	data, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	i := strings.Index(doc, "<!-- TestExternalIPsAdmissionPolicy")
	if i < 0 {
		t.Fatal("docs/security.md has no admission policy marked for this test")
	}
	start := strings.Index(doc[i:], "```yaml\n") + i + len("```yaml\n")
	end := strings.Index(doc[start:], "```") + start
	var lines []string
	for _, l := range strings.Split(doc[start:end], "\n") {
		lines = append(lines, strings.TrimPrefix(l, "  ")) // the list item's indent
	}
	body := strings.NewReplacer("MODEL", model, "POOL-CIDR", pool).Replace(strings.Join(lines, "\n"))
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(body)), 4096)
	var p admissionv1.ValidatingAdmissionPolicy
	var b admissionv1.ValidatingAdmissionPolicyBinding
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("the policy: %v\n%s", err, body)
	}
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("the binding: %v", err)
	}
	return &p, &b
}

// TestExternalIPsAdmissionPolicy applies the policy docs/security.md
// ships on the real apiserver: a tenant allowed to write Services cannot
// add an external IP inside the pools (another Service's VIP), may add one
// outside them, and may edit a Service that already carries one;
// calico-lb's controller account may add one (its mirror).
func TestExternalIPsAdmissionPolicy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const pool = "10.80.3.0/24"
	p, b := documentedPolicy(t, e.ns, pool)
	p.Name, b.Name, b.Spec.PolicyName = e.ns+"-ext", e.ns+"-ext", e.ns+"-ext"
	// Only this test's namespace: other tests share the apiserver.
	b.Spec.MatchResources = &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": e.ns}}}
	adm := e.client.AdmissionregistrationV1()
	if _, err := adm.ValidatingAdmissionPolicies().Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adm.ValidatingAdmissionPolicies().Delete(context.Background(), p.Name, metav1.DeleteOptions{})
	})
	if _, err := adm.ValidatingAdmissionPolicyBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = adm.ValidatingAdmissionPolicyBindings().Delete(context.Background(), b.Name, metav1.DeleteOptions{})
	})

	// A tenant that may write Services in the namespace.
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "tenant", Namespace: e.ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "create", "update"}}}}
	if _, err := e.client.RbacV1().Roles(e.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "tenant", Namespace: e.ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "tenant"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "tenant"}}}
	if _, err := e.client.RbacV1().RoleBindings(e.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(e.cl.Config(cluster.UserAdmin))
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "tenant"}
	tenant, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc := func(name string, ips ...string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}, ExternalIPs: ips}}
	}
	// The policy takes a moment to reach the admission chain, and the
	// tenant's Role to reach the authorizer.
	var err2 error
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err2 = tenant.CoreV1().Services(e.ns).Create(ctx, svc("thief", "10.80.3.7"), metav1.CreateOptions{})
		if (err2 != nil && !strings.Contains(err2.Error(), `User "tenant" cannot`)) || time.Now().After(deadline) {
			break
		}
		if err2 != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		_ = e.client.CoreV1().Services(e.ns).Delete(ctx, "thief", metav1.DeleteOptions{})
		time.Sleep(200 * time.Millisecond)
	}
	if err2 == nil || !strings.Contains(err2.Error(), "10.80.3.7 are inside calico-lb's pools") {
		t.Fatalf("a tenant added a pool address to externalIPs: %v", err2)
	}
	if _, err := tenant.CoreV1().Services(e.ns).Create(ctx, svc("outside", "198.51.100.9"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("an external IP outside the pools: %v", err)
	}
	// calico-lb's controller mirrors an IP; its tenant then edits the
	// Service without touching it.
	ctl := e.controllerClient()
	if _, err := e.client.CoreV1().Services(e.ns).Create(ctx, svc("mirrored"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mirrored, err := ctl.CoreV1().Services(e.ns).Get(ctx, "mirrored", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mirrored.Spec.ExternalIPs = []string{"10.80.3.8"}
	if _, err = ctl.CoreV1().Services(e.ns).Update(ctx, mirrored, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("calico-lb's controller may not mirror: %v", err)
	}
	mine, err := tenant.CoreV1().Services(e.ns).Get(ctx, "mirrored", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mine.Labels = map[string]string{"team": "web"}
	if _, err := tenant.CoreV1().Services(e.ns).Update(ctx, mine, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("the tenant may not edit its Service that carries calico-lb's mirror: %v", err)
	}
	mine.Spec.ExternalIPs = append(mine.Spec.ExternalIPs, "10.80.3.9")
	if _, err := tenant.CoreV1().Services(e.ns).Update(ctx, mine, metav1.UpdateOptions{}); err == nil {
		t.Fatal("the tenant added a second pool address to a Service that had one")
	}
}
