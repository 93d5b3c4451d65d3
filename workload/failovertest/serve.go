package failovertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/failover"
)

// serveFailoverTest is POST /v1/failover-test: it plans the failover test
// of a Service (what it would fail and what that disrupts, or why it
// refuses), and unless it is a dry run starts it and answers at once
// (202) with the report so far; GET /v1/failover-test follows it.
func (c *Runner) serveFailoverTest(w http.ResponseWriter, r *http.Request) {
	var req api.FailoverRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "failover-test: the body is not a request: "+err.Error(), http.StatusBadRequest)
		return
	}
	cfg := c.opts.Config()
	if cfg == nil {
		http.Error(w, "no valid config loaded yet", http.StatusServiceUnavailable)
		return
	}
	svc, err := c.opts.Services.Served(req.Service, cfg.LoadBalancerClass)
	if err != nil {
		code, refused := api.Refusal(err)
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
	report.Probe = probeNote(req)
	if report.Result != failover.Planned {
		api.WriteJSON(w, http.StatusOK, report)
		return
	}
	port, why := probePort(svc, req.Port)
	if why != "" && (req.Probe != "" || req.Port != 0) {
		report.Result, report.Reason = failover.Refused, why
		api.WriteJSON(w, http.StatusOK, report)
		return
	}
	if req.DryRun {
		api.WriteJSON(w, http.StatusOK, report)
		return
	}
	run, refused := c.startFailover(r.Context(), req, cfg, report, port)
	if refused != "" {
		report.Result, report.Reason = failover.Refused, refused
		api.WriteJSON(w, http.StatusOK, report)
		return
	}
	api.WriteJSON(w, http.StatusAccepted, run.snapshot())
}

// serveFailoverStatus is GET /v1/failover-test: the running test's report
// so far, or the last one's.
func (c *Runner) serveFailoverStatus(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	run := c.current
	c.mu.Unlock()
	if run == nil {
		http.Error(w, "no failover test has run since the controller started", http.StatusNotFound)
		return
	}
	api.WriteJSON(w, http.StatusOK, run.snapshot())
}

// startFailover starts a run, or says why not: one runs already, here or
// (by the mark on its node) from another controller.
func (c *Runner) startFailover(ctx context.Context, req api.FailoverRequest, cfg *config.Config, plan api.FailoverReport, port int32) (*failoverRun, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.current; cur != nil {
		select {
		case <-cur.done:
		default:
			rep := cur.snapshot()
			return nil, fmt.Sprintf("a failover test of %s (mode %s, id %s) is running: one at a time; follow it with GET /v1/failover-test", rep.Service, rep.Mode, rep.ID)
		}
	}
	running, restored, err := c.restoreAbandoned(ctx)
	if err != nil {
		return nil, "the nodes' failover-test marks could not be read: " + err.Error()
	}
	for node, m := range running {
		return nil, fmt.Sprintf("a failover test of %s (id %s) holds %s until %s: one at a time", m.Service, m.ID, node, m.Until.UTC().Format(time.RFC3339))
	}
	ns, name, _ := strings.Cut(req.Service, "/")
	run := &failoverRun{c: c, req: req, cfg: cfg, vip: netip.MustParseAddr(plan.VIP), port: port, ns: ns, name: name, done: make(chan struct{}), report: plan}
	run.report.ID, run.report.Result = newRunID(), "running"
	// The run's whole life: the test, the journals and the restore.
	if held, err := c.takeFailoverLease(ctx, run.report.ID, run.timeout()+5*time.Minute); err != nil || held != "" {
		if err != nil {
			return nil, err.Error()
		}
		return nil, held
	}
	run.report.Restored = restored
	c.current = run
	go run.run()
	return run, ""
}

// probePort is the Service port the probe connects to: want, or the
// first TCP port; why says what is wrong.
func probePort(svc *corev1.Service, want int32) (int32, string) {
	for _, p := range svc.Spec.Ports {
		if p.Protocol != corev1.ProtocolTCP && p.Protocol != "" {
			continue
		}
		if want == 0 || p.Port == want {
			return p.Port, ""
		}
	}
	if want != 0 {
		return 0, fmt.Sprintf("port=%d: %s/%s has no TCP port %d", want, svc.Namespace, svc.Name, want)
	}
	return 0, fmt.Sprintf("%s/%s has no TCP port for the probe to connect to", svc.Namespace, svc.Name)
}

// probeNote says what the outage figure measures and its limits, or why
// there is none.
func probeNote(req api.FailoverRequest) string {
	if req.Probe == "" {
		return "no probe named, so the outage a client sees is not timed: a probe on a node would be answered by that node's own kube-proxy rules and never see the router's or the ARP owner's decision. Run `calico-lb probe --allow <the pools' ranges>` on a host outside the cluster that reaches the VIPs, and pass probe=http://HOST:9477"
	}
	return "outage-ms is timed by " + req.Probe + ": TCP connections to the VIP every 10 ms (each given 500 ms), from the first failure's last answer before it to the first answer after the last failure. It is what a client on that host sees (the router's or the ARP owner's choice of node, then kube-proxy, then the pod), not what clients elsewhere see; with ECMP some connections reach a healthy node throughout. Its clock is mapped to the controller's within half a request's round trip; the speakers' times are their nodes' clocks."
}

// failoverWorld gathers what the plan looks at: every Service's facts
// (the one under test, and the others the fault would touch), the
// speakers' reports, the nodes.
func (c *Runner) failoverWorld(r *http.Request, cfg *config.Config, key string) (failover.World, error) {
	w := failover.World{Mode: cfg.Mode}
	facts, err := c.opts.Services.Facts(r.Context(), "")
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
		if w.Speakers, err = c.opts.Speakers.Status(r.Context(), cfg, true); err != nil {
			return w, fmt.Errorf("the speakers' reports: %w", err)
		}
	}
	nodes, err := c.opts.Speakers.Nodes(r.Context(), cfg)
	if err != nil {
		return w, err
	}
	w.Nodes = nodes.Nodes
	return w, nil
}
