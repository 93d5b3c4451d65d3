package controller

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/speakerset"
)

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
	_, err := speakerset.New(speakerset.Options{Client: e.cl.Client(cluster.UserNobody), Namespace: e.ns, PodName: "calico-lb-0"}).Image(ctx)
	if err == nil || !strings.Contains(err.Error(), "--trust") {
		t.Fatalf("forbidden: %v", err)
	}
	_, err = speakerset.New(speakerset.Options{Client: e.client, Namespace: e.ns, PodName: "calico-lb-9"}).Image(ctx)
	if err == nil || !strings.Contains(err.Error(), "calico-lb-9") {
		t.Fatalf("missing pod: %v", err)
	}
}
