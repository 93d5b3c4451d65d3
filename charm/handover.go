package charm

import (
	"fmt"
	"net/http"
	"time"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

// A switch away from calico mode is make-before-break: calico keeps
// calico-lb's CIDRs in its service-IP option (and so keeps announcing the
// pools) until the speakers announce every IP; only then does the link
// take them out. The check is speakersAnnounce; the wait is handOver.

// speakersAnnounce judges the controller's view of the speakers: in mode,
// every speaker the DaemonSet wants runs, is ready and reports no error;
// in spine mode each that announces has an established session that got
// all its routes, in l2 mode each hears all the others (so the owners are
// settled). why says what is missing.
func speakersAnnounce(s api.Speakers, mode config.Mode) (ok bool, why string) {
	if s.Mode != mode {
		return false, fmt.Sprintf("the workload is still in %s mode", s.Mode)
	}
	if s.Desired == 0 {
		return false, "no speaker is scheduled yet (speaker-node-selector selects no node, or the DaemonSet is new)"
	}
	ready := 0
	for _, v := range s.Speakers {
		switch {
		case !v.Ready || v.Error != "":
			continue
		case v.BGP == nil || v.BGP.Mode != mode:
			continue
		case mode == config.ModeSpine && v.BGP.Announces && !sentAll(v.BGP):
			continue
		case mode == config.ModeL2 && (v.L2 == nil || v.L2.Error != "" || len(v.L2.Alive) < s.Desired):
			continue
		}
		ready++
	}
	if ready < s.Desired {
		return false, fmt.Sprintf("%d of %d speakers announce", ready, s.Desired)
	}
	return true, ""
}

// sentAll: a session is established and has every route the speaker
// announces.
func sentAll(b *api.BGPStatus) bool {
	for _, p := range b.Peers {
		if p.State == "established" && p.Routes >= len(b.Routes) {
			return true
		}
	}
	return false
}

// handOverLimit bounds how long a hook waits for the speakers; past it the
// hand-over completes in a later hook (update-status at the latest), and
// the status says what it waits for.
const handOverLimit = 90 * time.Second

// handOver runs after the config reached the workload, when the link kept
// calico-lb's CIDRs in calico for the speakers to take over: it waits for
// them to announce, then runs the link again, which takes the CIDRs out.
func (c *Charm) handOver() {
	o := c.link.outcome
	if o == nil || !o.HandOver {
		return
	}
	// Have the workload take in the config just pushed now rather than
	// at its next look at the file.
	var snap api.Snapshot
	_ = c.request(http.MethodPost, "/v1/reload", 10*time.Second, &snap)
	deadline := time.Now().Add(handOverLimit)
	for {
		var sp api.Speakers
		err := c.get("/v1/speakers", &sp)
		if err == nil {
			if ok, _ := speakersAnnounce(sp, c.cfg.Mode); ok {
				c.calicoLink()
				return
			}
		}
		if time.Now().After(deadline) {
			return // the status says why (the link's Kept); a later hook finishes
		}
		time.Sleep(time.Second)
	}
}
