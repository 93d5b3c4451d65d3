package failovertest

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// failover-test mode=node drains a node only when nothing is lost for
// good, unless force=true: a bare pod is never recreated and an emptyDir's
// data goes with its pod.
func TestEvictionRisks(t *testing.T) {
	yes := true
	owned := []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-1", Controller: &yes}}
	pods := []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1-abc", OwnerReferences: owned}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "tools", Name: "debug"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cache-1-xyz", OwnerReferences: owned},
			Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}},
	}
	got := strings.Join(evictionRisks(pods), "; ")
	want := "pod tools/debug, which no controller recreates; the emptyDir scratch of pod shop/cache-1-xyz"
	if got != want {
		t.Fatalf("risks %q, want %q", got, want)
	}
	if r := evictionRisks(pods[:1]); len(r) != 0 {
		t.Fatalf("a Deployment's pod without emptyDir is a risk: %v", r)
	}
}
