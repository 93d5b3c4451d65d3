package controller

import (
	"context"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/speaker"
	"github.com/calico-lb/calico-lb/workload/speakerclient"
)

// The tokens the controller presents to speakers, against a real
// apiserver: node1's speaker accepts the one minted for node1; node2's
// refuses it (a token taken on the wire to one node, or on it, acts on
// no other); the apiserver refuses it (it is no credential for the API);
// and the speakers refuse tokens of any other account, and the
// controller's own API token, which has the apiserver's audience.
func TestSpeakerTokensBoundToNode(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	own := e.controllerClient()
	tok, err := speakerclient.NewTokens(own, e.ns).ForNode(ctx, "node1")
	if err != nil {
		t.Fatal(err)
	}
	account := e.ns + "/" + access.ControllerAccount
	// The speakers ask with their own account, which holds tokenreviews
	// create only because access.SpeakerRules grants it.
	reviewer := e.speakerClient()
	node1, err := speaker.NewTokenReviews(reviewer, "node1", account)
	if err != nil {
		t.Fatal(err)
	}
	node2, _ := speaker.NewTokenReviews(reviewer, "node2", account)
	if err := node1.Check(ctx, tok); err != nil {
		t.Fatalf("node1's speaker refused the controller's token for node1: %v", err)
	}
	if err := node2.Check(ctx, tok); err == nil {
		t.Fatal("node2's speaker accepted the token minted for node1")
	}
	cfg := rest.AnonymousClientConfig(e.cl.Config(cluster.UserAdmin))
	cfg.BearerToken = tok
	if _, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Services(e.ns).List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Fatalf("the apiserver took the speaker token as a credential: %v", err)
	}
	// Another account's token for node1's audience (the speakers' own,
	// which root on any node can read).
	other, err := e.client.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, access.SpeakerName, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{api.SpeakerAudience("node1")}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := node1.Check(ctx, other.Status.Token); err == nil {
		t.Fatal("node1's speaker accepted the speakers' own account's token")
	}
	// The controller's API token (the apiserver's audience).
	apiTok, err := e.client.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, access.ControllerAccount, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := node1.Check(ctx, apiTok.Status.Token); err == nil {
		t.Fatal("node1's speaker accepted the controller's token for the apiserver")
	}
}

// speakerClient is a client with the speakers' ServiceAccount and rules
// (access.SpeakerRules), bound here by the admin.
func (e *env) speakerClient() kubernetes.Interface {
	e.t.Helper()
	ctx := context.Background()
	name := access.SpeakerName + "-" + e.ns
	if _, err := e.client.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: access.SpeakerName}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: access.SpeakerRules()}
	if _, err := e.client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	b := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: access.SpeakerName, Namespace: e.ns}}}
	if _, err := e.client.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = e.client.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = e.client.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	tr, err := e.client.CoreV1().ServiceAccounts(e.ns).CreateToken(ctx, access.SpeakerName, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(e.cl.Config(cluster.UserAdmin))
	cfg.BearerToken = tr.Status.Token
	return kubernetes.NewForConfigOrDie(cfg)
}
