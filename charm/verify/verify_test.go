package verify

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

func find(t *testing.T, cs []Check, service, name string) Check {
	t.Helper()
	for _, c := range cs {
		if c.Service == service && c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %s %s in %+v", service, name, cs)
	return Check{}
}

var pool = []api.PoolView{{Name: "p", Addresses: []string{"10.208.1.0/24"}}}

func TestCalicoMode(t *testing.T) {
	facts := api.ServicesFacts{Mode: config.ModeCalico, Pools: pool, Services: []api.ServiceFacts{
		{Namespace: "shop", Name: "web", IPs: []string{"10.208.1.0"}, Pools: []string{"p"}, TrafficPolicy: "Cluster", NodePorts: []int32{31000}},
		{Namespace: "shop", Name: "db", Waiting: "pool p is exhausted (254/254 in use)"},
		{Namespace: "shop", Name: "old", IPs: []string{"10.99.0.7"}, TrafficPolicy: "Local", HealthCheckNodePort: 32000},
	}}
	cs := Run(Input{Facts: facts, Calico: &Calico{Option: "bgp-service-loadbalancer-ips", CIDRs: []string{"10.208.1.0/24"}}})
	if c := find(t, cs, "shop/web", "not-0-or-255"); c.Result != Fail || !strings.Contains(c.Fix, "reallocate service=shop/web") {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "shop/web", "advertised"); c.Result != Pass {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "shop/db", "allocated"); c.Result != Fail || !strings.Contains(c.Detail, "exhausted") {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "shop/old", "in-pool"); c.Result != Fail || !strings.Contains(c.Fix, "apply-pool-change") {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "shop/old", "advertised"); c.Result != Fail || !strings.Contains(c.Fix, "sync-calico") {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "shop/old", "endpoints"); c.Result != Fail {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "shop/old", "node-ports"); !strings.Contains(c.Detail, "health check 32000") {
		t.Fatalf("%+v", c)
	}
	// The option lacks a pool: the option check fails too, and both name
	// the charm's fix and the exact command that keeps what is there.
	cmd := `juju config calico bgp-service-loadbalancer-ips="198.51.100.0/24 10.208.1.0/24"`
	cs = Run(Input{Facts: facts, Calico: &Calico{Option: "bgp-service-loadbalancer-ips", CIDRs: []string{"198.51.100.0/24"}, Missing: []string{"10.208.1.0/24"}, Command: cmd}})
	if c := find(t, cs, "", "calico-option"); c.Result != Fail || !strings.Contains(c.Detail, "lacks the pools' 10.208.1.0/24") || !strings.Contains(c.Fix, cmd) || !strings.Contains(c.Fix, "sync-calico") {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "shop/web", "advertised"); c.Result != Fail || !strings.Contains(c.Fix, cmd) {
		t.Fatalf("%+v", c)
	}
	// Without the link: the exact command.
	cs = Run(Input{Facts: facts, Command: `juju config calico bgp-service-loadbalancer-ips="10.208.1.0/24"`})
	if c := find(t, cs, "", "calico-option"); c.Result != Warn || c.Fix != `run: juju config calico bgp-service-loadbalancer-ips="10.208.1.0/24"` {
		t.Fatalf("%+v", c)
	}
	cs = Run(Input{Facts: facts, CalicoErr: errors.New("user lb may not change calico's config")})
	if c := find(t, cs, "", "calico-option"); c.Result != Fail {
		t.Fatalf("%+v", c)
	}
	if !strings.HasPrefix(Summary(cs), "") || !strings.Contains(Summary(cs), "fail") {
		t.Fatal(Summary(cs))
	}
}

// TestDedicatedRacks: speakers on some nodes only (speaker-node-selector)
// and a Local Service whose pods run elsewhere: unreachable, with the fix.
// In calico mode the option holding the pools is not enough: Calico must
// have a router to advertise them to. The calico charm's default, a node
// mesh with no external peer, fails with the fix; without the link verify
// says it cannot tell.
func TestCalicoPeers(t *testing.T) {
	facts := api.ServicesFacts{Mode: config.ModeCalico, Pools: pool}
	inOption := &Calico{Option: "bgp-service-loadbalancer-ips", CIDRs: []string{"10.208.1.0/24"}}
	cs := Run(Input{Facts: facts, Calico: inOption})
	if c := find(t, cs, "", "calico-option"); c.Result != Pass {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "", "calico-peers"); c.Result != Fail || !strings.Contains(c.Detail, "no router learns the pools") || !strings.Contains(c.Fix, "global-bgp-peers") {
		t.Fatalf("a mesh-only calico: %+v", c)
	}
	withPeer := *inOption
	withPeer.Peers = []string{"10.0.0.1 (global-bgp-peers)"}
	cs = Run(Input{Facts: facts, Calico: &withPeer})
	if c := find(t, cs, "", "calico-peers"); c.Result != Pass || !strings.Contains(c.Detail, "10.0.0.1 (global-bgp-peers)") {
		t.Fatalf("with a peer: %+v", c)
	}
	cs = Run(Input{Facts: facts, Command: "juju config calico …"})
	if c := find(t, cs, "", "calico-peers"); c.Result != Info || !strings.Contains(c.Detail, "cannot see") {
		t.Fatalf("without the link: %+v", c)
	}
}

func TestDedicatedRacks(t *testing.T) {
	facts := api.ServicesFacts{Mode: config.ModeSpine, Pools: pool, Services: []api.ServiceFacts{
		{Namespace: "shop", Name: "local", IPs: []string{"10.208.1.5"}, TrafficPolicy: "Local", EndpointNodes: []string{"n3"}}}}
	sp := &api.Speakers{Mode: config.ModeSpine, Speakers: []api.SpeakerView{{Node: "n1", BGP: &api.BGPStatus{Peers: []api.PeerStatus{{Address: "10.0.255.1", State: "established"}}, Routes: []string{}}}}}
	cs := Run(Input{Facts: facts, Speakers: sp})
	if c := find(t, cs, "shop/local", "advertised"); c.Result != Fail || !strings.Contains(c.Detail, "where no speaker runs") || !strings.Contains(c.Fix, "externalTrafficPolicy: Cluster") {
		t.Fatalf("%+v", c)
	}
	// With a pod on a speaker node that is not announcing yet: the generic
	// failure, not this one.
	facts.Services[0].EndpointNodes = []string{"n1", "n3"}
	if c := find(t, Run(Input{Facts: facts, Speakers: sp}), "shop/local", "advertised"); c.Result != Fail || strings.Contains(c.Detail, "where no speaker runs") {
		t.Fatalf("%+v", c)
	}
}

func TestSpineMode(t *testing.T) {
	facts := api.ServicesFacts{Mode: config.ModeSpine, Pools: pool, Services: []api.ServiceFacts{
		{Namespace: "shop", Name: "local", IPs: []string{"10.208.1.5"}, TrafficPolicy: "Local", EndpointNodes: []string{"n2"}},
		{Namespace: "shop", Name: "web", IPs: []string{"10.208.1.6"}, TrafficPolicy: "Cluster"},
	}}
	up := api.PeerStatus{Address: "10.0.255.1", State: "established"}
	speakers := &api.Speakers{Mode: config.ModeSpine, Speakers: []api.SpeakerView{
		{Node: "n1", BGP: &api.BGPStatus{Peers: []api.PeerStatus{up}, Routes: []string{"10.208.1.5/32 via 10.0.1.1 (shop/local)", "10.208.1.6/32 via 10.0.1.1 (shop/web)"}}},
		{Node: "n2", BGP: &api.BGPStatus{Peers: []api.PeerStatus{up}, Routes: []string{"10.208.1.5/32 via 10.0.1.2 (shop/local)", "10.208.1.6/32 via 10.0.1.2 (shop/web)"}}},
		{Node: "n3", BGP: &api.BGPStatus{Peers: []api.PeerStatus{{Address: "10.0.255.1", State: "active"}}, Routes: []string{"10.208.1.6/32 via 10.0.1.3 (shop/web)"}}},
	}}
	peers := []config.Peer{{Address: netip.MustParseAddr("10.0.255.1"), HoldTime: 90}}
	cs := Run(Input{Facts: facts, Speakers: speakers, Peers: peers})
	// n1 announces the Local Service without an endpoint: blackholing.
	if c := find(t, cs, "shop/local", "local-endpoints"); c.Result != Fail || !strings.Contains(c.Detail, "n1") {
		t.Fatalf("%+v", c)
	}
	// n3's session is down: it does not count as announcing, and its
	// session check names port 179.
	if c := find(t, cs, "shop/web", "advertised"); c.Result != Pass || c.Detail != "announced by BGP from n1, n2" {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "", "bgp n3 -> 10.0.255.1"); c.Result != Fail || !strings.Contains(c.Fix, "179") {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "", "timers 10.0.255.1"); c.Result != Warn || !strings.Contains(c.Fix, "bfd: true") {
		t.Fatalf("%+v", c)
	}
	// A session closed over its prefix limit says why and what to do.
	speakers.Speakers[2].BGP.Peers[0] = api.PeerStatus{Address: "10.0.255.1", State: "idle", Problem: "closed: the peer sent more than max-prefixes 10000 routes"}
	cs = Run(Input{Facts: facts, Speakers: speakers, Peers: peers})
	if c := find(t, cs, "", "bgp n3 -> 10.0.255.1"); c.Result != Fail || !strings.Contains(c.Detail, "max-prefixes 10000") || !strings.Contains(c.Fix, "prefix-list") {
		t.Fatalf("%+v", c)
	}
	// Fixed: only n2 announces the Local Service.
	speakers.Speakers[0].BGP.Routes = speakers.Speakers[0].BGP.Routes[1:]
	peers[0].BFD = true
	cs = Run(Input{Facts: facts, Speakers: speakers, Peers: peers})
	if c := find(t, cs, "shop/local", "local-endpoints"); c.Result != Pass {
		t.Fatalf("%+v", c)
	}
	for _, c := range cs {
		if strings.HasPrefix(c.Name, "timers") {
			t.Fatalf("BFD on, still %+v", c)
		}
	}
}

func TestL2Mode(t *testing.T) {
	facts := api.ServicesFacts{Mode: config.ModeL2, Pools: pool, Services: []api.ServiceFacts{
		{Namespace: "shop", Name: "web", IPs: []string{"10.208.1.7"}, TrafficPolicy: "Cluster"},
		{Namespace: "shop", Name: "dup", IPs: []string{"10.208.1.8"}, TrafficPolicy: "Cluster"},
	}}
	speakers := &api.Speakers{Mode: config.ModeL2, Speakers: []api.SpeakerView{
		{Node: "n1", BGP: &api.BGPStatus{}, L2: &api.L2Status{Owned: []string{"10.208.1.7", "10.208.1.8"}}},
		{Node: "n2", BGP: &api.BGPStatus{}, L2: &api.L2Status{Owned: []string{"10.208.1.8"}}},
		{Node: "n3", Error: "speaker API unreachable: connection refused"},
	}}
	cs := Run(Input{Facts: facts, Speakers: speakers})
	if c := find(t, cs, "shop/web", "advertised"); c.Result != Pass || c.Detail != "ARP/NDP owner n1" {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "shop/dup", "advertised"); c.Result != Fail || !strings.Contains(c.Detail, "n1, n2") {
		t.Fatalf("%+v", c)
	}
	if c := find(t, cs, "", "speaker n3"); c.Result != Fail {
		t.Fatalf("%+v", c)
	}
}

// Calico's own LoadBalancer IPAM competes for Services without a class:
// verify fails naming the pools and both fixes, passes once calico-lb
// serves a class of its own, and warns when the pools cannot be read.
func TestCalicoIPAM(t *testing.T) {
	facts := api.ServicesFacts{Mode: config.ModeSpine, Pools: pool}
	if c := find(t, Run(Input{Facts: facts}), "", "calico-ipam"); c.Result != Pass {
		t.Fatalf("no Calico pool: %+v", c)
	}
	facts.CalicoLoadBalancerPools = []string{"lb-pool (10.9.0.0/24)"}
	c := find(t, Run(Input{Facts: facts}), "", "calico-ipam")
	if c.Result != Fail || !strings.Contains(c.Detail, "lb-pool (10.9.0.0/24)") || !strings.Contains(c.Fix, "allowedUses") || !strings.Contains(c.Fix, "load-balancer-class") {
		t.Fatalf("a Calico LoadBalancer pool, no class: %+v", c)
	}
	facts.LoadBalancerClass = "calico-lb.io/lb"
	if c := find(t, Run(Input{Facts: facts}), "", "calico-ipam"); c.Result != Pass || !strings.Contains(c.Detail, "class calico-lb.io/lb only") {
		t.Fatalf("with a class: %+v", c)
	}
	facts.CalicoPoolsErr = "forbidden"
	if c := find(t, Run(Input{Facts: facts}), "", "calico-ipam"); c.Result != Warn {
		t.Fatalf("unreadable: %+v", c)
	}
}

func TestForeignExternalIPs(t *testing.T) {
	facts := api.ServicesFacts{Mode: config.ModeCalico, Pools: pool}
	if c := find(t, Run(Input{Facts: facts}), "", "external-ips"); c.Result != Pass {
		t.Fatalf("none: %+v", c)
	}
	facts.ForeignExternalIPs = []string{"tenant/thief: 10.208.1.5"}
	if c := find(t, Run(Input{Facts: facts}), "", "external-ips"); c.Result != Fail || !strings.Contains(c.Detail, "tenant/thief: 10.208.1.5") || !strings.Contains(c.Fix, "admission policy") {
		t.Fatalf("a foreign external IP: %+v", c)
	}
}
