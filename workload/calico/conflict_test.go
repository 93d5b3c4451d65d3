package calico

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/workload/config"
)

func addrs(s ...string) Nodes {
	var out Nodes
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func spine(t *testing.T, peers, subnetPeers string) config.BGP {
	t.Helper()
	o := config.DefaultOptions()
	o.Pools, o.SpinePeers, o.SubnetSpinePeers, o.PeeringMode = "10.208.1.0/28", peers, subnetPeers, "calico"
	c, _, err := config.FromOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	return c.BGP
}

// The calico charm's documented topologies (subnets, route reflectors, AS
// per rack), racks whose ToRs peer with Calico under a spine, and the mesh.
func TestConflicts(t *testing.T) {
	twoSubnets := map[string]any{ // one router between two subnets
		OptSubnetPeers: "{10.0.0.0/24: [{address: 10.0.0.1, as-number: 64512}], 10.0.1.0/24: [{address: 10.0.1.1, as-number: 64512}]}"}
	routeReflectors := map[string]any{ // calico/0 and calico/1 reflect, mesh off
		OptRouteReflectors: "{0: 0.0.0.0, 1: 0.0.0.0}", OptMesh: false,
		OptGlobalPeers: "[{address: 10.0.0.2, as-number: 64512}, {address: 10.0.0.3, as-number: 64512}]"}
	asPerRack := map[string]any{ // AS per rack, ToRs on the reflectors' units
		OptSubnetAS:        "{10.0.0.0/24: 64512, 10.0.1.0/24: 64512, 10.0.2.0/24: 64513, 10.0.3.0/24: 64513}",
		OptRouteReflectors: "{0: 0.0.0.0, 1: 0.0.0.0, 2: 0.0.0.1, 3: 0.0.0.1}", OptMesh: false,
		OptUnitPeers: "{0: [{address: 10.0.0.1, as-number: 64512}], 1: [{address: 10.0.1.1, as-number: 64512}], " +
			"2: [{address: 10.0.2.1, as-number: 64513}], 3: [{address: 10.0.3.1, as-number: 64513}]}",
		OptSubnetPeers: "{10.0.0.0/24: [{address: 10.0.0.2, as-number: 64512}, {address: 10.0.1.2, as-number: 64512}], " +
			"10.0.2.0/24: [{address: 10.0.2.2, as-number: 64513}, {address: 10.0.3.2, as-number: 64513}]}"}
	racksToToRs := map[string]any{ // Calico peers with the ToRs, not the spine
		OptMesh:        false,
		OptSubnetPeers: "{10.1.1.0/24: [{address: 10.1.1.1, as-number: 65001}], 10.1.2.0/24: [{address: 10.1.2.1, as-number: 65002}]}"}

	for _, tc := range []struct {
		name        string
		calico      map[string]any
		peers, sub  string
		nodes       Nodes
		want        []string // "peer calico-option"
		wantSummary string
	}{
		{name: "two subnets: our rack-1 speakers peer with the rack-1 router", calico: twoSubnets,
			sub: "{10.0.1.0/24: [{address: 10.0.1.1, as-number: 64512}]}", nodes: addrs("10.0.1.5"),
			want: []string{"10.0.1.1 subnet-bgp-peers[10.0.1.0/24]"}},
		{name: "two subnets: a router address Calico uses only for the other subnet's nodes", calico: twoSubnets,
			peers: "[{address: 10.0.0.1, as-number: 64512}]", nodes: addrs("10.0.1.5", "10.0.1.6")},
		{name: "two subnets, nodes unknown: the same peer counts (conservative)", calico: twoSubnets,
			peers: "[{address: 10.0.0.1, as-number: 64512}]",
			want:  []string{"10.0.0.1 subnet-bgp-peers[10.0.0.0/24]"}},
		{name: "route reflectors: peering with a reflector is a second session", calico: routeReflectors,
			peers: "[{address: 10.0.0.2, as-number: 64512}]", nodes: addrs("10.0.0.2", "10.0.0.4"),
			want: []string{"10.0.0.2 global-bgp-peers", "10.0.0.2 route-reflector-cluster-ids"}},
		{name: "AS per rack: speakers peering with a ToR that a reflector unit peers with", calico: asPerRack,
			sub: "{10.0.2.0/24: [{address: 10.0.2.1, as-number: 64513}]}", nodes: addrs("10.0.2.7"),
			want: []string{"10.0.2.1 unit-bgp-peers[2]"}},
		{name: "AS per rack: speakers peering with the spine", calico: asPerRack,
			peers: "[{address: 10.255.0.1, as-number: 65100}]", nodes: addrs("10.0.2.7", "10.0.0.9")},
		{name: "racks: speakers peer with the spine, Calico with the ToRs", calico: racksToToRs,
			peers: "[{address: 10.255.0.1, as-number: 65000}]", nodes: addrs("10.1.1.10", "10.1.2.10")},
		{name: "racks: speakers peer with the ToRs too", calico: racksToToRs,
			sub: "{10.1.1.0/24: [{address: 10.1.1.1, as-number: 65001}]}", nodes: addrs("10.1.1.10", "10.1.2.10"),
			want:        []string{"10.1.1.1 subnet-bgp-peers[10.1.1.0/24]"},
			wantSummary: "spine peer 10.1.1.1 (subnet-spine-peers[10.1.1.0/24]) is also Calico's BGP peer (calico subnet-bgp-peers[10.1.1.0/24])"},
		{name: "the mesh: a cluster node as spine peer", calico: map[string]any{OptMesh: true},
			peers: "[{address: 10.1.1.11, as-number: 64512}]", nodes: addrs("10.1.1.10", "10.1.1.11"),
			want: []string{"10.1.1.11 node-to-node-mesh"}},
		{name: "mesh off and no reflectors: a node address is no Calico session", calico: map[string]any{OptMesh: false},
			peers: "[{address: 10.1.1.11, as-number: 64512}]", nodes: addrs("10.1.1.10", "10.1.1.11")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peers, sub := tc.peers, tc.sub
			if peers == "" {
				peers = "[]"
			}
			if sub == "" {
				sub = "{}"
			}
			cs := Conflicts(spine(t, peers, sub), mustParse(t, tc.calico), Topology{Speakers: tc.nodes, Cluster: tc.nodes})
			var got []string
			for _, c := range cs {
				got = append(got, c.Peer.String()+" "+c.Calico)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("conflicts %v, want %v", got, tc.want)
			}
			if tc.wantSummary != "" && !strings.HasPrefix(Summary(cs), tc.wantSummary) {
				t.Fatalf("summary %q", Summary(cs))
			}
			if len(cs) > 0 && !strings.Contains(Summary(cs), "peering-mode=calico") {
				t.Fatalf("the summary names no fix: %q", Summary(cs))
			}
		})
	}
}

func TestDecide(t *testing.T) {
	withSpine := spine(t, "[{address: 10.255.0.1, as-number: 65000}]", "{}")
	none := spine(t, "[]", "{}")
	conflict := []Conflict{{Peer: netip.MustParseAddr("10.255.0.1"), Spine: "spine-peers", Calico: OptGlobalPeers}}
	peered := mustParse(t, map[string]any{OptGlobalPeers: "[{address: 10.255.0.1, as-number: 65000}]"})
	meshOnly := mustParse(t, map[string]any{OptMesh: true})
	for _, tc := range []struct {
		bgp       config.BGP
		conflicts []Conflict
		read      *Config
		want      config.Mode
		reason    string
	}{
		{withSpine, nil, peered, config.ModeSpine, "none is Calico's"},
		{withSpine, nil, meshOnly, config.ModeSpine, "none is Calico's"},
		// Never a silent switch of which routers learn the VIPs.
		{withSpine, conflict, peered, "", "10.255.0.1 is also Calico's peer (calico global-bgp-peers), and auto does not choose"},
		{none, nil, peered, config.ModeCalico, "Calico peers with 10.255.0.1 (global-bgp-peers)"},
		// A node mesh alone announces to nobody outside: no guess.
		{none, nil, meshOnly, "", "peering-mode=l2 if the nodes and their clients share one L2 segment, peering-mode=spine"},
	} {
		d := Decide(tc.bgp, tc.conflicts, tc.read)
		if d.Mode != tc.want || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("Decide(spine=%d, conflicts=%d) = %+v, want %q (%s)", len(tc.bgp.Peers), len(tc.conflicts), d, tc.want, tc.reason)
		}
	}
}

// The mesh runs between every pair of cluster nodes, speakers or not.
func TestMeshWithANodeWithoutSpeaker(t *testing.T) {
	cs := Conflicts(spine(t, "[{address: 10.1.1.11, as-number: 64512}]", "{}"), mustParse(t, map[string]any{OptMesh: true}),
		Topology{Speakers: addrs("10.1.1.10"), Cluster: addrs("10.1.1.10", "10.1.1.11")})
	if len(cs) != 1 || cs[0].Calico != OptMesh {
		t.Fatalf("%v", cs)
	}
}
