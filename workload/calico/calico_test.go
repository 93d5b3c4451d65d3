package calico

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/workload/config"
)

func mustParse(t *testing.T, values map[string]any) *Config {
	t.Helper()
	c, err := Parse(values)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParse(t *testing.T) {
	c := mustParse(t, map[string]any{
		OptGlobalPeers:     "[{address: 10.0.0.2, as-number: 64512}, {address: 'fd00::2', as-number: 64512}]",
		OptSubnetPeers:     "{10.0.1.0/24: [{address: 10.0.1.1, as-number: 64512}], 10.0.0.0/24: [{address: 10.0.0.1, as-number: 64512}]}",
		OptUnitPeers:       "{0: [{address: 10.0.0.1, as-number: 64512}], 2: [{address: 10.0.2.1, as-number: 64513}]}",
		OptGlobalAS:        float64(64512), // JSON numbers arrive as float64
		OptSubnetAS:        "{10.0.0.0/24: 64512, 10.0.2.0/24: 64513}",
		OptUnitAS:          "{3: 64513}",
		OptMesh:            false,
		OptRouteReflectors: "{0: 0.0.0.0, 1: 0.0.0.1}",
		OptLoadBalancerIPs: "10.208.1.0/28  198.51.100.0/24",
	})
	if len(c.GlobalPeers) != 2 || c.GlobalPeers[1].Address != netip.MustParseAddr("fd00::2") ||
		len(c.SubnetPeers) != 2 || c.SubnetPeers[0].Subnet.String() != "10.0.0.0/24" ||
		len(c.UnitPeers) != 2 || c.UnitPeers[1].Unit != 2 || c.UnitPeers[1].Peers[0].ASNumber != 64513 ||
		c.GlobalAS != 64512 || c.SubnetAS[netip.MustParsePrefix("10.0.2.0/24")] != 64513 || c.UnitAS[3] != 64513 ||
		c.Mesh || c.RouteReflectors[1] != "0.0.0.1" {
		t.Fatalf("%+v", c)
	}
	if !c.Has(OptLoadBalancerIPs) || c.Has(OptExternalIPs) || !slices.Equal(c.ServiceIPs[OptLoadBalancerIPs], []string{"10.208.1.0/28", "198.51.100.0/24"}) {
		t.Fatalf("service IPs %v", c.ServiceIPs)
	}
	// The calico charm's defaults.
	d := mustParse(t, map[string]any{OptGlobalPeers: "[]", OptSubnetPeers: "{}", OptUnitPeers: "{}", OptMesh: true, OptRouteReflectors: "{}", OptExternalIPs: ""})
	if len(d.GlobalPeers)+len(d.SubnetPeers)+len(d.UnitPeers) != 0 || !d.Mesh || d.GlobalAS != 64512 || !d.Has(OptExternalIPs) {
		t.Fatalf("defaults %+v", d)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		values map[string]any
		want   string
	}{
		{map[string]any{OptGlobalPeers: "[{address: 10.0.0.1"}, "calico option global-bgp-peers: not valid YAML"},
		{map[string]any{OptGlobalPeers: "[{as-number: 64512}]"}, "peer 1: address <nil> is not an IP address"},
		{map[string]any{OptGlobalPeers: "[{address: 10.0.0.1}]"}, "peer 1 (10.0.0.1) has no as-number"},
		{map[string]any{OptGlobalPeers: "[{address: 10.0.0.1, as-number: 0}]"}, "out of range"},
		{map[string]any{OptSubnetPeers: "{10.0.0.1/24: []}"}, `"10.0.0.1/24" has host bits set; calico rejects it (write 10.0.0.0/24)`},
		{map[string]any{OptUnitPeers: "{calico/0: []}"}, `"calico/0" is not a calico unit number`},
		{map[string]any{OptRouteReflectors: "{0: rr1}"}, `cluster ID "rr1" is not an IPv4-style ID`},
		{map[string]any{OptMesh: "yes"}, "node-to-node-mesh: yes is not true or false"},
		{map[string]any{OptLoadBalancerIPs: "10.0.0.0/24 10.1.0.0"}, `bgp-service-loadbalancer-ips: "10.1.0.0" is not a CIDR`},
		{map[string]any{OptGlobalAS: "64512"}, "global-as-number: AS number 64512 is not a number"},
		{map[string]any{OptGlobalPeers: "a: &a [*a, *a]"}, "refer to themselves"},
	} {
		_, err := Parse(tc.values)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%v) = %v, want an error containing %q", tc.values, err, tc.want)
		}
	}
	// Every problem is reported, not just the first.
	_, err := Parse(map[string]any{OptGlobalPeers: "[{address: x, as-number: 1}]", OptMesh: 1})
	if err == nil || !strings.Contains(err.Error(), OptGlobalPeers) || !strings.Contains(err.Error(), OptMesh) {
		t.Fatalf("both errors: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("[{address: 10.0.0.2, as-number: 64512}]", "{10.0.0.0/24: [{address: 10.0.0.1, as-number: 1}]}", "{0: [{address: 'fd00::1', as-number: 2}]}", "10.0.0.0/24")
	f.Add("", "{x: y}", "[1, 2]", "a b")
	f.Fuzz(func(t *testing.T, global, subnet, unit, lb string) {
		c, err := Parse(map[string]any{OptGlobalPeers: global, OptSubnetPeers: subnet, OptUnitPeers: unit, OptLoadBalancerIPs: lb,
			OptRouteReflectors: unit, OptSubnetAS: subnet, OptUnitAS: unit})
		if err == nil {
			// What parsed is usable: conflicts can be computed without panics.
			Conflicts(config.BGP{Peers: []config.Peer{{Address: netip.MustParseAddr("10.0.0.1")}}}, c, Topology{})
		}
	})
}

// ExternalPeers lists every router calico peers with, and none for the
// charm's default (a node mesh alone).
func TestExternalPeers(t *testing.T) {
	c, err := Parse(map[string]any{OptGlobalPeers: "[{address: 10.0.0.1, as-number: 64512}]", OptSubnetPeers: "{10.1.0.0/24: [{address: 10.1.0.1, as-number: 64513}]}",
		OptUnitPeers: "{3: [{address: 10.2.0.1, as-number: 64514}]}", OptMesh: true})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.ExternalPeers(), "; ")
	if want := "10.0.0.1 (global-bgp-peers); 10.1.0.1 (subnet-bgp-peers, nodes in 10.1.0.0/24); 10.2.0.1 (unit-bgp-peers, calico/3)"; got != want {
		t.Fatalf("ExternalPeers = %q, want %q", got, want)
	}
	mesh, err := Parse(map[string]any{OptGlobalPeers: "[]", OptSubnetPeers: "{}", OptUnitPeers: "{}", OptMesh: true, OptRouteReflectors: "{0: 0.0.0.1}"})
	if err != nil {
		t.Fatal(err)
	}
	if p := mesh.ExternalPeers(); len(p) != 0 {
		t.Fatalf("a mesh with a route reflector has external peers %v", p)
	}
}
