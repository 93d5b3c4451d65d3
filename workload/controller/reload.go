package controller

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/calico-lb/calico-lb/workload/allocator"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

// fileState ties the digest of the file whose config is in force to that
// config, so that the local API can say whether a file the charm pushed is
// in force yet; a file read since and rejected is kept apart, under its
// own digest, so it is never taken for the one in force.
type fileState struct {
	digest   string // of the file that gave cfg
	cfg      *config.Config
	rejected string // of the last file read, when it was rejected
}

// loadConfig reads the config file. A file that does not parse leaves the
// last good config in force and records why it was rejected.
func (c *Controller) loadConfig() (changed bool) {
	data, err := os.ReadFile(c.opts.ConfigPath)
	if err == nil {
		digest := api.ConfigDigest(data)
		var cfg *config.Config
		if cfg, err = config.Parse(data); err != nil {
			st := fileState{rejected: digest}
			if prev := c.file.Load(); prev != nil {
				st.digest, st.cfg = prev.digest, prev.cfg
			}
			c.file.Store(&st)
		} else {
			// Stored after the config it gave: whoever sees this digest
			// sees that config too.
			defer func() { c.file.Store(&fileState{digest: digest, cfg: c.cfg.Load()}) }()
			c.cfgErr.Store(nil)
			if old := c.cfg.Load(); old != nil && reflect.DeepEqual(old, cfg) {
				return false
			}
			c.cfg.Store(cfg)
			if c.opts.LogLevel != nil {
				var l slog.Level
				if l.UnmarshalText([]byte(cfg.LogLevel)) == nil {
					c.opts.LogLevel.Set(l)
				}
			}
			c.metrics.reloads.WithLabelValues("ok").Inc()
			c.log.Info("config loaded", "path", c.opts.ConfigPath, "mode", cfg.Mode, "pools", len(cfg.Pools))
			return true
		}
	}
	msg := err.Error()
	if old := c.cfgErr.Load(); old == nil || *old != msg {
		c.metrics.reloads.WithLabelValues("error").Inc()
		c.log.Error("config rejected; keeping the last good one", "path", c.opts.ConfigPath, "error", msg)
	}
	c.cfgErr.Store(&msg)
	return false
}

// watchConfig polls the file. Polling is simple and robust against how the
// file is replaced (Pebble pushes it whole; editors rename), and a second
// of delay is nothing next to a config change.
func (c *Controller) watchConfig(ctx context.Context) {
	var last []byte
	var lastMod time.Time
	tick := time.NewTicker(c.opts.ConfigPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		fi, err := os.Stat(c.opts.ConfigPath)
		if err == nil && fi.ModTime().Equal(lastMod) {
			continue
		}
		data, _ := os.ReadFile(c.opts.ConfigPath)
		if err == nil && bytes.Equal(data, last) {
			lastMod = fi.ModTime()
			continue
		}
		if err == nil {
			lastMod, last = fi.ModTime(), data
		}
		if c.loadConfig() {
			select {
			case c.configChanged <- struct{}{}:
			default:
			}
		}
	}
}

// reconfigure applies a new config in the running term. A pool change that
// would take addresses in use out of every pool is held back.
func (t *term) reconfigure(cfg *config.Config) {
	if cfg == nil || cfg == t.takenIn {
		return
	}
	t.takenIn = cfg
	if reflect.DeepEqual(cfg.Pools, t.active.Pools) {
		// Reverting to the pools in force drops a held-back change.
		if t.pending != nil {
			t.c.log.Info("pool change reverted; nothing held back any more")
			t.pending = nil
			t.c.metrics.heldBack.Set(0)
		}
		t.active = withPools(cfg, t.active.Pools)
		t.speakersChanged()
		t.requeueAll()
		return
	}
	pools, err := cfg.AllocatorPools()
	if err != nil {
		t.c.log.Error("config pools rejected", "error", err)
		return
	}
	ch, err := t.alloc.SetPools(pools, false)
	switch {
	case errors.Is(err, allocator.ErrHeldBack):
		// Other settings apply now; the pools wait.
		t.active = withPools(cfg, t.active.Pools)
		t.speakersChanged()
		t.holdBack(cfg, ch.Orphans)
		t.requeueAll()
		return
	case err != nil:
		t.c.log.Error("config pools rejected", "error", err)
		return
	}
	t.applied(cfg, ch)
}

// withPools is cfg with the pools of another config.
func withPools(cfg *config.Config, pools []config.Pool) *config.Config {
	out := *cfg
	out.Pools = pools
	return &out
}

// holdBack records a pool change that waits for the operator, and tells
// each affected Service.
func (t *term) holdBack(cfg *config.Config, orphans []allocator.Orphan) {
	for sk, ips := range t.outside {
		orphans = append(orphans, allocator.Orphan{Service: sk, IPs: ips})
	}
	t.pending = &pendingChange{cfg: cfg, since: time.Now(), orphans: orphans}
	t.c.metrics.heldBack.Set(float64(len(orphans)))
	summary := allocator.Change{Orphans: orphans}.Summary()
	t.c.log.Warn("pool change held back: it would take addresses in use out of every pool; apply it with POST /v1/pool-change or revert the pools", "services", summary)
	for _, o := range orphans {
		if svc, err := t.c.services.Services(o.Service.Namespace).Get(o.Service.Name); err == nil {
			t.c.recorder.Eventf(svc, corev1.EventTypeWarning, "PoolChangeHeldBack",
				"The new pools leave %s outside every pool; the change is held back until the operator runs apply-pool-change or reverts the pools", joinIPs(o.IPs))
		}
	}
}

// applyPending forces the held-back change: Services that lose their
// addresses get new ones.
func (t *term) applyPending() (allocator.Change, error) {
	if t.pending == nil {
		return allocator.Change{}, errNothingPending
	}
	cfg := t.pending.cfg
	pools, err := cfg.AllocatorPools()
	if err != nil {
		return allocator.Change{}, err
	}
	ch, err := t.alloc.SetPools(pools, true)
	if err != nil {
		return ch, err
	}
	for sk, ips := range t.outside {
		ch.Orphans = append(ch.Orphans, allocator.Orphan{Service: sk, IPs: ips})
	}
	t.outside = map[allocator.ServiceKey][]netip.Addr{}
	t.applied(cfg, ch)
	return ch, nil
}

var errNothingPending = errors.New("no pool change is held back")

// applied makes cfg active after its pools went into the allocator.
func (t *term) applied(cfg *config.Config, ch allocator.Change) {
	t.active = cfg
	if t.pending != nil {
		t.pending = nil
		t.c.metrics.heldBack.Set(0)
	}
	// Services held outside the old pools may lie inside the new ones.
	for sk, ips := range t.outside {
		svc, err := t.c.services.Services(sk.Namespace).Get(sk.Name)
		if err != nil {
			delete(t.outside, sk)
			continue
		}
		req, _ := RequestFor(svc)
		if _, err := t.alloc.Adopt(&req.Request, ips); err == nil {
			delete(t.outside, sk)
		}
	}
	if len(t.outside) > 0 {
		t.holdBack(cfg, nil)
	}
	t.c.log.Info("pools applied", "pools", len(cfg.Pools), "moved", len(ch.Orphans))
	t.speakersChanged()
	t.requeueAll()
}

func (t *term) requeueAll() {
	all, _ := t.c.services.List(labels.Everything())
	for _, svc := range all {
		if key, err := cache.MetaNamespaceKeyFunc(svc); err == nil {
			t.queue.Add(key)
		}
	}
}
