package cos

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/tests/promrules"
)

// Each alert fires on the condition it names, held for its for:, and not
// before; series of another application never trigger it. Prometheus' own
// alerting rules evaluate the rules as the charm publishes them.
func TestAlertsFireOnTheirConditions(t *testing.T) {
	data, err := AlertRules(topo)
	if err != nil {
		t.Fatal(err)
	}
	s := func(name string, v float64, kv ...string) promrules.Series {
		l := maps.Clone(topo.Labels())
		l["__name__"] = name
		for i := 0; i+1 < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return promrules.Series{Labels: l, Value: v}
	}
	grows := func(x promrules.Series, perStep float64) promrules.Series { x.Slope = perStep; return x }
	healthy := []promrules.Series{s("calico_lb_leader", 1, "juju_unit", "lb/0"), s("calico_lb_config_last_reload_successful", 1, "juju_unit", "lb/0"),
		s("calico_lb_pool_change_held_back", 0), s("calico_lb_pool_addresses", 10, "pool", "p", "family", "ipv4"),
		s("calico_lb_pool_addresses_in_use", 5, "pool", "p", "family", "ipv4"), s("calico_lb_bgp_session_up", 1, "node", "n1", "peer", "10.0.0.1")}
	with := func(extra ...promrules.Series) []promrules.Series {
		out := slices.Clone(healthy)
		for _, e := range extra {
			out = slices.DeleteFunc(out, func(h promrules.Series) bool { return h.Labels["__name__"] == e.Labels["__name__"] })
		}
		return append(out, extra...)
	}
	for _, tc := range []struct {
		name   string
		series []promrules.Series
		held   time.Duration
		want   []string
	}{
		{"healthy", healthy, 2 * time.Hour, nil},
		{"pool at 90 %", with(s("calico_lb_pool_addresses_in_use", 9, "pool", "p", "family", "ipv4")), 10 * time.Minute, []string{"CalicoLBPoolNearlyFull"}},
		{"pool at 90 % for 3 minutes", with(s("calico_lb_pool_addresses_in_use", 9, "pool", "p", "family", "ipv4")), 3 * time.Minute, nil},
		{"pool at 80 %", with(s("calico_lb_pool_addresses_in_use", 8, "pool", "p", "family", "ipv4")), 2 * time.Hour, nil},
		{"exhausted, waiting 2 minutes", with(s("calico_lb_services_waiting", 1, "reason", "PoolExhausted")), 2 * time.Minute, []string{"CalicoLBPoolExhausted"}},
		{"waiting 10 minutes", with(s("calico_lb_services_waiting", 2, "reason", "IPInUse")), 10 * time.Minute, []string{"CalicoLBServiceWaiting"}},
		{"waiting 3 minutes", with(s("calico_lb_services_waiting", 2, "reason", "IPInUse")), 3 * time.Minute, nil},
		{"session down 2 minutes", with(s("calico_lb_bgp_session_up", 0, "node", "n1", "peer", "10.0.0.1")), 2 * time.Minute, []string{"CalicoLBBGPSessionDown"}},
		{"session down 30 seconds", with(s("calico_lb_bgp_session_up", 0, "node", "n1", "peer", "10.0.0.1")), 30 * time.Second, nil},
		{"no leader", with(s("calico_lb_leader", 0, "juju_unit", "lb/0")), 2 * time.Minute, []string{"CalicoLBNoLeader"}},
		{"config rejected", with(s("calico_lb_config_last_reload_successful", 0, "juju_unit", "lb/0")), time.Minute, []string{"CalicoLBConfigRejected"}},
		{"held back 2 hours", with(s("calico_lb_pool_change_held_back", 3)), 2 * time.Hour, []string{"CalicoLBPoolChangeHeldBack"}},
		{"held back 30 minutes", with(s("calico_lb_pool_change_held_back", 3)), 30 * time.Minute, nil},
		{"clocks apart 2 minutes", with(s("calico_lb_l2_clock_skewed_peers", 1, "node", "n2")), 2 * time.Minute, []string{"CalicoLBL2ClockSkew"}},
		{"clocks agree", with(s("calico_lb_l2_clock_skewed_peers", 0, "node", "n2")), 2 * time.Hour, nil},
		{"forged heartbeats for 15 minutes", with(grows(s("calico_lb_l2_heartbeats_rejected_total", 0, "node", "n2", "reason", "unauthentic"), 1)), 15 * time.Minute, []string{"CalicoLBL2HeartbeatsRejected"}},
		{"held-back heartbeats for 15 minutes", with(grows(s("calico_lb_l2_heartbeats_rejected_total", 0, "node", "n2", "reason", "stale"), 1)), 15 * time.Minute, []string{"CalicoLBL2HeartbeatsRejected"}},
		{"a few refused at a restart", with(s("calico_lb_l2_heartbeats_rejected_total", 3, "node", "n2", "reason", "stale")), 2 * time.Hour, nil},
		{"forged heartbeats for 3 minutes", with(grows(s("calico_lb_l2_heartbeats_rejected_total", 0, "node", "n2", "reason", "unauthentic"), 1)), 3 * time.Minute, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := promrules.Firing(t, data, tc.series, tc.held); !slices.Equal(got, tc.want) {
				t.Fatalf("firing %v, want %v", got, tc.want)
			}
			// The same series from another application: nothing fires.
			var other []promrules.Series
			for _, x := range tc.series {
				l := maps.Clone(x.Labels)
				l["juju_application"] = "other"
				other = append(other, promrules.Series{Labels: l, Value: x.Value})
			}
			if got := promrules.Firing(t, data, other, tc.held); len(got) != 0 {
				t.Fatalf("another application's series fire %v", got)
			}
		})
	}
}
