package failover

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/calico-lb/calico-lb/workload/probe"
)

// Settle is how long the probe must keep getting answers before the test
// calls the VIP answering again: a route that flaps back is no recovery.
const Settle = time.Second

// Now is what a run sees at one moment after the fault.
type Now struct {
	Mode, Target, Policy string
	// Attracting are the nodes attracting the VIP's traffic (spine: whose
	// speakers announce it with a session up; l2: the ARP/NDP owner).
	Attracting []string
	// Ready maps the Service's ready pods to their nodes; ReadyBefore is
	// how many were ready before the fault; Removed the pods the test
	// deleted or evicted.
	Ready       map[string]string
	ReadyBefore int
	Removed     []string
	// Probe is what the probe saw so far (nil: no probe), settled up to
	// Probe.Settled.
	Probe *probe.Summary
}

// Waiting says what the Service still waits for after the fault, in
// words for the action's failure; nothing: it has recovered.
func Waiting(n Now) []string {
	var out []string
	if len(n.Attracting) == 0 {
		out = append(out, "no node attracts the VIP's traffic")
	} else if n.Mode != ModePod && slices.Contains(n.Attracting, n.Target) {
		out = append(out, n.Target+" still attracts the VIP's traffic")
	}
	var nodes []string
	for pod, node := range n.Ready {
		if slices.Contains(n.Removed, pod) {
			out = append(out, "removed pod "+pod+" is still a ready endpoint")
		}
		nodes = append(nodes, node)
	}
	switch {
	case len(n.Ready) == 0:
		out = append(out, "no ready endpoint")
	case n.Mode == ModePod && len(n.Ready) < n.ReadyBefore:
		out = append(out, fmt.Sprintf("%d of the %d ready endpoints before the fault", len(n.Ready), n.ReadyBefore))
	case n.Mode == ModeNode && !slices.ContainsFunc(nodes, func(s string) bool { return s != n.Target }):
		out = append(out, "no ready endpoint off "+n.Target)
	}
	if n.Policy == "Local" && len(n.Attracting) > 0 && len(n.Ready) > 0 && !slices.ContainsFunc(n.Attracting, func(a string) bool { return slices.Contains(nodes, a) }) {
		out = append(out, "no node that attracts the traffic has a ready endpoint (externalTrafficPolicy Local)")
	}
	if p := n.Probe; p != nil {
		last := time.Duration(0)
		if len(p.Windows) > 0 {
			last = p.Windows[len(p.Windows)-1].To
		}
		switch {
		case !p.Answering || len(p.Windows) > 0 && last == 0:
			out = append(out, "the VIP does not answer the probe")
		case p.Settled-last < Settle:
			out = append(out, fmt.Sprintf("the probe has had answers for less than %s", Settle))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Summary is the failure's reason: what was still missing.
func Summary(waiting []string) string { return strings.Join(waiting, "; ") }
