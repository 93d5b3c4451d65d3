package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/calico-lb/calico-lb/workload/allocator"
	"github.com/calico-lb/calico-lb/workload/api"
)

// The local API's types live in workload/api, which the charm imports
// without pulling in the controller and client-go.
type (
	Snapshot    = api.Snapshot
	PoolView    = api.PoolView
	ServiceView = api.ServiceView
	PoolChange  = api.PoolChange
)

func (c *Controller) api() http.Handler {
	mux := c.readOnly()
	mux.HandleFunc("GET /v1/allocations", serveJSON(c.snapshot))
	// The charm calls this after pushing a config file, so that its status
	// reflects the new file at once rather than after the next poll.
	mux.HandleFunc("POST /v1/reload", serveJSON(func(ctx context.Context) (*Snapshot, error) {
		changed, err := c.reload(ctx)
		if err != nil {
			return nil, fmt.Errorf("reload: %w", err)
		}
		if changed {
			_, _ = inLoop(ctx, c, func(t *term) (struct{}, error) { t.reconfigure(c.cfg.Load()); return struct{}{}, nil })
		}
		return c.snapshot(ctx)
	}))
	mux.HandleFunc("GET /v1/pool-change", func(w http.ResponseWriter, r *http.Request) {
		v, err := inLoop(r.Context(), c, func(t *term) (PoolChange, error) { return t.poolChange(), nil })
		if err != nil {
			c.notLeader(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, v)
	})
	mux.HandleFunc("POST /v1/pool-change", func(w http.ResponseWriter, r *http.Request) {
		v, err := inLoop(r.Context(), c, func(t *term) (PoolChange, error) {
			pc := t.poolChange()
			ch, err := t.applyPending()
			if err != nil {
				return pc, err
			}
			// What did move, which the list shown before names exactly.
			pc.Services = orphanViews(ch.Orphans)
			pc.Applied, pc.Pending = true, false
			return pc, nil
		})
		switch {
		case errors.Is(err, errNothingPending):
			http.Error(w, err.Error(), http.StatusConflict)
		case err != nil:
			c.notLeader(w, err)
		default:
			api.WriteJSON(w, http.StatusOK, v)
		}
	})
	mux.HandleFunc("POST /v1/reallocate", c.serveReallocate)
	mux.HandleFunc("GET /v1/nodes", serveJSON(func(ctx context.Context) (*api.Nodes, error) { return c.speakerAPI.Nodes(ctx, c.cfg.Load()) }))
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) {
		v, err := c.Facts(r.Context(), r.URL.Query().Get("service"))
		switch code, refused := api.Refusal(err); {
		case refused:
			http.Error(w, err.Error(), code)
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			api.WriteJSON(w, http.StatusOK, v)
		}
	})
	mux.HandleFunc("GET /v1/speakers", func(w http.ResponseWriter, r *http.Request) {
		// reports=none: the pods alone, without asking each speaker (and
		// sending each a token): what Prometheus' scrape jobs need.
		ask := r.URL.Query().Get("reports") != "none"
		serveJSON(func(ctx context.Context) (*api.Speakers, error) { return c.speakerAPI.Status(ctx, c.cfg.Load(), ask) })(w, r)
	})
	return mux
}

// readOnly serves health and metrics: all that the metrics listener on the
// pod network offers, and part of the local API.
func (c *Controller) readOnly() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		// A leader whose loop stops running is wedged: fail so that
		// Pebble restarts it.
		if why := c.loopStalled(time.Now()); why != "" {
			http.Error(w, why, http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ok, why := c.Ready(); !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

func (c *Controller) notLeader(w http.ResponseWriter, err error) {
	if errors.Is(err, errNotLeader) {
		leader := ""
		if l := c.leader.Load(); l != nil {
			leader = *l
		}
		http.Error(w, "this instance is a standby; the leader is "+leader, http.StatusServiceUnavailable)
		return
	}
	http.Error(w, err.Error(), http.StatusServiceUnavailable)
}

// serveJSON answers with what get returns, or 503 with its error.
func serveJSON[T any](get func(context.Context) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := get(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		api.WriteJSON(w, http.StatusOK, v)
	}
}

func (t *term) poolChange() PoolChange {
	if t.pending == nil {
		return PoolChange{Services: []ServiceView{}}
	}
	pc := PoolChange{Pending: true, Since: &t.pending.since, Services: orphanViews(t.pending.list())}
	for _, p := range t.pending.cfg.Pools {
		for _, r := range p.Addresses {
			pc.NewPools = append(pc.NewPools, p.Name+" "+r.String())
		}
	}
	return pc
}

// orphanViews lists orphans sorted by Service, as the API shows them.
func orphanViews(orphans []allocator.Orphan) []ServiceView {
	out := make([]ServiceView, 0, len(orphans))
	for _, o := range orphans {
		out = append(out, ServiceView{Namespace: o.Service.Namespace, Name: o.Service.Name, IPs: ipStrings(o.IPs)})
	}
	slices.SortFunc(out, func(a, b ServiceView) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) })
	return out
}

// snapshot describes pools and assignments: the leader's own, or, on a
// standby, rebuilt from the Services in the cache.
func (c *Controller) snapshot(ctx context.Context) (*Snapshot, error) {
	s, err := inLoop(ctx, c, func(t *term) (*Snapshot, error) {
		s := buildSnapshot(t.alloc)
		s.Leader, s.Source, s.Mode, s.PendingChange = true, "allocator", t.active.Mode, t.pending != nil
		if f := t.c.file.Load(); f != nil && f.cfg == t.takenIn {
			s.ConfigDigest = f.digest
		}
		return s, nil
	})
	switch {
	case err == nil:
	case errors.Is(err, errNotLeader):
		cfg := c.cfg.Load()
		if cfg == nil || !c.started.Load() {
			_, why := c.Ready()
			return nil, errors.New(why)
		}
		alloc, err := cfg.NewAllocator()
		if err != nil {
			return nil, err
		}
		all, _ := c.services.List(labels.Everything())
		adoptExisting(alloc, all, cfg.LoadBalancerClass, nil, nil)
		s = buildSnapshot(alloc)
		s.Source, s.Mode = "cache", cfg.Mode
		if f := c.file.Load(); f != nil && f.cfg == cfg {
			s.ConfigDigest = f.digest
		}
	default:
		return nil, err
	}
	if l := c.leader.Load(); l != nil {
		s.LeaderIdentity = *l
	}
	if e := c.cfgErr.Load(); e != nil {
		s.ConfigError = *e
		if f := c.file.Load(); f != nil {
			s.RejectedConfigDigest = f.rejected
		}
	}
	if e := c.speakers.Err(); e != "" && c.leading.Load() {
		s.SpeakersError = e
	}
	return s, nil
}

// poolViews shows pools' usage as the local API does.
func poolViews(usage []allocator.PoolUsage) []PoolView {
	out := []PoolView{}
	for _, u := range usage {
		pv := PoolView{
			Name: u.Name, AutoAssign: u.AutoAssign,
			Capacity: u.Capacity().String(), CapacityV4: u.CapacityV4.String(), CapacityV6: u.CapacityV6.String(),
			InUse: u.InUse(), InUseV4: u.InUseV4, InUseV6: u.InUseV6,
		}
		for _, r := range u.Ranges {
			pv.Addresses = append(pv.Addresses, r.String())
		}
		out = append(out, pv)
	}
	return out
}

func buildSnapshot(a *allocator.Allocator) *Snapshot {
	s := &Snapshot{Pools: poolViews(a.Usage()), Services: []ServiceView{}}
	for _, h := range a.Assignments() {
		sv := ServiceView{Namespace: h.Service.Namespace, Name: h.Service.Name, IPs: ipStrings(h.List())}
		for _, p := range h.Pools() {
			if p != "" {
				sv.Pools = append(sv.Pools, p)
			}
		}
		if h.Issues != 0 {
			sv.Issues = h.Issues.String()
		}
		s.Services = append(s.Services, sv)
	}
	sort.Slice(s.Services, func(i, j int) bool {
		return s.Services[i].Namespace+"/"+s.Services[i].Name < s.Services[j].Namespace+"/"+s.Services[j].Name
	})
	return s
}
