package speaker

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
)

// ErrStopped is what Run returns when the failover test stopped the
// speaker gracefully: it withdrew everything, and the process ends so
// that, started again, it finds itself held down.
var ErrStopped = errors.New("stopped by the failover test")

// killSelf ends the process the way a crash does: no deferred function,
// no withdrawal, no Cease to the peers; the kernel closes its sockets.
func killSelf() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }

// serveFail is POST /v1/fail: hold the speaker down until the body's
// time, then stop (gracefully, withdrawing first, or as a crash). It
// answers before it stops, with the time on this node's clock.
func (s *Speaker) serveFail(w http.ResponseWriter, r *http.Request) {
	var req api.SpeakerFail
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		http.Error(w, "the body is not a fail request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !req.Until.After(time.Now()) || time.Until(req.Until) > time.Hour {
		http.Error(w, "until: want a time within the next hour, when the hold ends by itself", http.StatusBadRequest)
		return
	}
	if err := s.hold.Set(req.Until); err != nil {
		http.Error(w, err.Error(), http.StatusNotImplemented)
		return
	}
	how := "crash"
	if req.Graceful {
		how = "graceful"
	}
	s.log.Warn("the failover test stops this speaker", "how", how, "until", req.Until)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(api.SpeakerFailed{At: time.Now(), Node: s.opts.NodeName})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if req.Graceful {
		s.stopOnce.Do(func() { close(s.fail) })
		return
	}
	s.crash()
}

// serveResume is POST /v1/resume: end the hold, so that the speaker
// (waiting in Run, or started again by Pebble) starts announcing.
func (s *Speaker) serveResume(w http.ResponseWriter, _ *http.Request) {
	if err := s.hold.Clear(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// heldUntil is when the hold on this speaker ends, or zero.
func (s *Speaker) heldUntil() time.Time { return s.hold.Until(time.Now()) }
