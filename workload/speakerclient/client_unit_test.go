package speakerclient

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A hostile speaker (root on one node) answers the controller with a 307
// to the controller's own local API, which renumbers a Service on POST
// /v1/reallocate: the controller's speaker client does not follow it.
func TestSpeakerClientFollowsNoRedirect(t *testing.T) {
	var reallocated atomic.Int32
	local := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reallocated.Add(1) }))
	defer local.Close()
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, local.URL+"/v1/reallocate?service=shop/web", http.StatusTemporaryRedirect)
	}))
	defer hostile.Close()
	host, port, _ := net.SplitHostPort(hostile.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	sc := New(fake.NewClientset(), "lb", p)
	pod := &corev1.Pod{Status: corev1.PodStatus{PodIP: host}, Spec: corev1.PodSpec{NodeName: "node1"}}
	var v map[string]any
	if err := sc.Get(context.Background(), pod, "/v1/bgp", &v); err == nil {
		t.Fatal("a redirect was taken for an answer")
	}
	if err := sc.Post(context.Background(), pod, "/v1/fail", map[string]any{}, nil); err == nil {
		t.Fatal("a redirect was taken for an answer")
	}
	if n := reallocated.Load(); n != 0 {
		t.Fatalf("the hostile speaker's redirect reached the local API %d times", n)
	}
}
