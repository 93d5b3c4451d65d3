// Package attract says which nodes attract a load-balancer IP's traffic,
// from what the speakers report: the verify action checks it, and the
// failover test picks from it the node to fail. It is pure.
package attract

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

// Nodes returns the nodes that attract ip's traffic now, sorted, and how
// they do it (for messages):
//   - spine: the speakers that announce its /32 (/128) and have at least
//     one session established;
//   - l2: the speakers that answer ARP/NDP for it (more than one is a
//     fault the caller reports);
//   - calico: Calico advertises from every node for Cluster, and from the
//     nodes with a ready endpoint for Local (all, the cluster's nodes).
func Nodes(mode config.Mode, s api.ServiceFacts, ip netip.Addr, speakers *api.Speakers, all []string) ([]string, string) {
	var nodes []string
	var how string
	switch mode {
	case config.ModeSpine:
		how = "announced by BGP from"
		route := netip.PrefixFrom(ip, ip.BitLen()).String()
		for _, sp := range views(speakers) {
			// Routes read "10.0.0.5/32 via 10.1.0.2 (ns/web)".
			if sp.BGP == nil || !slices.ContainsFunc(sp.BGP.Routes, func(r string) bool { return r == route || strings.HasPrefix(r, route+" ") }) {
				continue
			}
			if slices.ContainsFunc(sp.BGP.Peers, func(p api.PeerStatus) bool { return p.State == "established" }) {
				nodes = append(nodes, sp.Node)
			}
		}
	case config.ModeL2:
		how = "ARP/NDP owner"
		for _, sp := range views(speakers) {
			if sp.L2 != nil && slices.Contains(sp.L2.Owned, ip.String()) {
				nodes = append(nodes, sp.Node)
			}
		}
	case config.ModeCalico:
		how = "advertised by Calico from"
		nodes = slices.Clone(all)
		if s.TrafficPolicy == "Local" {
			nodes = slices.Clone(s.EndpointNodes)
		}
	}
	slices.Sort(nodes)
	return slices.Compact(nodes), how
}

// IPs returns the load-balancer IPs node attracts by its own speaker's
// report (spine: the routes it announces, with a session up; l2: the IPs
// it answers for): one pass over that report, where asking Nodes for each
// Service would go through every speaker's routes each time. Calico mode
// has no speakers' reports: nil.
func IPs(mode config.Mode, speakers *api.Speakers, node string) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, sp := range views(speakers) {
		if sp.Node != node {
			continue
		}
		switch {
		case mode == config.ModeSpine && sp.BGP != nil && slices.ContainsFunc(sp.BGP.Peers, func(p api.PeerStatus) bool { return p.State == "established" }):
			for _, r := range sp.BGP.Routes {
				pfx, _, _ := strings.Cut(r, " ")
				if p, err := netip.ParsePrefix(pfx); err == nil && p.IsSingleIP() {
					out[p.Addr()] = true
				}
			}
		case mode == config.ModeL2 && sp.L2 != nil:
			for _, s := range sp.L2.Owned {
				if a, err := netip.ParseAddr(s); err == nil {
					out[a] = true
				}
			}
		}
	}
	return out
}

func views(s *api.Speakers) []api.SpeakerView {
	if s == nil {
		return nil
	}
	return s.Speakers
}
