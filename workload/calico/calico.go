// Package calico models the calico charm's BGP options, as calico-lb reads
// them over the Juju API: who Calico peers with (to spot a second session
// between the same machines), and the service-IP options that make Calico
// advertise our pools. Pure logic: no Juju, no Kubernetes.
package calico

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/calico-lb/calico-lb/workload/config"
)

// The calico charm's options that calico-lb reads or writes.
const (
	OptGlobalPeers      = "global-bgp-peers"
	OptSubnetPeers      = "subnet-bgp-peers"
	OptUnitPeers        = "unit-bgp-peers"
	OptGlobalAS         = "global-as-number"
	OptSubnetAS         = "subnet-as-numbers"
	OptUnitAS           = "unit-as-numbers"
	OptMesh             = "node-to-node-mesh"
	OptRouteReflectors  = "route-reflector-cluster-ids"
	OptLoadBalancerIPs  = "bgp-service-loadbalancer-ips"
	OptExternalIPs      = "bgp-service-external-ips"
	defaultCalicoGlobal = 64512
)

// Options lists the options Parse reads, for the Juju client's request.
var Options = []string{OptGlobalPeers, OptSubnetPeers, OptUnitPeers, OptGlobalAS, OptSubnetAS, OptUnitAS,
	OptMesh, OptRouteReflectors, OptLoadBalancerIPs, OptExternalIPs}

// Peer is one of Calico's BGP peers.
type Peer struct {
	Address  netip.Addr
	ASNumber uint32
}

// SubnetPeers are the peers of the calico nodes whose address is in Subnet
// (every matching subnet applies, as in the calico charm).
type SubnetPeers struct {
	Subnet netip.Prefix
	Peers  []Peer
}

// UnitPeers are the peers of one calico unit (calico/N).
type UnitPeers struct {
	Unit  int
	Peers []Peer
}

// Config is the calico charm's BGP configuration.
type Config struct {
	GlobalPeers []Peer
	SubnetPeers []SubnetPeers // sorted by subnet
	UnitPeers   []UnitPeers   // sorted by unit
	GlobalAS    uint32
	SubnetAS    map[netip.Prefix]uint32
	UnitAS      map[int]uint32
	Mesh        bool
	// RouteReflectors maps calico unit numbers to their cluster ID.
	RouteReflectors map[int]string
	// ServiceIPs holds the service-IP options the charm has, by option
	// name (an option missing from the map does not exist in this calico
	// revision).
	ServiceIPs map[string][]string
}

// ExternalPeers lists the BGP peers Calico has outside the cluster, each
// with the option that names it: the routers that learn what Calico
// advertises. node-to-node-mesh and route reflectors reach only nodes.
func (c *Config) ExternalPeers() []string {
	var out []string
	for _, p := range c.GlobalPeers {
		out = append(out, fmt.Sprintf("%s (%s)", p.Address, OptGlobalPeers))
	}
	for _, sp := range c.SubnetPeers {
		for _, p := range sp.Peers {
			out = append(out, fmt.Sprintf("%s (%s, nodes in %s)", p.Address, OptSubnetPeers, sp.Subnet))
		}
	}
	for _, up := range c.UnitPeers {
		for _, p := range up.Peers {
			out = append(out, fmt.Sprintf("%s (%s, calico/%d)", p.Address, OptUnitPeers, up.Unit))
		}
	}
	return out
}

// Has reports whether calico has the option (older revisions lack
// bgp-service-loadbalancer-ips).
func (c *Config) Has(option string) bool {
	_, ok := c.ServiceIPs[option]
	return ok
}

// Parse reads calico's option values as Juju reports them (strings,
// booleans and numbers; numbers may be float64 from JSON). It returns
// every problem calico itself would choke on, each naming the option.
func Parse(values map[string]any) (*Config, error) {
	p := parser{values: values}
	c := &Config{GlobalAS: defaultCalicoGlobal, Mesh: true, ServiceIPs: map[string][]string{},
		SubnetAS: map[netip.Prefix]uint32{}, UnitAS: map[int]uint32{}, RouteReflectors: map[int]string{}}
	p.parsePeers(c)
	p.parseAS(c)
	if v, ok := values[OptMesh]; ok {
		b, isBool := v.(bool)
		if !isBool {
			p.errorf(OptMesh, "%v is not true or false", v)
		}
		c.Mesh = b
	}
	var rr map[string]any
	p.yaml(OptRouteReflectors, &rr)
	for u, v := range rr {
		n, ok := p.unit(OptRouteReflectors, u)
		id := fmt.Sprint(v)
		if a, err := netip.ParseAddr(id); err != nil || !a.Is4() {
			p.errorf(OptRouteReflectors, "unit %s: cluster ID %q is not an IPv4-style ID such as 0.0.0.1", u, id)
			continue
		}
		if ok {
			c.RouteReflectors[n] = id
		}
	}
	for _, opt := range []string{OptLoadBalancerIPs, OptExternalIPs} {
		v, ok := values[opt]
		if !ok {
			continue
		}
		s, _ := v.(string)
		var cidrs []string
		for _, f := range strings.Fields(s) {
			if _, err := netip.ParsePrefix(f); err != nil {
				p.errorf(opt, "%q is not a CIDR such as 203.0.113.0/24", f)
				continue
			}
			cidrs = append(cidrs, f)
		}
		c.ServiceIPs[opt] = cidrs
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return c, nil
}

// parsePeers reads the global, per-subnet and per-unit BGP peers.
func (p *parser) parsePeers(c *Config) {
	var global []rawPeer
	p.yaml(OptGlobalPeers, &global)
	c.GlobalPeers = p.peers(OptGlobalPeers, global)

	var subnet map[string][]rawPeer
	p.yaml(OptSubnetPeers, &subnet)
	for s, ps := range subnet {
		if pfx, ok := p.prefix(OptSubnetPeers, s); ok {
			c.SubnetPeers = append(c.SubnetPeers, SubnetPeers{Subnet: pfx, Peers: p.peers(OptSubnetPeers+"["+s+"]", ps)})
		}
	}
	sort.Slice(c.SubnetPeers, func(i, j int) bool { return c.SubnetPeers[i].Subnet.String() < c.SubnetPeers[j].Subnet.String() })

	var unit map[string][]rawPeer
	p.yaml(OptUnitPeers, &unit)
	for u, ps := range unit {
		if n, ok := p.unit(OptUnitPeers, u); ok {
			c.UnitPeers = append(c.UnitPeers, UnitPeers{Unit: n, Peers: p.peers(fmt.Sprintf("%s[%d]", OptUnitPeers, n), ps)})
		}
	}
	sort.Slice(c.UnitPeers, func(i, j int) bool { return c.UnitPeers[i].Unit < c.UnitPeers[j].Unit })
}

// parseAS reads the global, per-subnet and per-unit AS numbers.
func (p *parser) parseAS(c *Config) {
	if v, ok := p.values[OptGlobalAS]; ok {
		if as, ok := p.as(OptGlobalAS, v); ok {
			c.GlobalAS = as
		}
	}
	var subnetAS map[string]any
	p.yaml(OptSubnetAS, &subnetAS)
	for s, v := range subnetAS {
		pfx, ok1 := p.prefix(OptSubnetAS, s)
		as, ok2 := p.as(OptSubnetAS+"["+s+"]", v)
		if ok1 && ok2 {
			c.SubnetAS[pfx] = as
		}
	}
	var unitAS map[string]any
	p.yaml(OptUnitAS, &unitAS)
	for u, v := range unitAS {
		n, ok1 := p.unit(OptUnitAS, u)
		as, ok2 := p.as(fmt.Sprintf("%s[%s]", OptUnitAS, u), v)
		if ok1 && ok2 {
			c.UnitAS[n] = as
		}
	}
}

type rawPeer struct {
	Address  any `yaml:"address"`
	ASNumber any `yaml:"as-number"`
}

type parser struct {
	values map[string]any
	errs   []error
}

func (p *parser) errorf(option, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("calico option %s: %s", option, fmt.Sprintf(format, args...)))
}

// yaml decodes a YAML-in-a-string option; absent or empty leaves v alone.
func (p *parser) yaml(option string, v any) {
	raw, ok := p.values[option]
	if !ok || raw == nil {
		return
	}
	s, isString := raw.(string)
	if !isString {
		p.errorf(option, "%v is not a string of YAML", raw)
		return
	}
	if err := config.DecodeYAML(s, v); err != nil {
		p.errorf(option, "%v", err)
	}
}

func (p *parser) peers(option string, raw []rawPeer) []Peer {
	var out []Peer
	for i, r := range raw {
		addr, _ := r.Address.(string)
		a, err := netip.ParseAddr(strings.TrimSpace(addr))
		if err != nil {
			p.errorf(option, "peer %d: address %v is not an IP address", i+1, r.Address)
			continue
		}
		if r.ASNumber == nil {
			p.errorf(option, "peer %d (%s) has no as-number", i+1, a)
			continue
		}
		as, ok := p.as(fmt.Sprintf("%s peer %d (%s)", option, i+1, a), r.ASNumber)
		if ok {
			out = append(out, Peer{Address: a.Unmap(), ASNumber: as})
		}
	}
	return out
}

// prefix parses a subnet key strictly, as Python's ip_network does.
func (p *parser) prefix(option, s string) (netip.Prefix, bool) {
	pfx, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		p.errorf(option, "%q is not a subnet such as 10.0.0.0/24", s)
		return netip.Prefix{}, false
	}
	if pfx.Masked() != pfx {
		p.errorf(option, "%q has host bits set; calico rejects it (write %s)", s, pfx.Masked())
		return netip.Prefix{}, false
	}
	return pfx, true
}

func (p *parser) unit(option, s string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		p.errorf(option, "%q is not a calico unit number (the N of calico/N)", s)
		return 0, false
	}
	return n, true
}

func (p *parser) as(what string, v any) (uint32, bool) {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case float64:
		n = int64(x)
		if float64(n) != x {
			p.errorf(what, "AS number %v is not a whole number", v)
			return 0, false
		}
	default:
		p.errorf(what, "AS number %v is not a number", v)
		return 0, false
	}
	if n < 1 || n > 4294967295 {
		p.errorf(what, "AS number %d is out of range (1-4294967295)", n)
		return 0, false
	}
	return uint32(n), true
}
