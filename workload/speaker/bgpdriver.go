package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calico-lb/calico-lb/workload/config"
)

// bgpDriver keeps a GoBGP speaker peered with the spine and announcing the
// node's routes, in spine mode.
type bgpDriver struct {
	log      *slog.Logger
	updates  prometheus.Counter
	observer Observer

	// Only the runner's goroutine changes these; the lock guards them for
	// readers and is never held across a call into GoBGP: a teardown that
	// waits on a peer that no longer answers must not hold up readiness,
	// which Pebble would answer with a restart that withdraws every route.
	mu      sync.Mutex
	bgp     *BGP
	key     string // the AS and router ID bgp was started with
	routes  []Route
	peerErr string
}

func (d *bgpDriver) sync(ctx context.Context, w world) {
	if !w.announces(config.ModeSpine) {
		d.stopWhy(ctx, "this node does not announce in the current config")
		return
	}
	routes := Announcements(w.cfg, w.node, w.services, w.endpoints)
	asn, rid := asFor(w.cfg, w.node), routerID(w.node)
	if !rid.IsValid() {
		d.log.Error("node has no IPv4 InternalIP for a router ID", "node", w.node.Name)
		return
	}
	key := fmt.Sprintf("%d/%s", asn, rid)
	d.mu.Lock()
	b, running, announced := d.bgp, d.key, d.routes
	d.mu.Unlock()
	if b != nil && running != key {
		d.stopWhy(ctx, "its AS or router ID changes")
		b, announced = nil, nil
	}
	if b == nil {
		nb, err := StartBGP(ctx, asn, rid, d.log)
		if err != nil {
			d.log.Error("start BGP", "error", err)
			return
		}
		b = nb
		b.SetObserver(d.observer)
		d.mu.Lock()
		d.bgp, d.key = b, key
		d.mu.Unlock()
		d.log.Info("BGP speaker started", "as", asn, "router-id", rid)
	}
	peers, keep, perr := peersFor(w.cfg, w.node, asn, w.files)
	peerErr := ""
	if perr != nil {
		peerErr = perr.Error()
		d.log.Error("peers", "error", perr)
	}
	d.mu.Lock()
	d.peerErr = peerErr
	d.mu.Unlock()
	b.SetPeers(peers, keep)
	if !slices.EqualFunc(routes, announced, sameRoute) {
		if err := b.SetRoutes(routes); err != nil {
			d.log.Error("set routes", "error", err)
			return
		}
		d.mu.Lock()
		d.routes = routes
		d.mu.Unlock()
		d.updates.Inc()
		d.log.Info("routes", "count", len(routes))
	}
}

func (d *bgpDriver) stop(ctx context.Context) { d.stopWhy(ctx, "the speaker is shutting down") }

// stopWhy stops the BGP speaker, if one runs: a Cease to every peer drops
// our routes at once. Readers see it gone before the teardown starts.
func (d *bgpDriver) stopWhy(ctx context.Context, why string) {
	d.mu.Lock()
	b := d.bgp
	d.bgp, d.key, d.routes = nil, "", nil
	d.mu.Unlock()
	if b != nil {
		b.Stop(ctx)
		d.log.Info("BGP speaker stopped: " + why)
	}
}

// bgpView is what status and metrics show of the driver.
type bgpView struct {
	key     string
	running bool
	peers   []PeerStatus
	routes  []Route
	peerErr string
}

func (d *bgpDriver) view() bgpView {
	d.mu.Lock()
	b := d.bgp
	v := bgpView{key: d.key, running: b != nil, routes: d.routes, peerErr: d.peerErr}
	d.mu.Unlock()
	if b != nil {
		v.peers = b.Status() // its own lock, never held across GoBGP calls
	}
	return v
}
