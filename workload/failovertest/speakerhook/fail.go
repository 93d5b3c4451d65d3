package speakerhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/workload/api"
)

// serveFail is POST /v1/fail: hold the speaker down until the body's
// time, then stop (gracefully, withdrawing first, or as a crash). It
// answers before it stops, with the time on this node's clock.
func (h *Hook) serveFail(w http.ResponseWriter, r *http.Request) {
	var req api.SpeakerFail
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		http.Error(w, "the body is not a fail request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !req.Until.After(time.Now()) || time.Until(req.Until) > time.Hour {
		http.Error(w, "until: want a time within the next hour, when the hold ends by itself", http.StatusBadRequest)
		return
	}
	if err := h.underTest(r.Context(), req); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if err := h.hold.Set(req.Until); err != nil {
		http.Error(w, err.Error(), http.StatusNotImplemented)
		return
	}
	how := "crash"
	if req.Graceful {
		how = "graceful"
	}
	h.opts.Log.Warn("the failover test stops this speaker", "how", how, "until", req.Until)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(api.SpeakerFailed{At: time.Now(), Node: h.opts.NodeName})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if req.Graceful {
		h.stopOnce.Do(func() { close(h.stop) })
		return
	}
	h.opts.Crash()
}

// markSlack is how far past its node's mark a fail request may hold the
// speaker: the controller writes both from one clock, a moment apart.
const markSlack = 5 * time.Second

// underTest checks that this node carries the mark of the failover test
// req names, for at least as long as req holds the speaker: a request
// taken on the wire cannot stop a speaker outside the test it was for.
// It reads the Node from the apiserver, not the cache, which may not have
// the mark the controller wrote a moment ago.
func (h *Hook) underTest(ctx context.Context, req api.SpeakerFail) error {
	if req.Test == "" {
		return errors.New("test: the failover test's id is needed")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := h.opts.Client.CoreV1().Nodes().Get(ctx, h.opts.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("cannot read node %s for the failover test's mark: %w", h.opts.NodeName, err)
	}
	return checkMark(n.Annotations[api.FailoverMarkAnnotation], req, time.Now())
}

// checkMark judges a node's failover mark (the annotation's value) against
// a fail request at now.
func checkMark(value string, req api.SpeakerFail, now time.Time) error {
	if value == "" {
		return fmt.Errorf("this node carries no failover test's mark (%s): the controller marks the node it tests first", api.FailoverMarkAnnotation)
	}
	var m api.FailoverMark
	if err := json.Unmarshal([]byte(value), &m); err != nil {
		return fmt.Errorf("this node's failover mark is unreadable: %w", err)
	}
	switch {
	case m.ID != req.Test:
		return fmt.Errorf("this node is marked for failover test %s, not %s", m.ID, req.Test)
	case !now.Before(m.Until):
		return fmt.Errorf("failover test %s's mark on this node ended at %s", m.ID, m.Until.UTC().Format(time.RFC3339))
	case req.Until.After(m.Until.Add(markSlack)):
		return fmt.Errorf("until: %s is past failover test %s's mark on this node (%s)", req.Until.UTC().Format(time.RFC3339), m.ID, m.Until.UTC().Format(time.RFC3339))
	}
	return nil
}

// serveResume is POST /v1/resume: end the hold, so that the speaker
// (waiting in Run, or started again by Pebble) starts announcing.
func (h *Hook) serveResume(w http.ResponseWriter, _ *http.Request) {
	if err := h.hold.Clear(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}
