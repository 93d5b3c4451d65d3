// Package failover is the failover test's logic: which node to fail, what
// failing it does, and whether the Service would have somewhere to go.
// It is pure; the controller gathers what it looks at and injects the
// fault.
package failover

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/attract"
	"github.com/calico-lb/calico-lb/workload/config"
)

// The modes: what fails.
const (
	ModePod     = "pod"
	ModeSpeaker = "speaker"
	ModeNode    = "node"
)

// Results.
const (
	Planned = "planned"
	Refused = "refused"
	Passed  = "passed"
	Failed  = "failed"
)

// World is what the plan looks at.
type World struct {
	Mode     config.Mode      // how the VIPs are announced
	Service  api.ServiceFacts // the Service under test
	Others   []api.ServiceFacts
	Speakers *api.Speakers
	Nodes    []api.NodeView
}

// Plan says what the test of req would do in w, or why it refuses: the
// Service has no address, nothing attracts its traffic now, the mode does
// not apply, or the fault would leave it nowhere to go (unless req.Force).
func Plan(req api.FailoverRequest, w World) api.FailoverReport {
	r := api.FailoverReport{Mode: req.Mode, Service: req.Service, Announcement: string(w.Mode), Result: Planned, AttractingBefore: []string{}, Steps: []string{}}
	refuse := func(format string, args ...any) api.FailoverReport {
		r.Result, r.Reason = Refused, fmt.Sprintf(format, args...)
		return r
	}
	switch req.Mode {
	case ModePod, ModeSpeaker, ModeNode:
	default:
		return refuse("mode %q: want pod, speaker or node", req.Mode)
	}
	if len(w.Service.IPs) == 0 {
		return refuse("%s has no load-balancer IP to test: see its events (`kubectl describe service`)", req.Service)
	}
	ip, err := netip.ParseAddr(w.Service.IPs[0])
	if err != nil {
		return refuse("%s: its IP %q does not parse", req.Service, w.Service.IPs[0])
	}
	r.VIP = ip.String()
	if req.Mode != ModePod && w.Mode == config.ModeCalico {
		return refuse("in calico mode Calico's BIRD announces the IPs and calico-lb runs no speakers: use mode=pod")
	}
	all := make([]string, 0, len(w.Nodes))
	for _, n := range w.Nodes {
		all = append(all, n.Name)
	}
	r.AttractingBefore, r.AttractedBy = attract.Nodes(w.Mode, w.Service, ip, w.Speakers, all)
	if len(r.AttractingBefore) == 0 {
		return refuse("nothing attracts %s's traffic now, so there is nothing to fail over: run the verify action first", r.VIP)
	}
	if req.Mode == ModePod && w.Service.TrafficPolicy != "Local" {
		// With Cluster, the attracting nodes forward to every endpoint:
		// relocate pods from a node that has some, one that attracts the
		// traffic too if there is one (the ARP owner in l2 mode may have
		// none).
		r.Target = firstOf(r.AttractingBefore, w.Service.EndpointNodes)
		if r.Target == "" && len(w.Service.EndpointNodes) > 0 {
			r.Target = slices.Min(w.Service.EndpointNodes)
		}
	} else {
		r.Target = r.AttractingBefore[0]
	}
	if r.Target == "" {
		return refuse("%s has no ready pod, so mode=pod would move nothing", req.Service)
	}
	r.Steps = steps(req, w.Mode, r.Target)
	r.Disrupts = disrupts(req, w, r.Target)
	if why := nowhere(req, w, r.Target); why != "" {
		if !req.Force {
			return refuse("%s; force=true runs it anyway", why)
		}
		r.Reason = "forced: " + why
	}
	return r
}

// nowhere says why failing target would leave the Service nowhere to go,
// or "".
func nowhere(req api.FailoverRequest, w World, target string) string {
	local := w.Service.TrafficPolicy == "Local"
	var schedulable, takeOver []string
	for _, n := range w.Nodes {
		if n.Name == target || !n.Ready {
			continue
		}
		if !n.Unschedulable {
			schedulable = append(schedulable, n.Name)
		}
		if w.Mode == config.ModeCalico || speakerUp(w.Speakers, n.Name) {
			takeOver = append(takeOver, n.Name)
		}
	}
	switch req.Mode {
	case ModePod:
		if len(schedulable) == 0 {
			return fmt.Sprintf("no other Ready, schedulable node than %s for %s's pods", target, req.Service)
		}
	case ModeSpeaker:
		if local {
			takeOver = intersect(takeOver, w.Service.EndpointNodes)
		}
		if len(takeOver) == 0 {
			what := "no other node's speaker could take over"
			if local {
				what = "no other node with one of its pods has a working speaker"
			}
			return fmt.Sprintf("%s for %s (externalTrafficPolicy %s)", what, req.Service, w.Service.TrafficPolicy)
		}
	case ModeNode:
		if len(intersect(takeOver, schedulable)) == 0 {
			return fmt.Sprintf("no other Ready, schedulable node with a working speaker than %s", target)
		}
	}
	return ""
}

// speakerUp: the node's speaker answers and, in spine mode, has a session.
func speakerUp(s *api.Speakers, node string) bool {
	if s == nil {
		return false
	}
	for _, sp := range s.Speakers {
		if sp.Node != node || sp.Error != "" || !sp.Ready {
			continue
		}
		if s.Mode == config.ModeL2 || sp.BGP != nil && slices.ContainsFunc(sp.BGP.Peers, func(p api.PeerStatus) bool { return p.State == "established" }) {
			return true
		}
	}
	return false
}

func steps(req api.FailoverRequest, mode config.Mode, target string) []string {
	stop := "kill the speaker on " + target + " (SIGKILL: it withdraws nothing, as in a crash) and hold it down"
	switch {
	case req.Graceful:
		stop = "stop the speaker on " + target + " gracefully (it withdraws its announcements first) and hold it down"
	case mode == config.ModeSpine:
		stop += ", so the router drops its routes by its own detection (BFD, the hold time, or the TCP session closing)"
	case mode == config.ModeL2:
		stop += ", so the other speakers take its IPs when its heartbeats stop"
	}
	var out []string
	switch req.Mode {
	case ModePod:
		out = []string{"cordon " + target, "delete " + req.Service + "'s pods on " + target + " (their controller starts replacements elsewhere)", "wait until a replacement is ready"}
	case ModeSpeaker:
		out = []string{stop}
	case ModeNode:
		out = []string{"cordon and drain " + target + " (evictions, honouring PodDisruptionBudgets)", stop}
	}
	if req.Probe != "" {
		out = append(out, "time the VIP's outage from the probe at "+req.Probe+" (TCP connections every 10 ms), until it answers again")
	} else {
		out = append(out, "wait until another node attracts the VIP's traffic (no probe named: the outage a client sees is not timed)")
	}
	restore := "start the speaker on " + target + " again"
	switch req.Mode {
	case ModePod:
		restore = "uncordon " + target
	case ModeNode:
		restore = "uncordon " + target + " and start its speaker again"
	}
	return append(out, restore+" (also on a timeout or an error)")
}

// disrupts says what else failing target touches.
func disrupts(req api.FailoverRequest, w World, target string) string {
	if req.Mode == ModePod {
		return req.Service + "'s pods on " + target + " are deleted; other workloads on " + target + " are not touched, but no new pod lands there until it is uncordoned"
	}
	attracted := attract.IPs(w.Mode, w.Speakers, target)
	var others []string
	for _, s := range w.Others {
		if s.Namespace+"/"+s.Name == req.Service {
			continue
		}
		if slices.ContainsFunc(s.IPs, func(a string) bool { ip, err := netip.ParseAddr(a); return err == nil && attracted[ip] }) {
			others = append(others, s.Namespace+"/"+s.Name)
		}
	}
	what := "every Service whose IP " + target + " attracts fails over with it"
	if req.Mode == ModeNode {
		what = "every pod on " + target + " is evicted, and every Service whose IP it attracts fails over with it"
	}
	if len(others) == 0 {
		return what + " (none but " + req.Service + " now)"
	}
	slices.Sort(others)
	if len(others) > 10 {
		return fmt.Sprintf("%s: %s and %d more", what, strings.Join(others[:10], ", "), len(others)-10)
	}
	return what + ": " + strings.Join(others, ", ")
}

func firstOf(ordered, set []string) string {
	for _, n := range ordered {
		if slices.Contains(set, n) {
			return n
		}
	}
	return ""
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
