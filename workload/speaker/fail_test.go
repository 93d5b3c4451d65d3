package speaker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/calico-lb/calico-lb/workload/api"
)

func TestHold(t *testing.T) {
	h := Hold{Path: filepath.Join(t.TempDir(), "hold")}
	now := time.Now()
	if !h.Until(now).IsZero() {
		t.Fatal("held with no file")
	}
	until := now.Add(time.Minute).Round(time.Millisecond)
	if err := h.Set(until); err != nil {
		t.Fatal(err)
	}
	if got := h.Until(now); !got.Equal(until) {
		t.Fatalf("Until %v, want %v", got, until)
	}
	if !h.Until(until.Add(time.Second)).IsZero() {
		t.Fatal("still held after its time")
	}
	if err := os.WriteFile(h.Path, []byte("tomorrow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !h.Until(now).IsZero() {
		t.Fatal("held by a file that does not parse")
	}
	if err := h.Clear(); err != nil || !h.Until(now).IsZero() {
		t.Fatalf("Clear: %v", err)
	}
	if err := h.Clear(); err != nil {
		t.Fatalf("Clear without a file: %v", err)
	}
	if err := (Hold{}).Set(until); err == nil {
		t.Fatal("a speaker without --hold-file can be held")
	}
}

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
	sp := NewSpeaker(Options{Client: client, NodeName: "node1", Callers: tokenIs("s3cret"), HoldFile: filepath.Join(dir, "hold")})
	crashes := make(chan struct{}, 4)
	sp.crash = func() { crashes <- struct{}{} }
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
	if r := post("/v1/resume", "s3cret", nil); r.StatusCode != http.StatusOK || !sp.heldUntil().IsZero() {
		t.Fatalf("resume: %d, held until %v", r.StatusCode, sp.heldUntil())
	}

	// Graceful: Run withdraws and returns ErrStopped; no crash.
	if r := post("/v1/fail", "s3cret", api.SpeakerFail{Until: until, Graceful: true, Test: "t1"}); r.StatusCode != http.StatusAccepted || count() != 1 {
		t.Fatalf("graceful fail: %d, crashed %d", r.StatusCode, crashed)
	}
	select {
	case <-sp.fail:
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
	h := Hold{Path: filepath.Join(t.TempDir(), "hold")}
	if err := h.Set(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	sp := NewSpeaker(Options{Client: client, NodeName: "node1", ConfigPath: filepath.Join(t.TempDir(), "none"), HoldFile: h.Path})
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
	for _, e := range sp.journal.Since(time.Time{}, netip.Addr{}).Events {
		kinds[e.Kind] = true
	}
	if !kinds["held"] || !kinds["resumed"] {
		t.Fatalf("journal: %v", kinds)
	}
}

// A node without a mark, or whose mark ended, refuses (checkMark).
func TestCheckMark(t *testing.T) {
	now := time.Now()
	m, _ := json.Marshal(api.FailoverMark{ID: "t1", Until: now.Add(time.Minute)})
	ok := api.SpeakerFail{Test: "t1", Until: now.Add(time.Minute)}
	if err := checkMark(string(m), ok, now); err != nil {
		t.Fatalf("the marked node refused its test: %v", err)
	}
	for name, c := range map[string]struct {
		value string
		at    time.Time
	}{"no mark": {"", now}, "unreadable": {"{", now}, "ended": {string(m), now.Add(2 * time.Minute)}} {
		if err := checkMark(c.value, ok, c.at); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
