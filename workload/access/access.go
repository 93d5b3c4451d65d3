// Package access is what calico-lb's parts may do in Kubernetes, and the
// credentials they do it with: the controller's ServiceAccount, roles and
// token file (renewed before half its life), the speakers' account and the
// admission policy that holds their DaemonSet to its shape, the failover
// test's powers (bound only while a test runs), the local API's key, the
// names of every object calico-lb keeps in its namespace, and Cleanup,
// which removes them all.
package access

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/workload/kubeapply"
)

// ControllerAccount is the ServiceAccount the controller runs as. The
// charm creates it with the pod's own credentials (cluster-admin under
// `juju deploy --trust`), so that the controller, which parses tenants'
// Services and listens on the pod network, holds only what it uses.
const ControllerAccount = "calico-lb-controller"

// Access names the controller's ServiceAccount and RBAC in one namespace
// (the model's): the Lease, the speakers and their Secret live there.
type Access struct {
	Namespace string
	LeaseName string // default DefaultLeaseName
}

func (a Access) lease() string {
	if a.LeaseName == "" {
		return DefaultLeaseName
	}
	return a.LeaseName
}

// clusterRole names the cluster-wide role; it carries the namespace, as
// speakerRoleName does.
func (a Access) clusterRole() string { return ControllerAccount + "-" + a.Namespace }

var (
	core      = []string{""}
	readVerbs = []string{"get", "list", "watch"}
	// Create cannot be limited to names (the object does not exist yet),
	// so each kind it creates has one rule to create and one to touch the
	// named objects.
	keepVerbs = []string{"get", "update", "delete"}
)

// ClusterRules is what the controller does across the cluster: it watches
// and writes Services (status, and spec.externalIPs when mirroring), reads
// the EndpointSlices and Nodes it reports on, records Events on the
// Services and lists Calico's IPPools (verify). It grants nothing: the
// speakers' RBAC is Ensure's. The failover test's powers are FailoverRules,
// bound only while a test runs (Failover).
func (a Access) ClusterRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: core, Resources: []string{"services"}, Verbs: append(slices.Clone(readVerbs), "update")},
		{APIGroups: core, Resources: []string{"services/status"}, Verbs: []string{"update"}},
		{APIGroups: core, Resources: []string{"nodes"}, Verbs: readVerbs},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: readVerbs},
		{APIGroups: core, Resources: []string{"events"}, Verbs: []string{"create"}},
		// verify's calico-ipam check: which Calico IPPools overlap the
		// pools (both API groups Calico serves them under).
		{APIGroups: []string{"crd.projectcalico.org", "projectcalico.org"}, Resources: []string{"ippools"}, Verbs: []string{"list"}},
	}
}

// FailoverRules are the failover test's powers: cordon, uncordon and its
// mark; the Service's pods on the node (mode=pod); the drain (mode=node).
// Ensure keeps them in a ClusterRole of their own, which Failover binds to
// the controller only while a test runs or its mark remains on a node.
func FailoverRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: core, Resources: []string{"nodes"}, Verbs: []string{"patch"}},
		{APIGroups: core, Resources: []string{"pods"}, Verbs: []string{"list", "delete"}},
		{APIGroups: core, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}},
	}
}

// failoverRole names the failover test's ClusterRole and its binding.
func (a Access) failoverRole() string { return ControllerAccount + "-failover-" + a.Namespace }

// Failover binds FailoverRules to the controller (grant) or removes the
// binding. The charm grants them when the failover-test action starts,
// and on every hook removes them unless a node still carries a test's mark
// (failovertest.Underway): the test, or the restore after a controller died in
// one, needs them until then.
func (a Access) Failover(ctx context.Context, client kubernetes.Interface, grant bool) error {
	name := a.failoverRole()
	if !grant {
		return kubeapply.Delete(func() error { return client.RbacV1().ClusterRoleBindings().Delete(ctx, name, deleteOpts) })
	}
	b := &rbacv1.ClusterRoleBinding{ObjectMeta: Meta("", name, map[string]string{"app.kubernetes.io/name": ControllerAccount}),
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControllerAccount, Namespace: a.Namespace}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}}
	if err := kubeapply.Apply(ctx, client.RbacV1().ClusterRoleBindings(), b, func(have, want *rbacv1.ClusterRoleBinding) { have.Subjects = want.Subjects }); err != nil {
		return fmt.Errorf("ClusterRoleBinding %s: %w", name, err)
	}
	return nil
}

// NamespaceRules is what the controller does in its own namespace: leader
// election, the speakers' DaemonSet (held to the speakers' shape by
// speakerGuard), filling their ConfigMap and Secret (which Ensure
// creates), finding its own pod's image and the speakers' pods, and
// renewing its own token. It creates no ServiceAccount, Secret or role.
func (a Access) NamespaceRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "update"}, ResourceNames: []string{a.lease()}},
		// One failover test at a time, across units (takeFailoverLease).
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "delete"}, ResourceNames: []string{FailoverLeaseName}},
		{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, Verbs: []string{"create"}},
		{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, Verbs: keepVerbs, ResourceNames: []string{SpeakerName}},
		{APIGroups: core, Resources: []string{"configmaps"}, Verbs: []string{"get", "update"}, ResourceNames: []string{SpeakerConfigName}},
		{APIGroups: core, Resources: []string{"secrets"}, Verbs: []string{"get", "update"}, ResourceNames: []string{SpeakerSecretName}},
		{APIGroups: core, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		{APIGroups: core, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}, ResourceNames: []string{ControllerAccount}},
	}
}

// Ensure creates or updates the controller's ServiceAccount, its roles and
// their bindings, and what the speakers run as and read
// (ensureSpeakerAccess). It needs the rights it grants (the apiserver
// refuses to grant more than the caller holds): the charm runs it with the
// pod's own token under `--trust`.
func (a Access) Ensure(ctx context.Context, client kubernetes.Interface) error {
	l := map[string]string{"app.kubernetes.io/name": ControllerAccount}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: ControllerAccount, Namespace: a.Namespace}}
	steps := []accessStep{
		{"ServiceAccount " + ControllerAccount, func() error {
			return kubeapply.Apply(ctx, client.CoreV1().ServiceAccounts(a.Namespace), &corev1.ServiceAccount{ObjectMeta: Meta(a.Namespace, ControllerAccount, l)}, nil)
		}},
		{"ClusterRole " + a.clusterRole(), func() error {
			r := &rbacv1.ClusterRole{ObjectMeta: Meta("", a.clusterRole(), l), Rules: a.ClusterRules()}
			return kubeapply.Apply(ctx, client.RbacV1().ClusterRoles(), r, func(have, want *rbacv1.ClusterRole) { have.Rules = want.Rules })
		}},
		{"ClusterRoleBinding " + a.clusterRole(), func() error {
			b := &rbacv1.ClusterRoleBinding{ObjectMeta: Meta("", a.clusterRole(), l), Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: a.clusterRole()}}
			return kubeapply.Apply(ctx, client.RbacV1().ClusterRoleBindings(), b, func(have, want *rbacv1.ClusterRoleBinding) { have.Subjects = want.Subjects })
		}},
		{"Role " + ControllerAccount, func() error {
			r := &rbacv1.Role{ObjectMeta: Meta(a.Namespace, ControllerAccount, l), Rules: a.NamespaceRules()}
			return kubeapply.Apply(ctx, client.RbacV1().Roles(a.Namespace), r, func(have, want *rbacv1.Role) { have.Rules = want.Rules })
		}},
		{"ClusterRole " + a.failoverRole(), func() error {
			r := &rbacv1.ClusterRole{ObjectMeta: Meta("", a.failoverRole(), l), Rules: FailoverRules()}
			return kubeapply.Apply(ctx, client.RbacV1().ClusterRoles(), r, func(have, want *rbacv1.ClusterRole) { have.Rules = want.Rules })
		}},
		{"Service " + FenceName, func() error {
			return kubeapply.Apply(ctx, client.CoreV1().Services(a.Namespace), FenceService(a.Namespace), nil)
		}},
		{"RoleBinding " + ControllerAccount, func() error {
			b := &rbacv1.RoleBinding{ObjectMeta: Meta(a.Namespace, ControllerAccount, l), Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: ControllerAccount}}
			return kubeapply.Apply(ctx, client.RbacV1().RoleBindings(a.Namespace), b, func(have, want *rbacv1.RoleBinding) { have.Subjects = want.Subjects })
		}},
	}
	for _, s := range append(steps, a.ensureSpeakerAccess(ctx, client)...) {
		if err := s.do(); err != nil {
			return fmt.Errorf("%s in %s: %w", s.what, a.Namespace, err)
		}
	}
	return nil
}

var deleteOpts = metav1.DeleteOptions{}

// Remove deletes what Ensure created: the controller's account first (its
// tokens die with it), then the speakers'.
func (a Access) Remove(ctx context.Context, client kubernetes.Interface) error {
	if err := a.removeControllerAccount(ctx, client); err != nil {
		return err
	}
	return a.removeSpeakerAccess(ctx, client)
}

func (a Access) removeControllerAccount(ctx context.Context, client kubernetes.Interface) error {
	return kubeapply.Delete(
		func() error {
			return client.RbacV1().RoleBindings(a.Namespace).Delete(ctx, ControllerAccount, deleteOpts)
		},
		func() error { return client.RbacV1().Roles(a.Namespace).Delete(ctx, ControllerAccount, deleteOpts) },
		func() error { return client.RbacV1().ClusterRoleBindings().Delete(ctx, a.failoverRole(), deleteOpts) },
		func() error { return client.RbacV1().ClusterRoles().Delete(ctx, a.failoverRole(), deleteOpts) },
		func() error { return client.RbacV1().ClusterRoleBindings().Delete(ctx, a.clusterRole(), deleteOpts) },
		func() error { return client.RbacV1().ClusterRoles().Delete(ctx, a.clusterRole(), deleteOpts) },
		func() error {
			return client.CoreV1().ServiceAccounts(a.Namespace).Delete(ctx, ControllerAccount, deleteOpts)
		},
		func() error { return client.CoreV1().Services(a.Namespace).Delete(ctx, FenceName, deleteOpts) },
	)
}

// Grant is what the charm runs on every hook (`calico-lb access`): the
// ServiceAccount and RBAC as they should be, and a token in f that is
// the current ServiceAccount's (a re-created one invalidates the old
// tokens) with more than half its life left.
func (a Access) Grant(ctx context.Context, client kubernetes.Interface, f TokenFile, ttl time.Duration) error {
	if err := a.Ensure(ctx, client); err != nil {
		return err
	}
	sa, err := client.CoreV1().ServiceAccounts(a.Namespace).Get(ctx, ControllerAccount, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("ServiceAccount %s/%s: %w", a.Namespace, ControllerAccount, err)
	}
	if f.Fresh(time.Now(), string(sa.UID)) {
		return nil
	}
	return f.Renew(ctx, client, a, ttl)
}
