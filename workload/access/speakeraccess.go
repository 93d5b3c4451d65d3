package access

import (
	"context"
	"fmt"
	"slices"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/workload/kubeapply"
)

// What the speakers run as, and the objects they read, are made by
// Access.Ensure with the charm's rights (Juju's trust), not by the
// controller: an account that may create ServiceAccounts' RBAC, Secrets
// or any DaemonSet could grant itself more, mint a token Secret for
// Juju's own ServiceAccount, or run a pod as it. The controller only
// fills the ConfigMap and Secret and keeps the DaemonSet, which an
// admission policy (speakerGuard) holds to the speakers' shape.

// speakerAccessLabels mark what Access.Ensure keeps for the speakers.
var speakerAccessLabels = map[string]string{"app.kubernetes.io/name": SpeakerName}

// ensureSpeakerAccess creates or updates the speakers' ServiceAccount and
// RBAC, and creates their ConfigMap and Secret empty when missing (the
// controller fills them).
func (a Access) ensureSpeakerAccess(ctx context.Context, client kubernetes.Interface) []accessStep {
	ns, l := a.Namespace, speakerAccessLabels
	sa := []rbacv1.Subject{{Kind: "ServiceAccount", Name: SpeakerName, Namespace: ns}}
	role := SpeakerRoleName(ns)
	return []accessStep{
		{"ServiceAccount " + SpeakerName, func() error {
			return kubeapply.Apply(ctx, client.CoreV1().ServiceAccounts(ns), &corev1.ServiceAccount{ObjectMeta: Meta(ns, SpeakerName, l)}, nil)
		}},
		{"ClusterRole " + role, func() error {
			r := &rbacv1.ClusterRole{ObjectMeta: Meta("", role, l), Rules: speakerRules}
			return kubeapply.Apply(ctx, client.RbacV1().ClusterRoles(), r, func(have, want *rbacv1.ClusterRole) { have.Rules = want.Rules })
		}},
		{"ClusterRoleBinding " + role, func() error {
			b := &rbacv1.ClusterRoleBinding{ObjectMeta: Meta("", role, l), Subjects: sa,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}}
			return kubeapply.Apply(ctx, client.RbacV1().ClusterRoleBindings(), b, func(have, want *rbacv1.ClusterRoleBinding) { have.Subjects = want.Subjects })
		}},
		{"Role " + SpeakerName, func() error {
			r := &rbacv1.Role{ObjectMeta: Meta(ns, SpeakerName, l), Rules: speakerFileRules}
			return kubeapply.Apply(ctx, client.RbacV1().Roles(ns), r, func(have, want *rbacv1.Role) { have.Rules = want.Rules })
		}},
		{"RoleBinding " + SpeakerName, func() error {
			b := &rbacv1.RoleBinding{ObjectMeta: Meta(ns, SpeakerName, l), Subjects: sa,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: SpeakerName}}
			return kubeapply.Apply(ctx, client.RbacV1().RoleBindings(ns), b, func(have, want *rbacv1.RoleBinding) { have.Subjects = want.Subjects })
		}},
		{"ConfigMap " + SpeakerConfigName, func() error {
			return kubeapply.Apply(ctx, client.CoreV1().ConfigMaps(ns), &corev1.ConfigMap{ObjectMeta: Meta(ns, SpeakerConfigName, l)}, nil)
		}},
		{"Secret " + SpeakerSecretName, func() error {
			return kubeapply.Apply(ctx, client.CoreV1().Secrets(ns), &corev1.Secret{ObjectMeta: Meta(ns, SpeakerSecretName, l), Type: corev1.SecretTypeOpaque}, nil)
		}},
		{"ValidatingAdmissionPolicy " + a.guardName(), func() error {
			p := a.speakerGuard()
			err := kubeapply.Apply(ctx, client.AdmissionregistrationV1().ValidatingAdmissionPolicies(), p, func(have, want *admissionv1.ValidatingAdmissionPolicy) { have.Spec = want.Spec })
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("this cluster serves no admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy, which guards the speakers' DaemonSet: calico-lb needs Kubernetes 1.30 or later: %w", err)
			}
			return err
		}},
		{"ValidatingAdmissionPolicyBinding " + a.guardName(), func() error {
			b := &admissionv1.ValidatingAdmissionPolicyBinding{ObjectMeta: Meta("", a.guardName(), l), Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName: a.guardName(), ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}}}
			return kubeapply.Apply(ctx, client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings(), b, func(have, want *admissionv1.ValidatingAdmissionPolicyBinding) { have.Spec = want.Spec })
		}},
	}
}

// removeSpeakerAccess deletes what ensureSpeakerAccess made, the policy
// last (what it guards is gone by then).
func (a Access) removeSpeakerAccess(ctx context.Context, client kubernetes.Interface) error {
	ns, role := a.Namespace, SpeakerRoleName(a.Namespace)
	return kubeapply.Delete(
		func() error { return client.CoreV1().Secrets(ns).Delete(ctx, SpeakerSecretName, deleteOpts) },
		func() error { return client.CoreV1().ConfigMaps(ns).Delete(ctx, SpeakerConfigName, deleteOpts) },
		func() error { return client.RbacV1().RoleBindings(ns).Delete(ctx, SpeakerName, deleteOpts) },
		func() error { return client.RbacV1().Roles(ns).Delete(ctx, SpeakerName, deleteOpts) },
		func() error { return client.RbacV1().ClusterRoleBindings().Delete(ctx, role, deleteOpts) },
		func() error { return client.RbacV1().ClusterRoles().Delete(ctx, role, deleteOpts) },
		func() error { return client.CoreV1().ServiceAccounts(ns).Delete(ctx, SpeakerName, deleteOpts) },
		func() error {
			return client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, a.guardName(), deleteOpts)
		},
		func() error {
			return client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, a.guardName(), deleteOpts)
		},
	)
}

// guardName names the speakers' admission policy and its binding; it
// carries the namespace, as the roles do.
func (a Access) guardName() string { return SpeakerName + "-" + a.Namespace }

// speakerGuard is the admission policy that holds the DaemonSets the
// controller's account writes to the speakers' shape: named
// calico-lb-speaker, running as the speakers' ServiceAccount, with no
// privileged container, no capability but NET_RAW (l2 mode), no host
// PID or IPC namespace, no init or ephemeral containers, and no volume
// but the speakers' ConfigMap and empty directories. Without it, the
// right to create and update that DaemonSet would let the account run a
// pod as any ServiceAccount of the namespace (Juju's cluster-admin one
// among them) or mount any of its Secrets.
func (a Access) speakerGuard() *admissionv1.ValidatingAdmissionPolicy {
	fail := admissionv1.Fail
	forbidden := func(expr, msg string) admissionv1.Validation {
		reason := metav1.StatusReasonForbidden
		return admissionv1.Validation{Expression: expr, Message: "calico-lb's controller may write only the speakers' DaemonSet: " + msg, Reason: &reason}
	}
	spec := "object.spec.template.spec"
	return &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: Meta("", a.guardName(), speakerAccessLabels),
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"daemonsets"}},
				}}}},
			MatchConditions: []admissionv1.MatchCondition{{Name: "calico-lb-controller",
				Expression: fmt.Sprintf("request.userInfo.username == 'system:serviceaccount:%s:%s'", a.Namespace, ControllerAccount)}},
			Validations: []admissionv1.Validation{
				forbidden(fmt.Sprintf("object.metadata.name == '%s'", SpeakerName), "named "+SpeakerName),
				forbidden(fmt.Sprintf("has(%s.serviceAccountName) && %s.serviceAccountName == '%s'", spec, spec, SpeakerName), "running as the ServiceAccount "+SpeakerName),
				forbidden(fmt.Sprintf("!has(%[1]s.hostPID) || !%[1]s.hostPID", spec), "without the host's PID namespace"),
				forbidden(fmt.Sprintf("!has(%[1]s.hostIPC) || !%[1]s.hostIPC", spec), "without the host's IPC namespace"),
				forbidden(fmt.Sprintf("!has(%[1]s.initContainers) && !has(%[1]s.ephemeralContainers)", spec), "without init or ephemeral containers"),
				forbidden(fmt.Sprintf("%s.containers.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || !c.securityContext.privileged)", spec), "with no privileged container"),
				forbidden(fmt.Sprintf("%s.containers.all(c, !has(c.securityContext) || !has(c.securityContext.capabilities) || !has(c.securityContext.capabilities.add) || c.securityContext.capabilities.add.all(x, x == 'NET_RAW'))", spec), "with no capability but NET_RAW"),
				forbidden(fmt.Sprintf("!has(%[1]s.volumes) || %[1]s.volumes.all(v, has(v.emptyDir) || (has(v.configMap) && v.configMap.name == '%[2]s'))", spec, SpeakerConfigName), "with no volume but the speakers' ConfigMap and empty directories"),
			},
		},
	}
}

// accessStep is one object Access.Ensure keeps.
type accessStep struct {
	what string
	do   func() error
}

// SpeakerRules are all the speakers may do: read Services, Nodes and
// EndpointSlices. The controller holds them too (ClusterRules), since the
// apiserver lets it grant only what it holds.
func SpeakerRules() []rbacv1.PolicyRule { return slices.Clone(speakerRules) }

var speakerRules = []rbacv1.PolicyRule{
	{APIGroups: core, Resources: []string{"services", "nodes"}, Verbs: readVerbs},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: readVerbs},
	// Events on the speaker's Node: an L2 interface it cannot answer on.
	{APIGroups: core, Resources: []string{"events"}, Verbs: []string{"create"}},
	// Asking the apiserver whose a bearer token on the status API is
	// (speaker.TokenReviews): the controller's, for this node.
	{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
}

// speakerFileRules, in the speakers' namespace only, let them watch their
// ConfigMap and Secret by name (speaker.KubeFiles): a change reaches every
// speaker within a second, with no new pods.
var speakerFileRules = []rbacv1.PolicyRule{
	{APIGroups: core, Resources: []string{"configmaps"}, Verbs: readVerbs, ResourceNames: []string{SpeakerConfigName}},
	{APIGroups: core, Resources: []string{"secrets"}, Verbs: readVerbs, ResourceNames: []string{SpeakerSecretName}},
}
