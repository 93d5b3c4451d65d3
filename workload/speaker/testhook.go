package speaker

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"time"
)

// Observer hears what the speaker does: session, BFD, ownership and GARP
// events, and the routes it announced and withdrew. The failover test's
// journal is one; the drivers know only this. Its methods must return at
// once: they are called on the drivers' own paths.
type Observer interface {
	Event(kind, subject, detail string)
	Routes(announced, withdrawn []netip.Prefix)
}

// TestHook is the failover test's one seam in the speaker (package
// failovertest/speakerhook): it observes, may hold the speaker down
// before it starts, may stop it, and serves its own paths on the
// speaker's API.
type TestHook interface {
	Observer
	// HeldUntil is when a test's hold on this speaker ends; zero if none.
	HeldUntil(now time.Time) time.Time
	// WaitHold returns when the hold ends, or ctx's error if ctx ends.
	WaitHold(ctx context.Context) error
	// Stopped is closed when a test stops the speaker gracefully.
	Stopped() <-chan struct{}
	// Register serves the test's paths on mux, each behind authorized.
	Register(mux *http.ServeMux, authorized func(http.HandlerFunc) http.HandlerFunc)
}

// ErrStopped is what Run returns when the failover test stopped the
// speaker gracefully: it withdrew everything, and the process ends so
// that, started again, it finds itself held down.
var ErrStopped = errors.New("stopped by the failover test")

// noTest is a speaker without the failover test: nothing is observed,
// nothing holds or stops it, and it serves no test paths.
type noTest struct{}

func (noTest) Event(string, string, string)                                     {}
func (noTest) Routes([]netip.Prefix, []netip.Prefix)                            {}
func (noTest) HeldUntil(time.Time) time.Time                                    { return time.Time{} }
func (noTest) WaitHold(context.Context) error                                   { return nil }
func (noTest) Stopped() <-chan struct{}                                         { return nil }
func (noTest) Register(*http.ServeMux, func(http.HandlerFunc) http.HandlerFunc) {}

// observer is o, or one that hears nothing when o is nil.
func observer(o Observer) Observer {
	if o == nil {
		return noTest{}
	}
	return o
}
