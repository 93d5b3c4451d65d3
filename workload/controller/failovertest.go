package controller

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/failover"
)

// serveFailoverTest plans the failover test of a Service (POST
// /v1/failover-test): what it would fail and what that disrupts, or why
// it refuses. Injecting the fault is not built yet: a request that is not
// a dry run is refused, saying so, after the plan.
func (c *Controller) serveFailoverTest(w http.ResponseWriter, r *http.Request) {
	var req api.FailoverRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "failover-test: the body is not a request: "+err.Error(), http.StatusBadRequest)
		return
	}
	cfg := c.cfg.Load()
	if cfg == nil {
		http.Error(w, "no valid config loaded yet", http.StatusServiceUnavailable)
		return
	}
	if _, err := c.servedService(req.Service, cfg.LoadBalancerClass); err != nil {
		code, refused := refusal(err)
		if !refused {
			code = http.StatusServiceUnavailable
		}
		http.Error(w, err.Error(), code)
		return
	}
	world, err := c.failoverWorld(r, cfg, req.Service)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	report := failover.Plan(req, world)
	if !req.DryRun && report.Result == failover.Planned {
		report.Result = failover.Refused
		report.Reason = "this revision plans the test but does not inject the fault yet: run it with dry-run=true to see the plan"
	}
	writeJSON(w, http.StatusOK, report)
}

// failoverWorld gathers what the plan looks at: every Service's facts
// (the one under test, and the others the fault would touch), the
// speakers' reports, the nodes.
func (c *Controller) failoverWorld(r *http.Request, cfg *config.Config, key string) (failover.World, error) {
	w := failover.World{Mode: cfg.Mode}
	facts, err := c.serviceFacts(r.Context(), "")
	if err != nil {
		return w, err
	}
	w.Others = facts.Services
	for _, s := range facts.Services {
		if s.Namespace+"/"+s.Name == key {
			w.Service = s
		}
	}
	if w.Service.Name == "" {
		return w, fmt.Errorf("%s is not among the Services calico-lb serves", key)
	}
	if cfg.Mode != config.ModeCalico {
		if w.Speakers, err = c.speakerStatus(r.Context()); err != nil {
			return w, fmt.Errorf("the speakers' reports: %w", err)
		}
	}
	nodes, err := c.nodes(r.Context())
	if err != nil {
		return w, err
	}
	w.Nodes = nodes.Nodes
	return w, nil
}
