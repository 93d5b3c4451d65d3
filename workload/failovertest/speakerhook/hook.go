// Package speakerhook is the failover test's part inside a speaker: the
// journal of what the speaker did (for the test's timeline), the hold
// that keeps a failed speaker down while the test measures, and the
// status API's paths the controller calls to fail, resume and read it.
// The speaker sees it only as speaker.TestHook; its drivers see only the
// Observer half.
package speakerhook

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
	"k8s.io/client-go/kubernetes"
)

// Options configure a Hook.
type Options struct {
	// Client reads the speaker's Node, for the mark a fail request must
	// match.
	Client   kubernetes.Interface
	NodeName string
	// HoldFile is where the hold lives (see Hold); empty: the speaker
	// cannot be held down, and fail requests are refused.
	HoldFile string
	Log      *slog.Logger
	// Crash ends the process as a crash does (default: SIGKILL to
	// itself).
	Crash func()
}

// Hook is one speaker's part of the failover test.
type Hook struct {
	opts     Options
	journal  *Journal
	hold     Hold
	stop     chan struct{} // closed when a test stops the speaker gracefully
	stopOnce sync.Once
}

// New starts the speaker's journal; Register serves the test's paths.
func New(opts Options) *Hook {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Crash == nil {
		opts.Crash = killSelf
	}
	return &Hook{opts: opts, journal: NewJournal(), hold: Hold{Path: opts.HoldFile}, stop: make(chan struct{})}
}

// killSelf ends the process the way a crash does: no deferred function,
// no withdrawal, no Cease to the peers; the kernel closes its sockets.
func killSelf() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }

// Event records a session, BFD, ownership or GARP event.
func (h *Hook) Event(kind, subject, detail string) { h.journal.Event(kind, subject, detail) }

// Routes records announcements and withdrawals that just went out.
func (h *Hook) Routes(announced, withdrawn []netip.Prefix) { h.journal.Routes(announced, withdrawn) }

// Since is the journal since t, with ip's route announcements (see
// Journal.Since).
func (h *Hook) Since(t time.Time, ip netip.Addr) api.SpeakerJournal { return h.journal.Since(t, ip) }

// HeldUntil is when the test's hold on this speaker ends; zero if none.
func (h *Hook) HeldUntil(now time.Time) time.Time { return h.hold.Until(now) }

// WaitHold waits out a failover test's hold, if one is on, and returns
// ctx's error if ctx ends first.
func (h *Hook) WaitHold(ctx context.Context) error {
	until := h.hold.Until(time.Now())
	if until.IsZero() {
		return nil
	}
	h.opts.Log.Warn("held down by a failover test: announcing nothing until it ends", "until", until)
	h.journal.Event("held", "", until.UTC().Format(time.RFC3339Nano))
	if err := h.hold.Wait(ctx); err != nil {
		return err
	}
	h.opts.Log.Info("the failover test's hold ended: starting")
	h.journal.Event("resumed", "", "")
	return nil
}

// Stopped is closed when a test stops the speaker gracefully: the
// speaker withdraws everything and ends, and, started again, finds
// itself held down.
func (h *Hook) Stopped() <-chan struct{} { return h.stop }

// Register serves the test's paths on mux, each behind authorized (only
// the controller may call them).
func (h *Hook) Register(mux *http.ServeMux, authorized func(http.HandlerFunc) http.HandlerFunc) {
	// What the speaker did and saw since a time (RFC 3339), with the last
	// announce and withdraw of ip's route: the failover test's timeline.
	mux.HandleFunc("GET /v1/journal", authorized(h.serveJournal))
	mux.HandleFunc("POST /v1/fail", authorized(h.serveFail))
	mux.HandleFunc("POST /v1/resume", authorized(h.serveResume))
}

func (h *Hook) serveJournal(w http.ResponseWriter, r *http.Request) {
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		var err error
		if since, err = time.Parse(time.RFC3339Nano, v); err != nil {
			http.Error(w, "since: want an RFC 3339 time such as 2026-12-05T10:00:00.5Z", http.StatusBadRequest)
			return
		}
	}
	var ip netip.Addr
	if v := r.URL.Query().Get("ip"); v != "" {
		var err error
		if ip, err = netip.ParseAddr(v); err != nil {
			http.Error(w, "ip: not an IP address", http.StatusBadRequest)
			return
		}
	}
	j := h.journal.Since(since, ip)
	j.Node = h.opts.NodeName
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(j)
}
