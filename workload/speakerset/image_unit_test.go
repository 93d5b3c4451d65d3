package speakerset

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// jujuPod is a unit Pod as Juju shapes a sidecar charm's: the charm
// container and the workload container, whose image is the oci-image
// resource, pulled with the secret Juju made for it.
func jujuPod(ns string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "calico-lb-0"},
		Spec: corev1.PodSpec{
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "calico-lb-calico-lb-secret"}},
			Containers: []corev1.Container{
				{Name: "charm", Image: "public.ecr.aws/juju/charm-base:ubuntu-24.04"},
				{Name: "calico-lb", Image: "registry.example:5000/calico-lb:1.2", ImagePullPolicy: corev1.PullAlways},
			},
		},
	}
}

// Under Juju nothing sets --speaker-image: the speakers get the image, pull
// policy and pull secrets of the controller's own container (read from a
// real Pod in the end-to-end tests; here from one in memory).
func TestImageOf(t *testing.T) {
	img, err := imageOf(jujuPod("lb"), DefaultContainer)
	if err != nil || img.Image != "registry.example:5000/calico-lb:1.2" || img.PullPolicy != corev1.PullAlways ||
		!slices.Equal(img.PullSecrets, []corev1.LocalObjectReference{{Name: "calico-lb-calico-lb-secret"}}) {
		t.Fatalf("%+v, %v", img, err)
	}
	_, err = imageOf(jujuPod("lb"), "workload")
	if err == nil || !strings.Contains(err.Error(), `no container "workload" (it has charm, calico-lb)`) {
		t.Fatalf("wrong container: %v", err)
	}
	p := jujuPod("lb")
	p.Spec.Containers[1].ImagePullPolicy = ""
	if img, err := imageOf(p, DefaultContainer); err != nil || img.PullPolicy != corev1.PullIfNotPresent {
		t.Fatalf("no pull policy: %+v, %v", img, err)
	}
}
