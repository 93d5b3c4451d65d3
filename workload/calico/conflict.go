package calico

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/calico-lb/calico-lb/workload/config"
)

// Conflict is a spine peer that is also one of Calico's BGP peers for a
// machine both would use: a second session between the same pair of
// machines, which BGP's collision handling rejects (one of the two is torn
// down), so one of Calico and calico-lb would lose its routes.
type Conflict struct {
	Peer netip.Addr
	// Spine is where calico-lb has it: "spine-peers" or
	// "subnet-spine-peers[CIDR]".
	Spine string
	// Calico is where Calico has it: "global-bgp-peers",
	// "subnet-bgp-peers[CIDR]", "unit-bgp-peers[N]", "node-to-node-mesh"
	// or "route-reflector-cluster-ids".
	Calico string
}

func (c Conflict) String() string {
	return fmt.Sprintf("spine peer %s (%s) is also Calico's BGP peer (calico %s): a second session between the same machines, which BGP rejects; peer with a spine router Calico does not use, or set peering-mode=calico",
		c.Peer, c.Spine, c.Calico)
}

// Nodes are node addresses (InternalIPs). Unknown (nil) makes the rule
// conservative: every subnet that could hold a speaker node counts, and
// the mesh is not checked.
type Nodes []netip.Addr

// Topology is where the speakers run and which nodes the cluster has
// (each a Calico node, in the mesh or behind route reflectors).
type Topology struct {
	Speakers Nodes
	Cluster  Nodes
}

// Conflicts applies the rule. A spine peer conflicts when, for some speaker
// node it applies to, Calico on that node peers with the same address:
// through global-bgp-peers (every node), subnet-bgp-peers (nodes in that
// subnet), unit-bgp-peers (some unit; calico-lb cannot tell which node a
// calico unit is on, so any), or, when the address is a cluster node's
// own, the node-to-node mesh (mesh on) or a route reflector (mesh off,
// cluster IDs set).
func Conflicts(bgp config.BGP, c *Config, topo Topology) []Conflict {
	nodes := topo.Speakers
	type spinePeer struct {
		addr   netip.Addr
		where  string
		subnet netip.Prefix // invalid for spine-peers (every speaker node)
	}
	var spine []spinePeer
	for _, p := range bgp.Peers {
		spine = append(spine, spinePeer{addr: p.Address, where: "spine-peers"})
	}
	for _, sp := range bgp.SubnetPeers {
		for _, p := range sp.Peers {
			spine = append(spine, spinePeer{addr: p.Address, where: "subnet-spine-peers[" + sp.Subnet.String() + "]", subnet: sp.Subnet})
		}
	}
	var out []Conflict
	add := func(sp spinePeer, calico string) {
		cf := Conflict{Peer: sp.addr, Spine: sp.where, Calico: calico}
		if !slices.Contains(out, cf) {
			out = append(out, cf)
		}
	}
	for _, sp := range spine {
		if hasPeer(c.GlobalPeers, sp.addr) && sharesNode(sp.subnet, netip.Prefix{}, nodes) {
			add(sp, OptGlobalPeers)
		}
		for _, cs := range c.SubnetPeers {
			if hasPeer(cs.Peers, sp.addr) && sharesNode(sp.subnet, cs.Subnet, nodes) {
				add(sp, OptSubnetPeers+"["+cs.Subnet.String()+"]")
			}
		}
		for _, up := range c.UnitPeers {
			if hasPeer(up.Peers, sp.addr) {
				add(sp, fmt.Sprintf("%s[%d]", OptUnitPeers, up.Unit))
			}
		}
		if slices.Contains(topo.Cluster, sp.addr) {
			switch {
			case c.Mesh:
				add(sp, OptMesh)
			case len(c.RouteReflectors) > 0:
				add(sp, OptRouteReflectors)
			}
		}
	}
	return out
}

func hasPeer(ps []Peer, a netip.Addr) bool {
	for _, p := range ps {
		if p.Address == a {
			return true
		}
	}
	return false
}

// sharesNode reports whether a speaker node exists that both a spine peer
// scoped to ours (invalid: every speaker node) and a Calico peer scoped to
// theirs (invalid: every node) apply to.
func sharesNode(ours, theirs netip.Prefix, nodes Nodes) bool {
	if nodes == nil {
		return !ours.IsValid() || !theirs.IsValid() || ours.Overlaps(theirs)
	}
	for _, n := range nodes {
		if (!ours.IsValid() || ours.Contains(n)) && (!theirs.IsValid() || theirs.Contains(n)) {
			return true
		}
	}
	return false
}

// Summary is one line for the unit's status: the first conflict and how
// many more there are.
func Summary(cs []Conflict) string {
	if len(cs) == 0 {
		return ""
	}
	s := cs[0].String()
	if len(cs) > 1 {
		s += fmt.Sprintf(" (and %d more)", len(cs)-1)
	}
	return s
}

// Decision is the mode auto picked and why.
type Decision struct {
	Mode   config.Mode
	Reason string
}

// Decide is `auto` with what the Calico link read (read): spine when
// spine peers are set and none is Calico's; calico when there are none and
// Calico peers with routers outside the cluster. Anything else it cannot
// decide without guessing (a spine peer that is Calico's, or a Calico
// with no router to announce to), and Mode is "": the charm is blocked and
// Reason names the choices. Without the link, config.FromOptions decides
// what it can.
func Decide(bgp config.BGP, conflicts []Conflict, read *Config) Decision {
	hasSpine := len(bgp.Peers) > 0 || len(bgp.SubnetPeers) > 0
	var external []string
	if read != nil {
		external = read.ExternalPeers()
	}
	switch {
	case hasSpine && len(conflicts) == 0:
		return Decision{config.ModeSpine, "spine peers are set and none is Calico's"}
	case hasSpine:
		return Decision{"", fmt.Sprintf("spine peer %s is also Calico's peer (calico %s), and auto does not choose which routers learn the VIPs: set peering-mode=calico to have Calico announce the pools to its peers, or peer with spine routers Calico does not use", conflicts[0].Peer, conflicts[0].Calico)}
	case len(external) > 0:
		return Decision{config.ModeCalico, "no spine peers; Calico peers with " + strings.Join(external, ", ")}
	}
	return Decision{"", fmt.Sprintf("no spine peers, and Calico peers with no router outside the cluster (no %s, %s or %s), so nobody would learn the VIPs: set peering-mode=l2 if the nodes and their clients share one L2 segment, peering-mode=spine with spine-peers, or give Calico its routers and keep auto", OptGlobalPeers, OptSubnetPeers, OptUnitPeers)}
}
