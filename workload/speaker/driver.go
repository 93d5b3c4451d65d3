package speaker

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/calico-lb/calico-lb/workload/config"
)

// A driver announces what this node serves in one mode: BGP routes to the
// spine (bgpDriver) or ARP/NDP answers (l2Driver). The runner hands every
// driver the same world on each pass, from its one goroutine; a driver
// whose mode is not the config's, or whose node is not selected, withdraws
// what it announced. Readers (readiness, status, metrics) never wait on a
// driver's I/O: each publishes what they need under a lock held only to
// copy it.
type driver interface {
	sync(ctx context.Context, w world)
	// stop withdraws everything, when the speaker shuts down.
	stop(ctx context.Context)
}

// world is what a pass knows: the config in force and the caches.
type world struct {
	cfg       *config.Config
	node      Node
	nodes     []*corev1.Node
	services  []*corev1.Service
	endpoints EndpointsOf
	// files is where a pass reads the passwords and heartbeat keys.
	files Files
}

// announces reports whether this node announces in mode m.
func (w world) announces(m config.Mode) bool { return w.cfg.Mode == m && Selected(w.cfg, w.node) }
