package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/speakerset"
)

// What a compromised controller could do with the token it runs with.
// Under `--trust` the pod's token is cluster-admin, and every one of these
// succeeds with it; with the controller's own ServiceAccount every one is
// refused, while the controller's whole test suite runs with that same
// account (env.controllerClient).
func TestControllerAccountCannotEscalate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	victim := e.ns + "-victim"
	if _, err := e.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: victim}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.client.CoreV1().Namespaces().Delete(context.Background(), victim, metav1.DeleteOptions{})
	})
	for _, ns := range []string{victim, e.ns} {
		if _, err := e.client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "database"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	speakerRole := access.SpeakerName + "-" + e.ns
	attacks := []struct {
		what string
		do   func(c kubernetes.Interface) error
	}{
		{"read a Secret in another namespace", func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Secrets(victim).Get(ctx, "database", metav1.GetOptions{})
			return err
		}},
		{"read another Secret in its own namespace", func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Secrets(e.ns).Get(ctx, "database", metav1.GetOptions{})
			return err
		}},
		{"list Secrets in its own namespace", func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Secrets(e.ns).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"run a Pod", func(c kubernetes.Interface) error {
			// Admission wants the namespace's default ServiceAccount.
			if _, err := e.client.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("setup: %w", err)
			}
			_, err := c.CoreV1().Pods(e.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "shell"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sh", Image: "busybox"}}}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"bind itself to cluster-admin", func(c kubernetes.Interface) error {
			_, err := c.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-admin"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: access.ControllerAccount, Namespace: e.ns}}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"grant Secrets through the speakers' ClusterRole", func(c kubernetes.Interface) error {
			r, err := e.client.RbacV1().ClusterRoles().Get(ctx, speakerRole, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			r.Rules = append(r.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}})
			_, err = c.RbacV1().ClusterRoles().Update(ctx, r, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"touch another ClusterRole", func(c kubernetes.Interface) error {
			return c.RbacV1().ClusterRoles().Delete(ctx, "cluster-admin", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{"run a pod as another ServiceAccount through the speakers' DaemonSet", func(c kubernetes.Interface) error {
			ds := guardProbe(e.ns, "default", nil)
			_, err := c.AppsV1().DaemonSets(e.ns).Create(ctx, ds, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"mount another Secret into the speakers' DaemonSet", func(c kubernetes.Interface) error {
			ds := guardProbe(e.ns, access.SpeakerName, []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "database"}}}})
			_, err := c.AppsV1().DaemonSets(e.ns).Create(ctx, ds, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"give the speakers SYS_ADMIN", func(c kubernetes.Interface) error {
			ds := guardProbe(e.ns, access.SpeakerName, nil)
			ds.Spec.Template.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}
			_, err := c.AppsV1().DaemonSets(e.ns).Create(ctx, ds, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"mint a token Secret for another ServiceAccount", func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Secrets(e.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "minted",
				Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}}, Type: corev1.SecretTypeServiceAccountToken}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"delete the speakers' Secret (to make it again as a token Secret)", func(c kubernetes.Interface) error {
			return c.CoreV1().Secrets(e.ns).Delete(ctx, access.SpeakerSecretName, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{"bind the speakers' ClusterRole to another account", func(c kubernetes.Interface) error {
			b, err := e.client.RbacV1().ClusterRoleBindings().Get(ctx, speakerRole, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			b.Subjects = append(b.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: "default", Namespace: victim})
			_, err = c.RbacV1().ClusterRoleBindings().Update(ctx, b, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"create a ServiceAccount", func(c kubernetes.Interface) error {
			_, err := c.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "another"}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"issue a token for the speakers' ServiceAccount", func(c kubernetes.Interface) error {
			if _, err := e.client.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: access.SpeakerName}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("setup: %w", err)
			}
			_, err := c.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, access.SpeakerName, &authnv1.TokenRequest{}, metav1.CreateOptions{})
			return err
		}},
	}
	own := e.controllerClient()
	// The admission policy takes a moment to be enforced after Ensure
	// made it: wait until it refuses the first DaemonSet attack.
	for _, a := range attacks {
		if strings.HasPrefix(a.what, "run a pod as another ServiceAccount") {
			_, _ = netns.WaitFor(ctx, 10*time.Second, func() bool { return apierrors.IsForbidden(a.do(own)) })
		}
	}
	for _, a := range attacks {
		if err := a.do(e.client); err != nil {
			t.Errorf("%s: the admin token (what --trust gives the pod) was refused too, so this proves nothing: %v", a.what, err)
		}
		if err := a.do(own); !apierrors.IsForbidden(err) {
			t.Errorf("%s: the controller's own account got %v, want Forbidden", a.what, err)
		}
	}
	// The speakers' own DaemonSet passes the policy.
	ds, err := speakerset.DaemonSet(e.ns, speakerset.Image{Image: "calico-lb:test"}, 9403, &config.Config{Mode: config.ModeL2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.AppsV1().DaemonSets(e.ns).Create(ctx, ds, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("the speakers' own DaemonSet was refused: %v", err)
	}
}

// guardProbe is a DaemonSet named as the speakers' with the given
// ServiceAccount and volumes: what an attack through it would write.
func guardProbe(ns, account string, volumes []corev1.Volume) *appsv1.DaemonSet {
	l := map[string]string{"app": "probe"}
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: access.SpeakerName, Namespace: ns},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: l}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: l},
			Spec: corev1.PodSpec{ServiceAccountName: account, Volumes: volumes,
				Containers: []corev1.Container{{Name: "sh", Image: "busybox"}}}}}}
}

// The controller's token is the current ServiceAccount's and is renewed
// at half-life, by the charm's `calico-lb access` and by the controller
// with its own token.
func TestControllerTokenRenewed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := access.Access{Namespace: e.ns}
	f := access.TokenFile{Path: filepath.Join(t.TempDir(), "sub", "token")}
	if err := a.Grant(ctx, e.client, f, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Remove(context.Background(), e.client) })
	first := readFile(t, f.Path)
	if fi, err := os.Stat(f.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", fi, err)
	}
	if !f.Fresh(time.Now(), "") || f.Fresh(time.Now().Add(6*time.Minute), "") {
		t.Fatal("a 10-minute token should be fresh now and stale after 6 minutes")
	}
	// Nothing to do while it is fresh.
	if err := a.Grant(ctx, e.client, f, 10*time.Minute); err != nil || readFile(t, f.Path) != first {
		t.Fatalf("a fresh token was replaced (%v)", err)
	}
	// A re-created ServiceAccount invalidates the old tokens: Grant issues
	// one for the new account.
	if err := e.client.CoreV1().ServiceAccounts(e.ns).Delete(ctx, access.ControllerAccount, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.Grant(ctx, e.client, f, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	second := readFile(t, f.Path)
	if second == first {
		t.Fatal("the token of the deleted ServiceAccount was kept")
	}
	// The controller renews its own token with that token.
	cfg := rest.AnonymousClientConfig(e.cl.Config(cluster.UserAdmin))
	cfg.BearerTokenFile = f.Path
	own := kubernetes.NewForConfigOrDie(cfg)
	if err := f.Renew(ctx, own, a, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if readFile(t, f.Path) == second {
		t.Fatal("Renew left the token as it was")
	}
	if _, err := own.CoreV1().Services("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("the renewed token does not work: %v", err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
