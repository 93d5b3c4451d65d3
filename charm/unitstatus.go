package charm

import (
	"net/http"
	"strings"
	"time"

	"github.com/calico-lb/calico-lb/charm/status"
	"github.com/calico-lb/calico-lb/workload/api"
)

// Status is the unit status after the steps ran: what the hook's own
// outcome imposes (hookStatus), else the workload's, which it asks for
// (readWorkload) and then judges (workloadStatus).
func (c *Charm) Status() status.Status {
	if st, ok := c.hookStatus(); ok {
		return st
	}
	return c.workloadStatus(c.readWorkload())
}

// workloadView is what the status needs from the workload's local API.
type workloadView struct {
	snap    api.Snapshot
	change  api.PoolChange
	waiting string // why the workload's figures are not to be had yet
}

// readWorkload fetches the workload's figures, first making sure it has
// taken in the config file just pushed, so that the status speaks of the
// new config (a pool change it holds back, say) in this very hook.
func (c *Charm) readWorkload() workloadView {
	var v workloadView
	if err := c.get("/v1/allocations", &v.snap); err != nil {
		v.waiting = "waiting for the workload's API: " + err.Error()
		return v
	}
	// A pushed file the workload rejected counts as taken in: the status
	// then says why it was rejected rather than waiting for it.
	takenIn := func() bool {
		return v.snap.ConfigDigest == c.cfgDigest || v.snap.RejectedConfigDigest == c.cfgDigest
	}
	if c.cfgDigest != "" && !takenIn() {
		// A file pushed in this hook (or one the workload missed): have it
		// read now.
		if err := c.request(http.MethodPost, "/v1/reload", 10*time.Second, &v.snap); err != nil {
			v.waiting = "waiting for the workload to reload its config: " + err.Error()
			return v
		}
		if !takenIn() {
			v.waiting = "waiting for the workload to take in the new config"
			return v
		}
	}
	if v.snap.PendingChange {
		_ = c.get("/v1/pool-change", &v.change) // the status still says a change is held back without the names
	}
	return v
}

// hookStatus is the status the hook's outcome imposes whatever the
// workload says, if any; it does no I/O.
func (c *Charm) hookStatus() (status.Status, bool) {
	switch {
	case c.cfgErr != nil:
		return status.InvalidConfig(c.cfgErr), true
	case c.pwErr != nil:
		return status.Status{Name: "blocked", Message: c.pwErr.Error()}, true
	case c.accessErr != nil:
		return status.Status{Name: "blocked", Message: c.accessErr.Error()}, true
	}
	if name, msg, ok := c.linkStatus(); ok {
		return status.Status{Name: name, Message: msg}, true
	}
	switch {
	case !c.facts.pebbleReady:
		return status.Status{Name: "waiting", Message: "waiting for the workload container's Pebble"}, true
	case !c.planned:
		return status.Status{Name: "maintenance", Message: "configuring the workload"}, true
	}
	return status.Status{}, false
}

// workloadStatus judges the workload's figures; it does no I/O.
func (c *Charm) workloadStatus(v workloadView) status.Status {
	if v.waiting != "" {
		return status.Status{Name: "waiting", Message: v.waiting}
	}
	st := status.FromWorkload(v.snap, v.change)
	if st.Name == "active" {
		if c.modeReason != "" {
			st.Message = strings.Replace(st.Message, " mode;", " mode (auto: "+c.modeReason+");", 1)
		}
		if c.link.hint != "" {
			st.Message += "; no Calico link, so run: " + c.link.hint
		}
	}
	return st
}
