package charm

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gruyaume/goops"

	"github.com/calico-lb/calico-lb/workload/api"
)

// failoverPoll is how often the action asks the workload how its test
// goes.
var failoverPoll = 500 * time.Millisecond

// failoverTest asks the workload to run (or with dry-run, plan) the
// failover test of a Service, logs each step as the workload takes it
// (action-log, which `juju run` shows as it happens) and waits for the end:
// up to the test's timeout, and the restore after it. A refusal or a
// failure fails the action, with the results so far.
func (c *Charm) failoverTest() (map[string]string, error) {
	var p struct {
		Service  string `json:"service"`
		Mode     string `json:"mode"`
		Probe    string `json:"probe"`
		Token    string `json:"probe-token"`
		Graceful bool   `json:"graceful"`
		Force    bool   `json:"force"`
		DryRun   bool   `json:"dry-run"`
		Port     int32  `json:"port"`
		Timeout  int    `json:"timeout"`
	}
	if err := goops.GetActionParams(&p); err != nil || p.Service == "" {
		return nil, errors.New("give the Service as service=namespace/name")
	}
	if p.Mode == "" {
		p.Mode = "speaker"
	}
	if p.Timeout <= 0 {
		p.Timeout = 120
	}
	req := api.FailoverRequest{Service: p.Service, Mode: p.Mode, Graceful: p.Graceful, Force: p.Force, DryRun: p.DryRun,
		Port: p.Port, Probe: strings.TrimSuffix(p.Probe, "/"), ProbeToken: p.Token, TimeoutSeconds: p.Timeout}
	if !p.DryRun {
		// The controller may cordon, evict and delete pods only while a
		// test runs: granted now, taken back when it ends (or, if a
		// controller died mid-test, once the restore removed its mark).
		if err := c.access("on"); err != nil {
			return nil, fmt.Errorf("the failover test's powers: %w", err)
		}
		defer func() {
			if err := c.access("auto"); err != nil {
				goops.LogWarningf("the failover test's powers stay until the next hook takes them back: %v", err)
			}
		}()
	}
	var r api.FailoverReport
	if err := c.send(http.MethodPost, "/v1/failover-test", 30*time.Second, req, &r); err != nil {
		return nil, err
	}
	if r.Result == "running" {
		var err error
		if r, err = c.followFailover(r, time.Duration(p.Timeout)*time.Second); err != nil {
			res := failoverResults(r)
			_ = goops.SetActionResults(res)
			return nil, err
		}
	}
	res := failoverResults(r)
	switch r.Result {
	case "refused", "failed":
		_ = goops.SetActionResults(res)
		return nil, fmt.Errorf("%s: %s", r.Result, r.Reason)
	}
	return res, nil
}

// followFailover polls the running test, logging its new steps, until it
// ends: the test's timeout, then up to two minutes for the journals and
// the restore.
func (c *Charm) followFailover(r api.FailoverReport, timeout time.Duration) (api.FailoverReport, error) {
	logged := 0
	deadline := time.Now().Add(timeout + 2*time.Minute)
	for {
		for ; logged < len(r.Progress); logged++ {
			_ = goops.ActionLogf("%s", r.Progress[logged])
		}
		if r.Result != "running" {
			return r, nil
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("the workload's test %s has not ended %s after its timeout; it restores by itself: follow it with GET /v1/failover-test", r.ID, 2*time.Minute)
		}
		time.Sleep(failoverPoll)
		var next api.FailoverReport
		if err := c.send(http.MethodGet, "/v1/failover-test", 10*time.Second, nil, &next); err != nil {
			continue // the workload may be busy; the deadline bounds this
		}
		if next.ID != r.ID {
			return r, fmt.Errorf("the workload no longer reports test %s (it restarted?): its nodes are restored by the next controller", r.ID)
		}
		r = next
	}
}

// failoverResults lays a report out as action results: the figures,
// timeline.N.*, and the plan or timeline as a table.
func failoverResults(r api.FailoverReport) map[string]string {
	res := map[string]string{"result": r.Result, "mode": r.Mode, "service": r.Service, "vip": r.VIP, "announcement": r.Announcement,
		"attracting-nodes-before": strings.Join(r.AttractingBefore, ","), "target": r.Target, "disrupts": r.Disrupts}
	if r.Reason != "" {
		res["reason"] = r.Reason
	}
	if r.Probe != "" {
		res["probe"] = r.Probe
	}
	var t strings.Builder
	fmt.Fprintf(&t, "%s (%s): %s %s\n", r.Service, r.VIP, r.AttractedBy, strings.Join(r.AttractingBefore, ", "))
	for i, s := range r.Steps {
		res["steps."+strconv.Itoa(i)] = s
		fmt.Fprintf(&t, "%d. %s\n", i+1, s)
	}
	if r.Disrupts != "" {
		fmt.Fprintf(&t, "disrupts: %s\n", r.Disrupts)
	}
	res["plan"] = t.String()
	if r.ID == "" {
		return res
	}
	res["id"] = r.ID
	res["attracting-nodes-after"] = strings.Join(r.AttractingAfter, ",")
	if r.OutageMs != nil {
		res["outage-ms"] = strconv.FormatInt(*r.OutageMs, 10)
	}
	if r.ConvergedMs != nil {
		res["announcements-converged-ms"] = strconv.FormatInt(*r.ConvergedMs, 10)
	}
	if r.RecoveredMs != nil {
		res["recovered-ms"] = strconv.FormatInt(*r.RecoveredMs, 10)
	}
	if !r.Injected.IsZero() {
		res["injected-at"] = r.Injected.UTC().Format(time.RFC3339Nano)
	}
	var tl strings.Builder
	tw := tabwriter.NewWriter(&tl, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "T (ms)\tNODE\tEVENT\tSOURCE")
	for i, e := range r.Timeline {
		k := "timeline." + strconv.Itoa(i) + "."
		res[k+"t-ms"], res[k+"event"], res[k+"source"] = strconv.FormatInt(e.TMs, 10), e.Event, e.Source
		if e.Node != "" {
			res[k+"node"] = e.Node
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.TMs, e.Node, e.Event, e.Source)
	}
	_ = tw.Flush()
	res["timeline"] = tl.String()
	for i, s := range r.Restored {
		res["restored."+strconv.Itoa(i)] = s
	}
	if r.Ends != "" {
		res["ends"] = r.Ends
	}
	return res
}
