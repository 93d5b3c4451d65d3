package speaker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/failovertest/speakerhook"
)

// tokenIs accepts one token: the logic of the API, apart from how a
// token is checked (TokenReviews, tested against a real apiserver).
type tokenIs string

func (t tokenIs) Check(_ context.Context, token string) error {
	if token != string(t) {
		return errors.New("not the token")
	}
	return nil
}

// TestFailAPI: POST /v1/fail wants the controller, a bounded time and its
// node's failover mark for the test it names, holds the speaker down and
// then crashes it (or, gracefully, ends Run); /readyz and /v1/bgp say it
// is held; POST /v1/resume ends the hold.
func TestFailAPI(t *testing.T) {
	dir := t.TempDir()
	until := time.Now().Add(time.Minute)
	m, _ := json.Marshal(api.FailoverMark{ID: "t1", Service: "shop/web", Until: until})
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Annotations: map[string]string{api.FailoverMarkAnnotation: string(m)}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node2"}})
	crashes := make(chan struct{}, 4)
	test := speakerhook.New(speakerhook.Options{Client: client, NodeName: "node1", HoldFile: filepath.Join(dir, "hold"), Crash: func() { crashes <- struct{}{} }})
	sp := NewSpeaker(Options{Client: client, NodeName: "node1", Callers: tokenIs("s3cret"), Test: test})
	// The answer goes out before the crash, so count after the call returns
	// (the handler has finished by the time a second request is served).
	crashed := 0
	count := func() int {
		for {
			select {
			case <-crashes:
				crashed++
			case <-time.After(50 * time.Millisecond):
				return crashed
			}
		}
	}
	srv := httptest.NewServer(sp.Handler())
	defer srv.Close()
	post := func(path, token string, body any) *http.Response {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(b))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tok := range []string{"", "s3cret-not"} {
		if r := post("/v1/fail", tok, api.SpeakerFail{Until: until, Test: "t1"}); r.StatusCode != http.StatusUnauthorized || count() != 0 {
			t.Fatalf("with token %q: %d, crashed %d", tok, r.StatusCode, crashed)
		}
	}
	for _, bad := range []time.Time{{}, time.Now().Add(-time.Second), time.Now().Add(2 * time.Hour)} {
		if r := post("/v1/fail", "s3cret", api.SpeakerFail{Until: bad, Test: "t1"}); r.StatusCode != http.StatusBadRequest || count() != 0 {
			t.Fatalf("until %v: %d, crashed %d", bad, r.StatusCode, crashed)
		}
	}
	// The controller's token, but not for the test that marked the node,
	// or past its mark: refused.
	for _, bad := range []api.SpeakerFail{{Until: until}, {Until: until, Test: "t0"}, {Until: until.Add(10 * time.Second), Test: "t1"}} {
		if r := post("/v1/fail", "s3cret", bad); r.StatusCode != http.StatusForbidden || count() != 0 {
			t.Fatalf("%+v: %d, crashed %d", bad, r.StatusCode, crashed)
		}
	}
	if r := post("/v1/fail", "s3cret", api.SpeakerFail{Until: until, Test: "t1"}); r.StatusCode != http.StatusAccepted || count() != 1 {
		t.Fatalf("fail: %d, crashed %d", r.StatusCode, crashed)
	}
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while held: %d", resp.StatusCode)
	}
	if st := sp.status(); st.Error == "" {
		t.Fatal("/v1/bgp does not say the speaker is held down")
	}
	if r := post("/v1/resume", "s3cret", nil); r.StatusCode != http.StatusOK || !test.HeldUntil(time.Now()).IsZero() {
		t.Fatalf("resume: %d, held until %v", r.StatusCode, test.HeldUntil(time.Now()))
	}

	// Graceful: Run withdraws and returns ErrStopped; no crash.
	if r := post("/v1/fail", "s3cret", api.SpeakerFail{Until: until, Graceful: true, Test: "t1"}); r.StatusCode != http.StatusAccepted || count() != 1 {
		t.Fatalf("graceful fail: %d, crashed %d", r.StatusCode, crashed)
	}
	select {
	case <-test.Stopped():
	default:
		t.Fatal("a graceful fail did not stop Run")
	}
	// A second graceful fail must not panic on the closed channel.
	if r := post("/v1/fail", "s3cret", api.SpeakerFail{Until: until, Graceful: true, Test: "t1"}); r.StatusCode != http.StatusAccepted {
		t.Fatalf("second graceful fail: %d", r.StatusCode)
	}
}

// TestRunWaitsWhileHeld: a speaker started while held announces nothing
// (it does not even start its informers) until the hold is cleared.
func TestRunWaitsWhileHeld(t *testing.T) {
	h := speakerhook.Hold{Path: filepath.Join(t.TempDir(), "hold")}
	if err := h.Set(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	test := speakerhook.New(speakerhook.Options{Client: client, NodeName: "node1", HoldFile: h.Path})
	sp := NewSpeaker(Options{Client: client, NodeName: "node1", ConfigPath: filepath.Join(t.TempDir(), "none"), Test: test})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.Run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	sp.mu.Lock()
	synced := sp.synced
	sp.mu.Unlock()
	if synced || len(client.Actions()) != 0 {
		t.Fatalf("a held speaker started: synced %v, %d API calls", synced, len(client.Actions()))
	}
	if err := h.Clear(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !synced && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		sp.mu.Lock()
		synced = sp.synced
		sp.mu.Unlock()
	}
	if !synced {
		t.Fatal("the speaker did not start after the hold was cleared")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, e := range test.Since(time.Time{}, netip.Addr{}).Events {
		kinds[e.Kind] = true
	}
	if !kinds["held"] || !kinds["resumed"] {
		t.Fatalf("journal: %v", kinds)
	}
}
