package controller

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/calico-lb/calico-lb/workload/metricnames"
)

type metrics struct {
	reg          *prometheus.Registry
	collectors   []prometheus.Collector
	allocations  *prometheus.CounterVec
	writes       *prometheus.CounterVec
	reloads      *prometheus.CounterVec
	configOK     prometheus.Gauge
	latency      prometheus.Histogram
	decide       prometheus.Histogram
	heldBack     prometheus.Gauge
	leader       prometheus.Gauge
	probeArmed   prometheus.Gauge
	events       *prometheus.CounterVec
	eventsQueued prometheus.Gauge
}

func newMetrics(c *Controller) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		allocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calico_lb_allocations_total",
			Help: "Allocation outcomes: allocated, released, or the reason a request could not be met (PoolExhausted, IPInUse, ...).",
		}, []string{"result"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calico_lb_service_writes_total",
			Help: "Writes of Service status and spec.externalIPs, by result (ok, conflict, gone, error).",
		}, []string{"result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calico_lb_config_reloads_total",
			Help: "Config file loads, by result (ok, error: the last good config stays in force).",
		}, []string{"result"}),
		configOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "calico_lb_config_last_reload_successful",
			Help: "1 while the config file in force is the one on disk; 0 while the file on disk is rejected and the last good config stays.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "calico_lb_allocation_latency_seconds",
			Help:    "From the controller first seeing a Service without an IP to its IP being written to status.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		decide: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "calico_lb_allocator_decision_seconds",
			Help:    "Time the allocator takes to decide one Service's addresses.",
			Buckets: prometheus.ExponentialBuckets(1e-7, 4, 10),
		}),
		heldBack: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "calico_lb_pool_change_held_back",
			Help: "Services whose addresses a held-back pool change would take out of every pool (0: nothing held back).",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "calico_lb_leader",
			Help: "1 while this instance is the leader that allocates.",
		}),
		probeArmed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "calico_lb_leader_probe_reached",
			Help: "1 while this standby reaches the leader's published address, so that it takes over as soon as the leader's process is gone rather than when its Lease runs out.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "calico_lb_events_total",
			Help: "Kubernetes Events by fate: sent, replaced (a later Event on the same matter went instead), dropped (queue full or refused).",
		}, []string{"result"}),
		eventsQueued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "calico_lb_events_queued",
			Help: "Events waiting to be sent.",
		}),
	}
	m.collectors = []prometheus.Collector{m.allocations, m.writes, m.reloads, m.configOK, m.latency, m.decide, m.heldBack, m.leader, m.probeArmed, m.events, m.eventsQueued,
		&poolCollector{c: c},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	m.reg.MustRegister(m.collectors...)
	return m
}

var (
	poolSizeDesc = prometheus.NewDesc("calico_lb_pool_addresses",
		"Addresses a pool can hand out (without those avoid-buggy-ips keeps back, when the pool avoids them).", []string{"pool", "family"}, nil)
	poolUseDesc = prometheus.NewDesc("calico_lb_pool_addresses_in_use",
		"Addresses of a pool held by Services.", []string{"pool", "family"}, nil)
	waitingDesc = prometheus.NewDesc("calico_lb_services_waiting",
		"Services waiting for an address, by the reason their request cannot be met (the leader's view).", []string{"reason"}, nil)
)

// poolCollector reads pool usage when scraped, from the allocation loop on
// the leader or from the caches on a standby.
type poolCollector struct{ c *Controller }

func (p *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolSizeDesc
	ch <- poolUseDesc
	ch <- waitingDesc
}

func (p *poolCollector) Collect(ch chan<- prometheus.Metric) {
	var pools []PoolView
	if f := p.c.figures.Load(); f != nil && p.c.term.Load() != nil {
		// The leader: what its loop published, without a call into it.
		for why, n := range f.waiting {
			ch <- prometheus.MustNewConstMetric(waitingDesc, prometheus.GaugeValue, float64(n), why)
		}
		pools = poolViews(f.usage)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		snap, err := p.c.snapshot(ctx) // a standby's, from its caches
		if err != nil {
			return
		}
		pools = snap.Pools
	}
	for _, u := range pools {
		// Capacities are exact decimal strings; a gauge is a float anyway.
		sizeV4, _ := strconv.ParseFloat(u.CapacityV4, 64)
		sizeV6, _ := strconv.ParseFloat(u.CapacityV6, 64)
		for _, f := range []struct {
			name  string
			size  float64
			inUse int
		}{{"ipv4", sizeV4, u.InUseV4}, {"ipv6", sizeV6, u.InUseV6}} {
			if f.size == 0 {
				continue
			}
			ch <- prometheus.MustNewConstMetric(poolSizeDesc, prometheus.GaugeValue, f.size, u.Name, f.name)
			ch <- prometheus.MustNewConstMetric(poolUseDesc, prometheus.GaugeValue, float64(f.inUse), u.Name, f.name)
		}
	}
}

// MetricNames are the names of the metrics the controller registers (the
// dashboard and the alert rules may use only these), sorted.
func MetricNames() []string { return metricnames.Of(newMetrics(&Controller{}).collectors...) }
