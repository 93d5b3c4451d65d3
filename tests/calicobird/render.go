// Package calicobird stands in for Calico on the test beds' nodes, where
// calico-node cannot run (no images here, and its BIRD fork is not
// packaged): Debian's BIRD 2 on each node, configured as calico-node
// configures its BIRD for the calico charm's options. It is a stand-in for
// the tests and the demo, not an implementation of Calico.
//
// What it renders, per node, from the same option strings the Calico link
// reads (workload/calico.Parse):
//   - the node's AS: unit-as-numbers, else the subnet-as-numbers subnet
//     holding its address, else global-as-number;
//   - its peers: global-bgp-peers, the subnet-bgp-peers of subnets holding
//     its address, unit-bgp-peers for its unit, and with node-to-node-mesh
//     the other nodes;
//   - what it advertises: its pod CIDR; with bgp-service-loadbalancer-ips
//     and bgp-service-external-ips, each CIDR from every node (Calico's
//     serviceLoadBalancerIPs and serviceExternalIPs), and the /32 (/128) of
//     each externalTrafficPolicy Local Service inside them from the nodes
//     with a ready endpoint only.
package calicobird

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/calico-lb/calico-lb/workload/calico"
)

// Node is one calico node.
type Node struct {
	Name    string
	Unit    int // calico/N
	Address netip.Addr
	PodCIDR netip.Prefix
}

// AS is the node's AS number under c.
func AS(c *calico.Config, n Node) uint32 {
	if as, ok := c.UnitAS[n.Unit]; ok {
		return as
	}
	best := -1
	as := c.GlobalAS
	for p, a := range c.SubnetAS {
		if p.Contains(n.Address) && p.Bits() > best {
			best, as = p.Bits(), a
		}
	}
	return as
}

// Peer is a BGP neighbour of a node.
type Peer struct {
	Address netip.Addr
	AS      uint32
}

// Peers are the node's BGP neighbours under c, sorted, each once.
func Peers(c *calico.Config, n Node, all []Node) []Peer {
	var out []Peer
	add := func(ps []calico.Peer) {
		for _, p := range ps {
			out = append(out, Peer{Address: p.Address, AS: p.ASNumber})
		}
	}
	add(c.GlobalPeers)
	for _, sp := range c.SubnetPeers {
		if sp.Subnet.Contains(n.Address) {
			add(sp.Peers)
		}
	}
	for _, up := range c.UnitPeers {
		if up.Unit == n.Unit {
			add(up.Peers)
		}
	}
	if c.Mesh {
		for _, o := range all {
			if o.Name != n.Name {
				out = append(out, Peer{Address: o.Address, AS: AS(c, o)})
			}
		}
	}
	slices.SortFunc(out, func(a, b Peer) int { return a.Address.Compare(b.Address) })
	return slices.CompactFunc(out, func(a, b Peer) bool { return a.Address == b.Address })
}

// Advertised is what the node advertises: its pod CIDR, the service-IP
// CIDRs, and local, the /32s (/128s) of Local Services with a ready
// endpoint on it that fall inside those CIDRs.
func Advertised(c *calico.Config, n Node, local []netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	if n.PodCIDR.IsValid() {
		out = append(out, n.PodCIDR)
	}
	var cidrs []netip.Prefix
	for _, opt := range []string{calico.OptLoadBalancerIPs, calico.OptExternalIPs} {
		for _, s := range c.ServiceIPs[opt] {
			if p, err := netip.ParsePrefix(s); err == nil {
				cidrs = append(cidrs, p.Masked())
			}
		}
	}
	out = append(out, cidrs...)
	for _, ip := range local {
		if slices.ContainsFunc(cidrs, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// Render is the node's bird.conf: BGP only, IPv4, the advertised prefixes
// as static blackhole routes that are exported and never installed (no
// kernel protocol: the node forwards through kube-proxy and its own
// routes, as with Calico's).
func Render(c *calico.Config, n Node, all []Node, local []netip.Addr) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# calico-node's BIRD, stood in for by BIRD 2: node %s (calico/%d)\n", n.Name, n.Unit)
	fmt.Fprintf(&b, "router id %s;\nprotocol device {}\n", n.Address)
	b.WriteString("protocol static advertised {\n  ipv4;\n")
	for _, p := range Advertised(c, n, local) {
		if p.Addr().Is4() {
			fmt.Fprintf(&b, "  route %s blackhole;\n", p)
		}
	}
	b.WriteString("}\n")
	as := AS(c, n)
	for i, p := range Peers(c, n, all) {
		if !p.Address.Is4() {
			continue
		}
		fmt.Fprintf(&b, "protocol bgp peer%d {\n  local %s as %d;\n  neighbor %s as %d;\n", i, n.Address, as, p.Address, p.AS)
		b.WriteString("  ipv4 { import none; export where proto = \"advertised\"; next hop self; };\n}\n")
	}
	return b.String()
}
