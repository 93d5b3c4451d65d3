package probe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
)

// Request starts a probe run (POST /v1/probes).
type Request struct {
	Target     string `json:"target"` // ip:port, [ip6]:port
	IntervalMs int    `json:"intervalMs,omitempty"`
	TimeoutMs  int    `json:"timeoutMs,omitempty"`
	ForMs      int    `json:"forMs"` // the run ends by itself after this
}

// Report is a run's state (GET and DELETE /v1/probes/{id}).
type Report struct {
	ID      string    `json:"id"`
	Target  string    `json:"target"`
	Started time.Time `json:"started"` // on the probe host's clock
	Ended   bool      `json:"ended"`
	Summary Summary   `json:"summary"`
}

// Limits on what one request may ask, so that whoever reaches the agent
// gets little more than a slow client out of it: at most maxRuns runs of
// at most MaxInFlight open attempts each.
const (
	MinInterval = 10 * time.Millisecond
	MaxTimeout  = 5 * time.Second
	MaxFor      = 15 * time.Minute
	MaxInFlight = 64
	maxRuns     = 4
	keepEnded   = 10 * time.Minute
)

// Agent is `calico-lb probe`: it runs probe runs for the controller, to
// the addresses it allows only (the load-balancer pools), so that it is
// no open relay for connections to anywhere, and only for a caller that
// presents its token (the failover-test action's probe-token).
type Agent struct {
	Allow []netip.Prefix
	Token string // what /v1/ wants as its bearer token
	Dial  Dialer // nil: the host's

	mu   sync.Mutex
	runs map[string]*run
}

type run struct {
	target  string
	started time.Time
	stop    context.CancelFunc
	rec     *Record
	ended   time.Time // zero while it runs
}

// Handler is the agent's API.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/probes", a.start)
	mux.HandleFunc("GET /v1/probes/{id}", func(w http.ResponseWriter, r *http.Request) { a.report(w, r.PathValue("id"), false) })
	mux.HandleFunc("DELETE /v1/probes/{id}", func(w http.ResponseWriter, r *http.Request) { a.report(w, r.PathValue("id"), true) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	// An agent without a token (a programming error; the command always
	// sets one) refuses all.
	return api.RequireBearer(mux, []byte(a.Token), "this probe agent wants its token (printed or written when it started): pass the failover-test action probe-token=", "/healthz")
}

// MinTokenLen is the shortest token an agent takes from a file.
const MinTokenLen = 16

// Check says what is wrong with req, or nil.
func (a *Agent) Check(req Request) error {
	host, port, err := net.SplitHostPort(req.Target)
	if err != nil {
		return fmt.Errorf("target %q: want ip:port ([ip]:port for IPv6)", req.Target)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("target %q: %q is not an IP address", req.Target, host)
	}
	if p, err := net.LookupPort("tcp", port); err != nil || p == 0 {
		return fmt.Errorf("target %q: %q is not a TCP port", req.Target, port)
	}
	allowed := false
	for _, p := range a.Allow {
		allowed = allowed || p.Contains(ip.Unmap())
	}
	if !allowed {
		return fmt.Errorf("target %q: %s is outside the ranges this probe was started with (--allow %s): start it with the load-balancer pools' ranges", req.Target, ip, prefixes(a.Allow))
	}
	if req.IntervalMs != 0 && time.Duration(req.IntervalMs)*time.Millisecond < MinInterval {
		return fmt.Errorf("intervalMs %d: want at least %d", req.IntervalMs, MinInterval.Milliseconds())
	}
	if req.TimeoutMs < 0 || time.Duration(req.TimeoutMs)*time.Millisecond > MaxTimeout {
		return fmt.Errorf("timeoutMs %d: want 1 to %d (0: 500)", req.TimeoutMs, MaxTimeout.Milliseconds())
	}
	if req.ForMs <= 0 || time.Duration(req.ForMs)*time.Millisecond > MaxFor {
		return fmt.Errorf("forMs %d: want 1 to %d", req.ForMs, MaxFor.Milliseconds())
	}
	return nil
}

func (a *Agent) start(w http.ResponseWriter, r *http.Request) {
	var req Request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		http.Error(w, "the body is not a probe request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := a.Check(req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	interval, timeout := 10*time.Millisecond, 500*time.Millisecond
	if req.IntervalMs > 0 {
		interval = time.Duration(req.IntervalMs) * time.Millisecond
	}
	if req.TimeoutMs > 0 {
		timeout = time.Duration(req.TimeoutMs) * time.Millisecond
	}
	a.mu.Lock()
	if a.runs == nil {
		a.runs = map[string]*run{}
	}
	running := 0
	for id, ru := range a.runs {
		switch {
		case ru.ended.IsZero():
			running++
		case time.Since(ru.ended) > keepEnded:
			delete(a.runs, id)
		}
	}
	if running >= maxRuns {
		a.mu.Unlock()
		http.Error(w, fmt.Sprintf("%d probe runs are going on already; try again when one ends", running), http.StatusTooManyRequests)
		return
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(req.ForMs)*time.Millisecond)
	ru := &run{target: req.Target, started: time.Now(), stop: cancel, rec: NewRecord()}
	a.runs[id] = ru
	a.mu.Unlock()
	go func() {
		Run(ctx, req.Target, interval, timeout, a.Dial, ru.rec)
		cancel()
		a.mu.Lock()
		ru.ended = time.Now()
		a.mu.Unlock()
	}()
	api.WriteJSON(w, http.StatusCreated, Report{ID: id, Target: req.Target, Started: ru.started, Summary: Summary{Windows: []Window{}}})
}

// report answers a run's state; stop ends it first and waits (briefly)
// for its attempts to finish, so that the answer is final.
func (a *Agent) report(w http.ResponseWriter, id string, stop bool) {
	a.mu.Lock()
	ru := a.runs[id]
	a.mu.Unlock()
	if ru == nil {
		http.Error(w, "no probe run "+id+" (runs are forgotten 10 minutes after they end)", http.StatusNotFound)
		return
	}
	if stop {
		ru.stop()
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			a.mu.Lock()
			ended := !ru.ended.IsZero()
			a.mu.Unlock()
			if ended {
				break
			}
		}
	}
	a.mu.Lock()
	ended := ru.ended
	a.mu.Unlock()
	now := time.Since(ru.started)
	if !ended.IsZero() {
		now = ended.Sub(ru.started) + time.Nanosecond // every attempt finished
	}
	api.WriteJSON(w, http.StatusOK, Report{ID: id, Target: ru.target, Started: ru.started, Ended: !ended.IsZero(), Summary: ru.rec.Summary(now)})
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
