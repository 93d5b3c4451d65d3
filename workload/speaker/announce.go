// Package speaker announces LoadBalancer IPs from a node: by BGP in spine
// mode (bgp.go), by ARP/NDP in l2 mode. What a node announces is a pure
// function of the config, the node, the Services and their endpoints
// (Announcements), so it is tested without a cluster.
package speaker

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/lbservice"
)

// Route is one announcement: a Service IP as a /32 or /128 with this
// node's own address of that family as next hop.
type Route struct {
	Prefix      netip.Prefix
	NextHop     netip.Addr
	Communities []config.Community // sorted by how they are written
	LocalPref   uint32             // 0: the router's default
	Services    []string           // namespace/name of every Service on this IP, sorted
}

func (r Route) String() string {
	return fmt.Sprintf("%s via %s (%s)", r.Prefix, r.NextHop, strings.Join(r.Services, ", "))
}

// Node is what the speaker knows of its own node.
type Node struct {
	Name      string
	Labels    map[string]string
	Addresses []netip.Addr // the node's InternalIPs, at most one per family is used
}

// NodeFrom reads a Node object.
func NodeFrom(n *corev1.Node) Node {
	out := Node{Name: n.Name, Labels: n.Labels}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out.Addresses = append(out.Addresses, ip.Unmap())
		}
	}
	return out
}

// address returns the node's address of the family of ip.
func (n Node) address(ip netip.Addr) (netip.Addr, bool) {
	for _, a := range n.Addresses {
		if a.Is4() == ip.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// Selected reports whether speakers run on the node (speaker-node-selector).
func Selected(cfg *config.Config, n Node) bool { return cfg.Speakers.Selects(n.Labels) }

// EndpointsOf returns the EndpointSlices of a Service.
type EndpointsOf func(namespace, service string) []*discoveryv1.EndpointSlice

// Announcements computes the routes node announces in spine mode:
//   - every IP in the status of a Service calico-lb serves, if the IP lies
//     in one of the config's pools (addresses of other load balancers are
//     not ours to announce);
//   - from every selected node for externalTrafficPolicy Cluster, and only
//     from nodes with a ready endpoint of the Service for Local, so that no
//     node attracts traffic it would drop;
//   - with the pool's communities and local-pref; a shared IP is one route.
func Announcements(cfg *config.Config, node Node, services []*corev1.Service, endpoints EndpointsOf) []Route {
	if cfg.Mode != config.ModeSpine {
		return nil
	}
	if !Selected(cfg, node) {
		return nil
	}
	byPrefix := map[netip.Prefix]*Route{}
	for _, svc := range services {
		if !lbservice.Managed(svc, cfg.LoadBalancerClass) {
			continue
		}
		ips := lbservice.IngressOf(svc)
		if len(ips) == 0 {
			continue
		}
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && !hasLocalEndpoint(endpoints(svc.Namespace, svc.Name), node.Name) {
			continue
		}
		for _, ip := range ips {
			pool := poolOf(cfg, ip)
			if pool == nil {
				continue
			}
			nh, ok := node.address(ip)
			if !ok {
				continue
			}
			pfx := netip.PrefixFrom(ip, ip.BitLen())
			r := byPrefix[pfx]
			if r == nil {
				r = &Route{Prefix: pfx, NextHop: nh, LocalPref: pool.LocalPref}
				byPrefix[pfx] = r
			}
			for _, c := range pool.Communities {
				if !slices.Contains(r.Communities, c) {
					r.Communities = append(r.Communities, c)
				}
			}
			r.Services = append(r.Services, svc.Namespace+"/"+svc.Name)
		}
	}
	out := make([]Route, 0, len(byPrefix))
	for _, r := range byPrefix {
		slices.SortFunc(r.Communities, func(a, b config.Community) int { return strings.Compare(a.String(), b.String()) })
		slices.Sort(r.Services)
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Route) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return out
}

func poolOf(cfg *config.Config, ip netip.Addr) *config.Pool {
	for i := range cfg.Pools {
		for _, r := range cfg.Pools[i].Addresses {
			if r.Contains(ip) {
				return &cfg.Pools[i]
			}
		}
	}
	return nil
}

// hasLocalEndpoint reports whether one of the slices has a ready endpoint
// on the node. An unset ready condition counts as ready, as the API says.
func hasLocalEndpoint(slices []*discoveryv1.EndpointSlice, node string) bool {
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || *ep.NodeName != node {
				continue
			}
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				return true
			}
		}
	}
	return false
}
