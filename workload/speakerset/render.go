package speakerset

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/pebblelayer"
	"github.com/calico-lb/calico-lb/workload/rock"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// spec is what the speakers' objects are rendered from, besides the
// config: rendering is pure, so that a test reads the DaemonSet the
// controller would apply without an apiserver.
// DaemonSet is the speakers' DaemonSet in ns for cfg, running image, with
// their status API on port.
func DaemonSet(ns string, image Image, port int, cfg *config.Config) (*appsv1.DaemonSet, error) {
	return spec{ns: ns, image: image, port: port}.daemonSet(cfg, speakerLabels())
}

// speakerLabels select the speakers' pods and label what is theirs.
func speakerLabels() map[string]string {
	return map[string]string{"app.kubernetes.io/name": access.SpeakerName}
}

type spec struct {
	ns    string
	image Image
	port  int // the speakers' status port
}

// SpeakerResources are the speaker container's requests and limits, from
// the speaker measured in its pod on a real node (docs/benchmarks.md):
// 80 MiB announcing 10,000 routes, about 6 KiB a Service, and 185 MiB with
// the spine sending it 80,000 routes besides its own back, near the
// max-prefixes default; 2 CPU-seconds in all. The memory limit is twice
// the worst a router may push it to within max-prefixes. There is no CPU
// limit: throttling would delay BFD and keepalives past their deadlines
// and turn a busy moment into a failover.
var SpeakerResources = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
	Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("384Mi")},
}

// SpeakerCommand starts the speaker pods: the image's Pebble, where the
// image has it.
var SpeakerCommand = []string{rock.Pebble, "enter", "--create-dirs", "--verbose"}

const (
	speakerPebbleDir = "/var/lib/pebble/speaker"
	speakerLayerKey  = "pebble-layer.yaml"
	// speakerLayerHashKey, on the pod template, is a digest of the layer.
	speakerLayerHashKey = "calico-lb.io/speaker-layer"
	// speakerHoldFile is in the pod's Pebble volume, which outlasts the
	// speaker process the failover test kills.
	speakerHoldFile = speakerPebbleDir + "/failover-hold"
	// SpeakerService and SpeakerCheck name the speaker in its Pebble layer.
	SpeakerService = "speaker"
	SpeakerCheck   = "speaker-ready"
)

// SpeakerLayer is the speaker pods' Pebble layer: the speaker, restarted
// by Pebble when its /readyz fails three times in a row. A speaker is
// ready once its caches synced, it has a valid config and it has seen its
// own Node; it stays ready through an apiserver outage (the caches keep
// their last state), so this never restarts a speaker, and withdraws its
// routes, merely because the apiserver is away.
func SpeakerLayer(port int, ns string) pebblelayer.Layer {
	return pebblelayer.Layer{
		Summary: "calico-lb speaker",
		Services: map[string]pebblelayer.Service{SpeakerService: {
			Override: "replace",
			Summary:  "calico-lb speaker: announces this node's Service IPs (BGP or ARP/NDP)",
			Command: fmt.Sprintf("%s speaker --config %s --namespace %s --configmap %s --secret %s --api-address :%d --hold-file %s --controller-account %s/%s",
				config.DefaultBinary, config.DefaultPath, ns, access.SpeakerConfigName, access.SpeakerSecretName, port, speakerHoldFile, ns, access.ControllerAccount),
			Startup: "enabled", OnCheckFailure: map[string]string{SpeakerCheck: "restart"}, BackoffLimit: "10s",
		}},
		Checks: map[string]pebblelayer.Check{SpeakerCheck: {
			Override: "replace", Level: "ready", Period: "10s", Timeout: "3s", Threshold: 3,
			HTTP: pebblelayer.HTTPCheck{URL: fmt.Sprintf("http://127.0.0.1:%d/readyz", port)},
		}},
	}
}

// daemonSet is the speakers' DaemonSet: the controller's image, host
// network; in spine mode no capability and the image's unprivileged user
// (BGP dials out; BFD listens on UDP 3784, above the privileged ports),
// in l2 mode NET_RAW only (ARP/NDP), as uid 0, since Kubernetes cannot
// give a capability to a non-root process (no ambient capabilities) and
// file capabilities would need privilege escalation on. It does not depend on
// the config's pools, peers or passwords, nor on the Secret: the speakers
// read those through the API, so that changing them rolls no pod (a roll
// resets every BGP session and moves every L2 owner).
func (s spec) daemonSet(cfg *config.Config, sel map[string]string) (*appsv1.DaemonSet, error) {
	affinity, err := nodeAffinity(cfg.Speakers.NodeSelector)
	if err != nil {
		return nil, err
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: access.Meta(s.ns, access.SpeakerName, sel),
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: sel},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec: corev1.PodSpec{
					ServiceAccountName:            access.SpeakerName,
					ImagePullSecrets:              s.image.PullSecrets,
					HostNetwork:                   true,
					DNSPolicy:                     corev1.DNSClusterFirstWithHostNet,
					Affinity:                      affinity,
					TerminationGracePeriodSeconds: ptr(int64(10)),
					// A node-level daemon: on control-plane nodes too, and
					// (the DaemonSet controller adds these) through node
					// pressure and not-ready conditions; not on nodes an
					// operator tainted to keep workloads off.
					Tolerations: []corev1.Toleration{
						{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
						{Key: "node-role.kubernetes.io/master", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
					},
					Containers: []corev1.Container{s.container(cfg.Mode)},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: access.SpeakerConfigName}}}},
						{Name: "pebble", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
	// The layer is mounted by SubPath, which never updates in place: a
	// new layer (another port, say) needs new pods, so its digest is in
	// the template. Nothing secret is in it.
	layer, err := SpeakerLayer(s.port, s.ns).Render()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(layer)
	ds.Spec.Template.Annotations = map[string]string{speakerLayerHashKey: hex.EncodeToString(sum[:8])}
	return ds, nil
}

// container is the speaker container of the DaemonSet's pods.
func (s spec) container(mode config.Mode) corev1.Container {
	return corev1.Container{
		Name:            "speaker",
		Image:           s.image.Image,
		ImagePullPolicy: s.image.PullPolicy,
		// The image's entrypoint is Pebble (the rock convention);
		// it runs and health-checks the speaker from the layer
		// in the ConfigMap, as the charm's Pebble does for the
		// controller. --verbose puts the speaker's own output
		// on Pebble's stdout, which is what `kubectl logs`
		// shows; without it only Pebble's lines appear.
		Command: SpeakerCommand,
		// Declared so that the scheduler knows the node port
		// is taken, and Prometheus can find it.
		Ports: []corev1.ContainerPort{{Name: "status", ContainerPort: int32(s.port), HostPort: int32(s.port), Protocol: corev1.ProtocolTCP}},
		Env: []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "PEBBLE", Value: speakerPebbleDir},
			// The status API listens on the node's address only.
			{Name: "NODE_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
			// Go collects harder as it nears the limit rather
			// than being killed at it.
			{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
				Resource: "limits.memory", Divisor: resource.MustParse("1")}}}},
		Resources: SpeakerResources,
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/readyz", Port: intstr.FromInt32(int32(s.port))}}, PeriodSeconds: 5},
		SecurityContext: speakerSecurity(mode),
		VolumeMounts: []corev1.VolumeMount{
			// Pebble's state is written; the root file system is not.
			{Name: "pebble", MountPath: speakerPebbleDir},
			{Name: "config", MountPath: speakerPebbleDir + "/layers/001-speaker.yaml", SubPath: speakerLayerKey, ReadOnly: true},
		},
	}
}

// speakerSecurity is the speaker container's security context: see
// daemonSet for why it differs between spine and l2 mode.
func speakerSecurity(mode config.Mode) *corev1.SecurityContext {
	sc := &corev1.SecurityContext{
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		RunAsUser:                ptr(int64(rock.UID)),
		RunAsGroup:               ptr(int64(rock.UID)),
		RunAsNonRoot:             ptr(true),
		AllowPrivilegeEscalation: ptr(false),
		ReadOnlyRootFilesystem:   ptr(true),
	}
	if mode == config.ModeL2 {
		sc.Capabilities.Add = []corev1.Capability{"NET_RAW"}
		sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot = nil, nil, nil
	}
	return sc
}

func ptr[T any](v T) *T { return &v }

// nodeAffinity turns a label selector into required node affinity (a plain
// nodeSelector cannot say "in", "notin" or "exists").
func nodeAffinity(selector string) (*corev1.Affinity, error) {
	if selector == "" {
		return nil, nil
	}
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("speaker-node-selector: %w", err)
	}
	reqs, _ := sel.Requirements()
	var exprs []corev1.NodeSelectorRequirement
	for _, r := range reqs {
		op := map[selection.Operator]corev1.NodeSelectorOperator{
			selection.Equals: corev1.NodeSelectorOpIn, selection.DoubleEquals: corev1.NodeSelectorOpIn, selection.In: corev1.NodeSelectorOpIn,
			selection.NotEquals: corev1.NodeSelectorOpNotIn, selection.NotIn: corev1.NodeSelectorOpNotIn,
			selection.Exists: corev1.NodeSelectorOpExists, selection.DoesNotExist: corev1.NodeSelectorOpDoesNotExist,
			selection.GreaterThan: corev1.NodeSelectorOpGt, selection.LessThan: corev1.NodeSelectorOpLt,
		}[r.Operator()]
		exprs = append(exprs, corev1.NodeSelectorRequirement{Key: r.Key(), Operator: op, Values: r.ValuesUnsorted()})
	}
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: exprs}},
	}}}, nil
}
