package attract

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

func TestNodes(t *testing.T) {
	ip := netip.MustParseAddr("10.208.1.5")
	up := []api.PeerStatus{{Address: "10.0.255.1", State: "established"}}
	down := []api.PeerStatus{{Address: "10.0.255.1", State: "active"}}
	sp := &api.Speakers{Speakers: []api.SpeakerView{
		{Node: "n3", BGP: &api.BGPStatus{Peers: up, Routes: []string{"10.208.1.5/32 via 10.0.1.3 (shop/web)"}}, L2: &api.L2Status{Owned: []string{"10.208.1.5"}}},
		{Node: "n1", BGP: &api.BGPStatus{Peers: up, Routes: []string{"10.208.1.5/32 via 10.0.1.1 (shop/web)"}}},
		{Node: "n2", BGP: &api.BGPStatus{Peers: down, Routes: []string{"10.208.1.5/32 via 10.0.1.2 (shop/web)"}}},
		{Node: "n4", BGP: &api.BGPStatus{Peers: up, Routes: []string{"10.208.1.50/32 via 10.0.1.4 (shop/other)"}}},
		{Node: "n5", Error: "unreachable"},
	}}
	local := api.ServiceFacts{TrafficPolicy: "Local", EndpointNodes: []string{"n2", "n1"}}
	cluster := api.ServiceFacts{TrafficPolicy: "Cluster"}
	all := []string{"n5", "n1", "n2", "n3", "n4"}
	for _, c := range []struct {
		name string
		mode config.Mode
		s    api.ServiceFacts
		want []string
	}{
		// n2's session is down, n4 announces another IP (10.208.1.50 is not
		// 10.208.1.5 for all that it starts the same).
		{"spine", config.ModeSpine, cluster, []string{"n1", "n3"}},
		{"l2", config.ModeL2, cluster, []string{"n3"}},
		{"calico cluster", config.ModeCalico, cluster, []string{"n1", "n2", "n3", "n4", "n5"}},
		{"calico local", config.ModeCalico, local, []string{"n1", "n2"}},
	} {
		got, how := Nodes(c.mode, c.s, ip, sp, all)
		if !slices.Equal(got, c.want) || how == "" {
			t.Errorf("%s: %v (%q), want %v", c.name, got, how, c.want)
		}
	}
	if got, _ := Nodes(config.ModeSpine, cluster, ip, nil, all); len(got) != 0 {
		t.Errorf("no speakers' reports: %v", got)
	}
	// IPs agrees with Nodes, one node at a time.
	for _, c := range []struct {
		mode config.Mode
		node string
		want []string
	}{
		{config.ModeSpine, "n1", []string{"10.208.1.5"}},
		{config.ModeSpine, "n2", nil}, // its session is down
		{config.ModeSpine, "n4", []string{"10.208.1.50"}},
		{config.ModeL2, "n3", []string{"10.208.1.5"}},
		{config.ModeL2, "n1", nil},
		{config.ModeCalico, "n1", nil},
	} {
		var got []string
		for a := range IPs(c.mode, sp, c.node) {
			got = append(got, a.String())
		}
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("IPs(%s, %s) = %v, want %v", c.mode, c.node, got, c.want)
		}
	}
}
