package speaker

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/calico-lb/calico-lb/workload/api"
)

// Status is what GET /v1/bgp returns.
type Status = api.BGPStatus

func (s *Speaker) status() Status {
	s.mu.Lock()
	st := Status{Node: s.opts.NodeName, Peers: []PeerStatus{}, Routes: []string{}, Error: s.cfgErr}
	if s.cfg != nil {
		st.Mode = s.cfg.Mode
	}
	s.mu.Unlock()
	v := s.bgp.view()
	st.ASN, st.Announces = v.key, v.running
	if v.running {
		st.Peers = v.peers
	}
	for _, r := range v.routes {
		st.Routes = append(st.Routes, r.String())
	}
	if st.Error == "" {
		st.Error = v.peerErr
	}
	if until := s.test.HeldUntil(time.Now()); !until.IsZero() {
		st.Error = "held down by a failover test until " + until.UTC().Format(time.RFC3339)
	}
	return st
}

// Handler is the speaker's HTTP API: /metrics, /healthz and /readyz for
// anyone who reaches the node, /v1/ (peers, AS numbers, routes, owners,
// the failover test's fail and resume) only for the controller, with a
// token of its ServiceAccount for this node (Options.Callers).
func (s *Speaker) Handler() http.Handler {
	mux := http.NewServeMux()
	authorized := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if err := s.opts.Callers.Check(r.Context(), token); err != nil {
				http.Error(w, "only the controller may use /v1/, with a token of its ServiceAccount for this node: "+err.Error(), http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	s.health(mux)
	// Anyone who reaches the node may scrape: at most two scrapes at once.
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 2}))
	s.test.Register(mux, authorized)
	mux.HandleFunc("GET /v1/l2", authorized(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.l2.status())
	}))
	mux.HandleFunc("GET /v1/bgp", authorized(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.status())
	}))
	return mux
}

// HealthHandler serves /healthz and /readyz only: what Pebble's check
// asks on loopback when the API itself listens on the node's address.
func (s *Speaker) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	s.health(mux)
	return mux
}

func (s *Speaker) health(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		// The hold is a file: read before the lock, which the speaker's
		// own passes take.
		held := s.test.HeldUntil(time.Now())
		s.mu.Lock()
		ok, why := s.synced && s.cfg != nil && s.node != nil, ""
		switch {
		case !held.IsZero():
			ok, why = false, "held down by a failover test until "+held.UTC().Format(time.RFC3339)
		case !s.synced:
			why = "caches not synced yet"
		case s.cfg == nil:
			why = "no valid config: " + s.cfgErr
		case s.node == nil:
			why = "own node " + s.opts.NodeName + " not seen yet"
		}
		s.mu.Unlock()
		if !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
}

var (
	sessionDesc = prometheus.NewDesc("calico_lb_bgp_session_up", "1 while the BGP session to the peer is Established.", []string{"peer"}, nil)
	routesDesc  = prometheus.NewDesc("calico_lb_bgp_routes_advertised", "Routes this speaker announces.", nil, nil)
	problemDesc = prometheus.NewDesc("calico_lb_bgp_peer_problem", "1 while something stands in the way of the peer's session (a change GoBGP refused and that is being retried, the prefix limit): its problem in /v1/bgp and bgp-status says what.", []string{"peer"}, nil)
	ownedDesc   = prometheus.NewDesc("calico_lb_l2_owned_ips", "IPs this node answers ARP/NDP for.", nil, nil)
	changesDesc = prometheus.NewDesc("calico_lb_l2_ownership_changes_total", "IPs this node took over or released.", nil, nil)
	garpsDesc   = prometheus.NewDesc("calico_lb_l2_announcements_total", "Gratuitous ARPs and unsolicited neighbour advertisements sent.", nil, nil)
	skewDesc    = prometheus.NewDesc("calico_lb_l2_clock_skewed_peers", "Nodes whose L2 heartbeats in the last minute were sent more than 30 s from this speaker's clock: one of the clocks is wrong. Ownership does not depend on it, unless a peer still runs a speaker from before heartbeat version 3 (then its heartbeats are refused, reason clock).", nil, nil)
	rejectDesc  = prometheus.NewDesc("calico_lb_l2_heartbeats_rejected_total", "L2 heartbeats this speaker refused, by reason: unauthentic (not signed with a key it holds), source (not from that node's address), replay (not newer than the last), stale (not an answer to a recent challenge: held back or replayed), clock (a speaker before heartbeat version 3, sent more than 30 s from this node's clock).", []string{"reason"}, nil)
)

// collector exports the speaker's BGP and L2 state when scraped.
type collector struct{ s *Speaker }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sessionDesc, problemDesc, routesDesc, ownedDesc, changesDesc, garpsDesc, rejectDesc, skewDesc} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	// Counts only: a scrape formats no route (status() would write out
	// every one of them, 100,000 with a full table).
	v := c.s.bgp.view()
	var peers []PeerStatus
	if v.running {
		peers = v.peers
	}
	for _, p := range peers {
		v := 0.0
		if p.State == "established" {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(sessionDesc, prometheus.GaugeValue, v, p.Address)
		problem := 0.0
		if p.Problem != "" {
			problem = 1
		}
		ch <- prometheus.MustNewConstMetric(problemDesc, prometheus.GaugeValue, problem, p.Address)
	}
	ch <- prometheus.MustNewConstMetric(routesDesc, prometheus.GaugeValue, float64(len(v.routes)))
	l2 := c.s.l2.status()
	ch <- prometheus.MustNewConstMetric(ownedDesc, prometheus.GaugeValue, float64(len(l2.Owned)))
	ch <- prometheus.MustNewConstMetric(changesDesc, prometheus.CounterValue, float64(l2.Changes))
	ch <- prometheus.MustNewConstMetric(garpsDesc, prometheus.CounterValue, float64(l2.GARPs))
	ch <- prometheus.MustNewConstMetric(skewDesc, prometheus.GaugeValue, float64(len(l2.Skewed)))
	for _, reason := range []string{"unauthentic", "source", "clock", "replay"} {
		ch <- prometheus.MustNewConstMetric(rejectDesc, prometheus.CounterValue, float64(l2.Rejected[reason]), reason)
	}
}
