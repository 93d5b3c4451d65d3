package kubebed

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/fakejuju"
	"github.com/calico-lb/calico-lb/tests/images"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/workload/speakerset"
)

// Unit is calico-lb deployed as Juju deploys a sidecar charm with --trust:
// a StatefulSet in the model's namespace whose pod has the charm container
// (the real dispatch, with the hook tools faked) and the workload
// container (the calico-lb image, running Pebble as Juju runs it there),
// sharing Pebble's socket through an emptyDir as Juju mounts it; a
// ServiceAccount bound to cluster-admin, as --trust binds it. Hooks and
// actions run in the charm container through the kubelet's exec, as
// Juju's agent runs them.
type Unit struct {
	b     *Bed
	Model string // the model's namespace
	Pod   string // calico-lb-0
}

const (
	app      = "calico-lb"
	unitName = "calico-lb/0"
	// Where Juju mounts the workload container's Pebble socket directory.
	charmPebbleDir    = "/charm/containers/" + speakerset.DefaultContainer
	workloadPebbleDir = "/charm/container"
)

// Deploy deploys the unit in namespace model with config (on top of
// config.yaml's defaults, as `juju deploy --config` gives it), waits until
// both containers run, and runs the hooks Juju runs first: install,
// leader-elected, calico-lb-pebble-ready and config-changed.
func (b *Bed) Deploy(ctx context.Context, model string, config map[string]any) (*Unit, error) {
	return b.DeployWith(ctx, model, config, nil)
}

// DeployWith is Deploy with the hook tools' state changed by mod first
// (secrets, relations).
func (b *Bed) DeployWith(ctx context.Context, model string, config map[string]any, mod func(*fakejuju.State)) (*Unit, error) {
	u, err := b.create(ctx, model)
	if err != nil {
		return nil, err
	}
	st, err := u.FreshState(ctx, config)
	if err != nil {
		return nil, err
	}
	if mod != nil {
		mod(st)
	}
	if err := u.SetState(ctx, st); err != nil {
		return nil, err
	}
	for _, hook := range []string{"install", "leader-elected", "calico-lb-pebble-ready", "config-changed"} {
		if out, err := u.Hook(ctx, hook); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", hook, err, out)
		}
	}
	return u, nil
}

// FreshState is the hook tools' state of a unit just deployed with config:
// the leader, its address the pod's.
func (u *Unit) FreshState(ctx context.Context, config map[string]any) (*fakejuju.State, error) {
	cfg, err := fakejuju.DefaultConfig()
	if err != nil {
		return nil, err
	}
	maps.Copy(cfg, config)
	pod, err := u.b.Kube.CoreV1().Pods(u.Model).Get(ctx, u.Pod, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return &fakejuju.State{Config: cfg, Leader: true, Address: pod.Status.PodIP}, nil
}

// create makes the unit's objects and waits until its pod runs.
func (b *Bed) create(ctx context.Context, model string) (*Unit, error) {
	kube := b.Kube
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: model}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if _, err := kube.CoreV1().ServiceAccounts(model).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: app}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	trust := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: model + "-" + app + "-trust"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: app, Namespace: model}}}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, trust, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	labels := map[string]string{"app.kubernetes.io/name": app}
	mount := func(path string) []corev1.VolumeMount {
		return []corev1.VolumeMount{{Name: "charm-data-" + app, MountPath: path}}
	}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: model, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr(int32(1)), ServiceName: app + "-endpoints",
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: app,
					Containers: []corev1.Container{
						{Name: "charm", Image: b.Image(images.Charm),
							Env:          []corev1.EnvVar{{Name: "JUJU_UNIT_NAME", Value: unitName}, {Name: "JUJU_MODEL_NAME", Value: model}},
							VolumeMounts: mount(charmPebbleDir)},
						{Name: speakerset.DefaultContainer, Image: b.Image(images.CalicoLB),
							// Juju runs its own Pebble here, held until the charm replans.
							Command:      []string{"/usr/bin/pebble", "run", "--create-dirs", "--hold", "--verbose"},
							Env:          []corev1.EnvVar{{Name: "PEBBLE_SOCKET", Value: workloadPebbleDir + "/pebble.socket"}},
							VolumeMounts: mount(workloadPebbleDir)},
					},
					Volumes: []corev1.Volume{{Name: "charm-data-" + app, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
	if _, err := kube.AppsV1().StatefulSets(model).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	u := &Unit{b: b, Model: model, Pod: app + "-0"}
	return u, u.WaitRunning(ctx, 3*time.Minute)
}

// WaitRunning waits until the unit's pod has both containers running.
func (u *Unit) WaitRunning(ctx context.Context, limit time.Duration) error {
	var last string
	_, err := netns.WaitFor(ctx, limit, func() bool {
		pod, err := u.b.Kube.CoreV1().Pods(u.Model).Get(ctx, u.Pod, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		running := 0
		var states []string
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.State.Running != nil {
				running++
			}
			states = append(states, fmt.Sprintf("%s: %+v", cs.Name, cs.State))
		}
		last = fmt.Sprintf("%s on %q: %s", pod.Status.Phase, pod.Spec.NodeName, strings.Join(states, "; "))
		return running == 2
	})
	if err != nil {
		return fmt.Errorf("unit pod %s/%s not running: %s", u.Model, u.Pod, last)
	}
	return nil
}

// Hook runs a hook in the charm container.
func (u *Unit) Hook(ctx context.Context, name string) (string, error) {
	return u.b.Exec(ctx, u.Model, u.Pod, "charm", nil, images.UnitAgent, "hook", name)
}

// Action runs an action in the charm container and returns what it set
// (its results, or why it failed, and its log) and its output. Actions may
// run side by side, as Juju runs those marked parallel.
func (u *Unit) Action(ctx context.Context, name string, params map[string]any) (*fakejuju.Action, string, error) {
	p, err := json.Marshal(params)
	if err != nil {
		return nil, "", err
	}
	id := fakejuju.NewActionID()
	out, err := u.b.Exec(ctx, u.Model, u.Pod, "charm", nil, images.UnitAgent, "action", name, string(p), id)
	if err != nil {
		return nil, out, err
	}
	st, err := u.State(ctx)
	if err != nil {
		return nil, out, err
	}
	a := st.Actions[id]
	if a == nil {
		return nil, out, fmt.Errorf("action %s (%s) left no record in the unit's state", name, id)
	}
	return a, out, nil
}

// State reads the hook tools' state.
func (u *Unit) State(ctx context.Context) (*fakejuju.State, error) {
	out, err := u.b.Exec(ctx, u.Model, u.Pod, "charm", nil, images.UnitAgent, "state")
	if err != nil {
		return nil, err
	}
	var st fakejuju.State
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("unit state %q: %w", out, err)
	}
	return &st, nil
}

// SetState replaces the hook tools' state.
func (u *Unit) SetState(ctx context.Context, st *fakejuju.State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = u.b.Exec(ctx, u.Model, u.Pod, "charm", strings.NewReader(string(data)), images.UnitAgent, "set-state")
	return err
}

// Configure changes the charm's config and runs config-changed.
func (u *Unit) Configure(ctx context.Context, config map[string]any) (string, error) {
	st, err := u.State(ctx)
	if err != nil {
		return "", err
	}
	for k, v := range config {
		st.Config[k] = v
	}
	if err := u.SetState(ctx, st); err != nil {
		return "", err
	}
	return u.Hook(ctx, "config-changed")
}

func ptr[T any](v T) *T { return &v }
