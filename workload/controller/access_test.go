package controller

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/calico-lb/calico-lb/tests/cluster"
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
	speakerRole := SpeakerName + "-" + e.ns
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
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControllerAccount, Namespace: e.ns}}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"grant Secrets through the speakers' ClusterRole it keeps", func(c kubernetes.Interface) error {
			_, err := c.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: speakerRole},
				Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"touch another ClusterRole", func(c kubernetes.Interface) error {
			return c.RbacV1().ClusterRoles().Delete(ctx, "cluster-admin", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{"issue a token for the speakers' ServiceAccount", func(c kubernetes.Interface) error {
			if _, err := e.client.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: SpeakerName}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("setup: %w", err)
			}
			_, err := c.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, SpeakerName, &authnv1.TokenRequest{}, metav1.CreateOptions{})
			return err
		}},
	}
	own := e.controllerClient()
	for _, a := range attacks {
		if err := a.do(e.client); err != nil {
			t.Errorf("%s: the admin token (what --trust gives the pod) was refused too, so this proves nothing: %v", a.what, err)
		}
		if err := a.do(own); !apierrors.IsForbidden(err) {
			t.Errorf("%s: the controller's own account got %v, want Forbidden", a.what, err)
		}
	}
}

// The controller's token is the current ServiceAccount's and is renewed
// at half-life, by the charm's `calico-lb access` and by the controller
// with its own token.
func TestControllerTokenRenewed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := Access{Namespace: e.ns}
	f := TokenFile{Path: filepath.Join(t.TempDir(), "sub", "token")}
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
	if err := e.client.CoreV1().ServiceAccounts(e.ns).Delete(ctx, ControllerAccount, metav1.DeleteOptions{}); err != nil {
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

func TestTokenFreshness(t *testing.T) {
	jwt := func(payload string) string {
		return "e30." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
	}
	dir := t.TempDir()
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		name, token, uid string
		fresh            bool
	}{
		{"young", jwt(fmt.Sprintf(`{"iat":%d,"exp":%d,"kubernetes.io":{"serviceaccount":{"uid":"u1"}}}`, now.Unix()-100, now.Unix()+3500)), "u1", true},
		{"any account", jwt(fmt.Sprintf(`{"iat":%d,"exp":%d}`, now.Unix()-100, now.Unix()+3500)), "", true},
		{"past half-life", jwt(fmt.Sprintf(`{"iat":%d,"exp":%d}`, now.Unix()-1900, now.Unix()+1700)), "", false},
		{"another account", jwt(fmt.Sprintf(`{"iat":%d,"exp":%d,"kubernetes.io":{"serviceaccount":{"uid":"u0"}}}`, now.Unix()-100, now.Unix()+3500)), "u1", false},
		{"no lifetime", jwt(`{}`), "", false},
		{"garbage", "not a token", "", false},
		{"bad base64", "a.!!!.c", "", false},
	}
	for _, c := range cases {
		f := TokenFile{Path: filepath.Join(dir, c.name)}
		if err := os.WriteFile(f.Path, []byte(c.token), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := f.Fresh(now, c.uid); got != c.fresh {
			t.Errorf("%s: fresh = %v, want %v", c.name, got, c.fresh)
		}
	}
	if (TokenFile{Path: filepath.Join(dir, "missing")}).Fresh(now, "") {
		t.Error("a missing file is fresh")
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
