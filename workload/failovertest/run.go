package failovertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/attract"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/failover"
	"github.com/calico-lb/calico-lb/workload/probe"
)

// failoverRun is one failover test that injects its fault: it runs in
// its own goroutine, not the request's, so that an interrupted action
// still ends with everything restored.
type failoverRun struct {
	c    *Runner
	req  api.FailoverRequest
	cfg  *config.Config
	vip  netip.Addr
	port int32
	ns   string
	name string

	done chan struct{}

	mu     sync.Mutex // guards the fields below, read by GET while it runs
	report api.FailoverReport
	events []failover.Event
}

// Bounds of a run beyond the operator's timeout.
const (
	defaultFailoverTimeout = 120 * time.Second
	// holdSlack is how long after the timeout a stopped speaker and a
	// cordoned node stay so if nothing restores them (the controller
	// died): then the speaker resumes by itself and the next controller
	// uncordons.
	holdSlack  = 2 * time.Minute
	restoreFor = time.Minute
)

func newRunID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (r *failoverRun) timeout() time.Duration {
	if r.req.TimeoutSeconds > 0 {
		return time.Duration(r.req.TimeoutSeconds) * time.Second
	}
	return defaultFailoverTimeout
}

// step says what the run does now, for the action's log.
func (r *failoverRun) step(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.c.log.Info("failover test: "+msg, "id", r.report.ID)
	r.mu.Lock()
	r.report.Progress = append(r.report.Progress, msg)
	r.mu.Unlock()
}

func (r *failoverRun) record(e failover.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// snapshot is the report so far, with the timeline of what is known.
func (r *failoverRun) snapshot() api.FailoverReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.report
	rep.Progress = slices.Clone(rep.Progress)
	rep.Restored = slices.Clone(rep.Restored)
	if !rep.Injected.IsZero() {
		rep.Timeline = failover.Timeline(rep.Injected, r.events)
	}
	return rep
}

func (r *failoverRun) finish(result, reason string) {
	r.mu.Lock()
	r.report.Result, r.report.Reason = result, reason
	r.mu.Unlock()
}

// run is the test: the probe's baseline, the fault, the wait for the
// Service to answer again, the timeline, and the restore, always.
func (r *failoverRun) run() {
	defer close(r.done)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.c.releaseFailoverLease(ctx, r.report.ID); err != nil {
			r.c.log.Warn("the failover test's Lease stays until its time is up", "error", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout()+15*time.Second)
	defer cancel()
	result, reason := r.test(ctx)
	r.finish(result, reason)
	r.step("done: %s%s", result, map[bool]string{true: "", false: ": " + reason}[reason == ""])
}

func (r *failoverRun) test(ctx context.Context) (string, string) {
	target := r.report.Target
	pr, why := r.startProbe(ctx)
	if why != "" {
		return failover.Failed, why
	}
	defer pr.stop()
	ew, err := r.c.watchEndpoints(ctx, r.ns, r.name, r.record)
	if err != nil {
		return failover.Failed, "watch the Service's EndpointSlices: " + err.Error()
	}
	readyBefore := 0
	for _, st := range ew.pods() {
		if st.ready {
			readyBefore++
		}
	}

	// The fault. Whatever it did is put back, whatever happens next.
	until := time.Now().Add(r.timeout() + holdSlack)
	f := &faults{r: r, target: target, until: until}
	defer f.restore()
	t0 := time.Now()
	r.mu.Lock()
	r.report.Injected = t0
	r.mu.Unlock()
	r.record(failover.Event{At: t0, Event: "fault injected: mode " + r.req.Mode, Node: target, Source: failover.SourceController})
	if err := f.inject(ctx); err != nil {
		return failover.Failed, err.Error()
	}

	waiting := r.waitRecovery(ctx, f, ew, readyBefore, pr, t0)
	recovered := time.Since(t0)
	recoveredMs := recovered.Milliseconds()
	r.mu.Lock()
	r.report.RecoveredMs = &recoveredMs
	r.mu.Unlock()
	if len(waiting) == 0 {
		r.step("recovered: attracted by %s", strings.Join(r.snapshot().AttractingAfter, ", "))
	} else {
		r.step("timed out after %s, still waiting: %s", r.timeout(), failover.Summary(waiting))
	}
	r.probeOutage(pr, t0)
	f.restore()
	r.gatherJournals(t0, t0.Add(recovered))
	r.mu.Lock()
	r.report.Ends = r.ends(ew)
	r.mu.Unlock()
	if len(waiting) > 0 {
		return failover.Failed, "timed out after " + r.timeout().String() + ": " + failover.Summary(waiting)
	}
	return failover.Passed, ""
}

// waitRecovery waits until the Service has recovered from the fault
// injected at t0, or the timeout, and returns what it still waits for.
func (r *failoverRun) waitRecovery(ctx context.Context, f *faults, ew *endpointWatch, readyBefore int, pr *probeRun, t0 time.Time) []string {
	r.step("waiting (up to %s after the fault) for the VIP to be attracted elsewhere%s", r.timeout(), map[bool]string{true: " and to answer the probe again", false: ""}[pr != nil])
	deadline := t0.Add(r.timeout())
	for {
		now := failover.Now{Mode: r.req.Mode, Target: f.target, Policy: r.policy(), ReadyBefore: readyBefore, Removed: f.removed, Ready: map[string]string{}}
		for pod, st := range ew.pods() {
			if st.ready {
				now.Ready[pod] = st.node
			}
		}
		now.Attracting = r.attracting(ctx, now.Policy, now.Ready)
		now.Probe = pr.summary(ctx)
		r.mu.Lock()
		r.report.AttractingAfter = now.Attracting
		r.mu.Unlock()
		waiting := failover.Waiting(now)
		if len(waiting) == 0 || time.Now().After(deadline) {
			return waiting
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// probeRun is the probe agent's run for one test.
type probeRun struct {
	client  probe.Client
	started probe.Started
}

// startProbe starts the probe agent's run and takes its baseline: nil
// without a probe, or why it could not.
func (r *failoverRun) startProbe(ctx context.Context) (*probeRun, string) {
	if r.req.Probe == "" {
		return nil, ""
	}
	pr := &probeRun{client: probe.Client{Base: r.req.Probe, Token: r.req.ProbeToken}}
	hostport := net.JoinHostPort(r.vip.String(), strconv.Itoa(int(r.port)))
	r.step("probe %s: TCP connections to %s every 10 ms", r.req.Probe, hostport)
	var err error
	pr.started, err = pr.client.Start(ctx, probe.Request{Target: hostport, IntervalMs: 10, TimeoutMs: 500, ForMs: int((r.timeout() + time.Minute).Milliseconds())})
	if err != nil {
		return nil, "the probe could not start: " + err.Error()
	}
	if err := r.baseline(ctx, pr.client, pr.started.ID); err != nil {
		pr.stop()
		return nil, err.Error()
	}
	return pr, ""
}

// stop ends the run (again: the agent answers a stopped run as it was).
func (pr *probeRun) stop() {
	if pr == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = pr.client.Stop(ctx, pr.started.ID)
}

// summary is what the probe saw so far (empty if it cannot say); nil
// without a probe.
func (pr *probeRun) summary(ctx context.Context) *probe.Summary {
	if pr == nil {
		return nil
	}
	if rep, err := pr.client.Get(ctx, pr.started.ID); err == nil {
		return &rep.Summary
	}
	return &probe.Summary{}
}

// probeOutage records what the probe saw, final: its events and the
// outage since the fault at t0.
func (r *failoverRun) probeOutage(pr *probeRun, t0 time.Time) {
	if pr == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	rep, err := pr.client.Stop(ctx, pr.started.ID)
	cancel()
	if err != nil {
		r.step("the probe's last report could not be read: %v", err)
		return
	}
	outage, open, evs := failover.Outage(t0, pr.started, rep.Summary)
	for _, e := range evs {
		r.record(e)
	}
	if !open {
		ms := outage.Milliseconds()
		r.mu.Lock()
		r.report.OutageMs = &ms
		r.mu.Unlock()
	}
}

// ends says where the Service ended up: Kubernetes places its pods, and
// the test does not move them back.
func (r *failoverRun) ends(ew *endpointWatch) string {
	count := map[string]int{}
	for _, st := range ew.pods() {
		if st.ready {
			count[st.node]++
		}
	}
	var on []string
	for _, n := range slices.Sorted(maps.Keys(count)) {
		on = append(on, fmt.Sprintf("%d on %s", count[n], n))
	}
	where := "no ready pod"
	if len(on) > 0 {
		where = "ready pods: " + strings.Join(on, ", ")
	}
	switch r.req.Mode {
	case failover.ModeSpeaker:
		return fmt.Sprintf("%s has %s; its pods were not touched", r.req.Service, where)
	default:
		return fmt.Sprintf("%s has %s, where Kubernetes put them: the test does not move pods back after it uncordons %s", r.req.Service, where, r.report.Target)
	}
}

func (r *failoverRun) policy() string {
	if s, err := r.c.opts.Services.Served(r.req.Service, r.cfg.LoadBalancerClass); err == nil {
		return string(s.Spec.ExternalTrafficPolicy)
	}
	return ""
}

// baseline waits (5 s at most) for the probe to get answers before the
// fault: a VIP the probe host cannot reach is no test of failover.
func (r *failoverRun) baseline(ctx context.Context, pr probe.Client, id string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		rep, err := pr.Get(ctx, id)
		if err == nil && rep.Summary.Answering {
			return nil
		}
		if time.Now().After(deadline) {
			why := "it got no answer"
			if err != nil {
				why = err.Error()
			} else if n := len(rep.Summary.Windows); n > 0 {
				why = rep.Summary.Windows[n-1].Reason
			}
			return fmt.Errorf("the VIP does not answer the probe before the fault (%s): make %s reachable from the probe host first; nothing was changed", why, r.vip)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// attracting is which nodes attract the VIP's traffic now: the speakers'
// reports in spine and l2 mode; in calico mode every node (Cluster), or
// the nodes with a ready endpoint (Local), which is the only time the
// nodes are listed.
func (r *failoverRun) attracting(ctx context.Context, policy string, ready map[string]string) []string {
	facts := api.ServiceFacts{Namespace: r.ns, Name: r.name, TrafficPolicy: policy}
	for _, n := range ready {
		facts.EndpointNodes = append(facts.EndpointNodes, n)
	}
	var speakers *api.Speakers
	var all []string
	if r.cfg.Mode != config.ModeCalico {
		s, err := r.c.opts.Speakers.Status(ctx, r.c.opts.Config(), true)
		if err != nil {
			return nil
		}
		speakers = s
	} else if nodes, err := r.c.opts.Speakers.Nodes(ctx, r.c.opts.Config()); err == nil {
		for _, n := range nodes.Nodes {
			all = append(all, n.Name)
		}
	}
	got, _ := attract.Nodes(r.cfg.Mode, facts, r.vip, speakers, all)
	return got
}

// gatherJournals reads every speaker's journal since just before the
// fault into the timeline, and the announcements' convergence from what
// happened up to the recovery.
func (r *failoverRun) gatherJournals(t0, recovered time.Time) {
	if r.cfg.Mode == config.ModeCalico {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	journals, err := r.c.opts.Speakers.Journals(ctx, t0.Add(-2*time.Second), r.vip)
	if err != nil {
		r.step("the speakers' journals could not be read: %v", err)
	}
	var evs []failover.Event
	for _, j := range journals {
		evs = append(evs, failover.JournalEvents(j, r.vip)...)
	}
	var upTo []failover.Event
	for _, e := range evs {
		r.record(e)
		if !e.At.After(recovered) {
			upTo = append(upTo, e)
		}
	}
	ms := failover.Converged(t0, upTo, r.vip).Milliseconds()
	r.mu.Lock()
	r.report.ConvergedMs = &ms
	r.mu.Unlock()
}
