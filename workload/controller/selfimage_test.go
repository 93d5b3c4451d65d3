package controller

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/api"
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

// The first blocker found by running calico-lb as Juju runs it: with no
// image the speakers were silently not deployed and the unit said active.
// Now the local API says why, for the unit's status, and nothing is made.
func TestNoSpeakerImageIsReported(t *testing.T) {
	e := newEnv(t)
	e.config(spineCfg)
	r := e.start("a")
	var snap api.Snapshot
	waitUntil(t, "the snapshot says the speakers have no image", func() bool {
		_, body := httpGet(t, r, "/v1/allocations")
		snap = api.Snapshot{}
		return json.Unmarshal([]byte(body), &snap) == nil && snap.SpeakersError != ""
	})
	if !strings.Contains(snap.SpeakersError, "POD_NAME") || !strings.Contains(snap.SpeakersError, "--speaker-image") {
		t.Fatalf("speakersError %q does not say how to fix it", snap.SpeakersError)
	}
	if _, err := e.client.AppsV1().DaemonSets(e.ns).Get(context.Background(), access.SpeakerName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a DaemonSet without an image was made: %v", err)
	}

	// calico mode needs no speakers, so no image either.
	e.config("mode: calico\npools:\n  p: {addresses: [10.96.200.0/28]}\n")
	waitUntil(t, "the error clears in calico mode", func() bool {
		_, body := httpGet(t, r, "/v1/allocations")
		snap = api.Snapshot{}
		return json.Unmarshal([]byte(body), &snap) == nil && snap.Mode == "calico" && snap.SpeakersError == ""
	})
}

// Reading the Pod: not allowed without --trust, or not there; each error
// names the fix.
func TestPodImageErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, err := podImage(ctx, e.cl.Client(cluster.UserNobody), e.ns, "calico-lb-0", DefaultContainer)
	if err == nil || !strings.Contains(err.Error(), "--trust") {
		t.Fatalf("forbidden: %v", err)
	}
	_, err = podImage(ctx, e.client, e.ns, "calico-lb-9", DefaultContainer)
	if err == nil || !strings.Contains(err.Error(), "calico-lb-9") {
		t.Fatalf("missing pod: %v", err)
	}
}
