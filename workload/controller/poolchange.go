package controller

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/calico-lb/calico-lb/workload/allocator"
	"github.com/calico-lb/calico-lb/workload/config"
)

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
			t.endPending("PoolChangeReverted", "The pool change that would have taken %s out of every pool was reverted; the Service keeps its addresses")
			t.alloc.DropPending()
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
	if t.pending != nil {
		t.endPending("PoolChangeReverted", "The held-back pool change was replaced by one that keeps %s in a pool; the Service keeps its addresses")
	}
	t.applied(cfg, ch)
}

// withPools is cfg with the pools of another config.
func withPools(cfg *config.Config, pools []config.Pool) *config.Config {
	out := *cfg
	out.Pools = pools
	return &out
}

// pendingChange is a pool change held back for the operator, and the
// Services it would move: exactly those that applying it moves.
type pendingChange struct {
	cfg     *config.Config
	since   time.Time
	orphans map[allocator.ServiceKey][]netip.Addr
}

// list returns the Services the change would move, sorted.
func (p *pendingChange) list() []allocator.Orphan {
	out := make([]allocator.Orphan, 0, len(p.orphans))
	for sk, ips := range p.orphans {
		out = append(out, allocator.Orphan{Service: sk, IPs: ips})
	}
	slices.SortFunc(out, func(a, b allocator.Orphan) int {
		return strings.Compare(a.Service.String(), b.Service.String())
	})
	return out
}

// holdBack records a pool change that waits for the operator, and tells
// each affected Service.
func (t *term) holdBack(cfg *config.Config, orphans []allocator.Orphan) {
	t.pending = &pendingChange{cfg: cfg, since: time.Now(), orphans: map[allocator.ServiceKey][]netip.Addr{}}
	for sk, ips := range t.outside {
		orphans = append(orphans, allocator.Orphan{Service: sk, IPs: ips})
	}
	for _, o := range orphans {
		t.pending.orphans[o.Service] = o.IPs
	}
	t.c.metrics.heldBack.Set(float64(len(t.pending.orphans)))
	summary := allocator.Change{Orphans: orphans}.Summary()
	t.c.log.Warn("pool change held back: it would take addresses in use out of every pool; apply it with POST /v1/pool-change or revert the pools", "services", summary)
	for _, o := range orphans {
		if svc, err := t.c.services.Services(o.Service.Namespace).Get(o.Service.Name); err == nil {
			t.eventHeldBack(svc, o.IPs)
		}
	}
}

// The Events of a pool change go under one key per Service, so that the
// latest word on the change replaces one not sent yet: a revert or an apply
// right after a change over a thousand Services sends each one Event, not
// a thousand stale ones first.
func poolChangeKey(sk allocator.ServiceKey) string { return "pool-change/" + sk.String() }

func (t *term) eventHeldBack(svc *corev1.Service, ips []netip.Addr) {
	t.c.events.post(svc, corev1.EventTypeWarning, "PoolChangeHeldBack", poolChangeKey(allocator.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}),
		"The new pools leave %s outside every pool; the change is held back until the operator runs apply-pool-change or reverts the pools", joinIPs(ips))
}

// endPending tells each Service of the held-back change how it ended.
func (t *term) endPending(reason, format string) {
	for _, o := range t.pending.list() {
		svc, err := t.c.services.Services(o.Service.Namespace).Get(o.Service.Name)
		if err != nil {
			continue
		}
		t.c.events.post(svc, corev1.EventTypeNormal, reason, poolChangeKey(o.Service), format, joinIPs(o.IPs))
	}
}

// trackPending keeps the held-back change's list true for one Service
// after its pass: a Service that got an address the change would take
// away (none that it keeps was free) joins the list, and one that lost
// such an address leaves it. svc is nil for a Service that is gone.
func (t *term) trackPending(svc *corev1.Service, sk allocator.ServiceKey) {
	if t.pending == nil {
		return
	}
	if _, outside := t.outside[sk]; outside && svc != nil {
		return // listed since the term began, and kept as it is
	}
	var lost []netip.Addr
	if svc != nil {
		lost = t.alloc.PendingLoss(sk)
	}
	prev, listed := t.pending.orphans[sk]
	switch {
	case len(lost) == 0 && listed:
		delete(t.pending.orphans, sk)
	case len(lost) > 0 && !slices.Equal(prev, lost):
		t.pending.orphans[sk] = lost
		t.c.log.Warn("pool change held back: this Service got an address it would take away, as none it keeps was free", "service", sk, "ips", joinIPs(lost))
		t.eventHeldBack(svc, lost)
	default:
		return
	}
	t.c.metrics.heldBack.Set(float64(len(t.pending.orphans)))
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
	t.endPending("PoolChangeApplied", "The pool change was applied: %s left the pools, and the Service gets new addresses")
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
