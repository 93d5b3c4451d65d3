// Package failovertest runs the failover test (the failover-test action)
// beside the product: it plans with the pure workload/failover, then
// fails a node's speaker, its pods or the whole node, times what clients
// and the speakers saw, and puts everything back. It reads the Services
// through the leading controller (Services) and asks the speakers through
// their API; the powers it needs (cordon, evict, delete pods) are bound
// to the controller only while a test runs (access.Access.Failover).
package failovertest

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/speakerclient"
)

// Services is what the test reads of the Services calico-lb serves: the
// controller's caches, so that the test sees what the allocator sees.
type Services interface {
	// Served is the Service key (namespace/name) names if calico-lb
	// serves it with class; otherwise an error api.Refusal maps to an
	// HTTP status.
	Served(key, class string) (*corev1.Service, error)
	// Facts is every served Service's (or only the one named) IPs,
	// endpoints and announcement facts.
	Facts(ctx context.Context, only string) (*api.ServicesFacts, error)
}

// Options configure a Runner.
type Options struct {
	// Client is the controller's own: the test's powers are bound to its
	// ServiceAccount only while a test runs.
	Client    kubernetes.Interface
	Namespace string // the controller's (the test's Lease is there)
	Identity  string // the controller's, as holder of the test's Lease
	// PodName is the controller's own Pod, which a drain leaves in place:
	// the test runs in it.
	PodName  string
	Config   func() *config.Config // the config in force; nil before one
	Services Services
	Speakers *speakerclient.Client
	Log      *slog.Logger
}

// Runner runs one failover test at a time and keeps the last one's
// report.
type Runner struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	current *failoverRun // the running or last failover test
}

// New returns a Runner; Register serves it, WatchAbandoned restores what
// the tests of a controller that died left behind.
func New(opts Options) *Runner {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Runner{opts: opts, log: opts.Log}
}

// Register serves POST /v1/failover-test (plan, and start unless a dry
// run) and GET /v1/failover-test (the report so far) on mux.
func (c *Runner) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/failover-test", c.serveFailoverTest)
	mux.HandleFunc("GET /v1/failover-test", c.serveFailoverStatus)
}
