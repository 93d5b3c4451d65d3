package failovertest

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The watcher of abandoned failover tests outlives API errors: the node a
// crashed controller's test cordoned is uncordoned once the apiserver
// answers again. It used to stop at the first error, for good.
func TestAbandonedFailoverWatchRetries(t *testing.T) {
	m, _ := json.Marshal(mark{ID: "t1", Service: "shop/web", Until: time.Now().Add(-time.Minute), Cordoned: true})
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Annotations: map[string]string{failoverMark: string(m)}},
		Spec: corev1.NodeSpec{Unschedulable: true}}
	client := fake.NewClientset(node)
	var lists atomic.Int32
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		if lists.Add(1) <= 2 {
			return true, nil, errors.New("the server is currently unable to handle the request")
		}
		return false, nil, nil
	})
	c := New(Options{Client: client, Namespace: "lb"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); c.WatchAbandoned(ctx) }()
	restored := func() bool {
		n, err := client.CoreV1().Nodes().Get(ctx, "node1", metav1.GetOptions{})
		return err == nil && !n.Spec.Unschedulable && n.Annotations[failoverMark] == ""
	}
	for !restored() {
		select {
		case <-done:
			if restored() {
				break
			}
			t.Fatalf("the watcher gave up after %d node lists; node1 still cordoned and marked", lists.Load())
		case <-ctx.Done():
			t.Fatalf("node1 still cordoned and marked after %d node lists", lists.Load())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if n := lists.Load(); n < 3 {
		t.Fatalf("restored after %d lists, want the third (two failed)", n)
	}
}
