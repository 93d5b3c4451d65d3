package speaker

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/calico-lb/calico-lb/workload/config"
)

func l2Config(t *testing.T, selector string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte("mode: l2\nspeakers: {node-selector: '" + selector + "'}\npools:\n  p: {addresses: [10.9.0.0/22]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func members(names ...string) []Member {
	var out []Member
	for _, n := range names {
		out = append(out, Member{Node: n, AliveSince: t0})
	}
	return out
}

func nodeMap(labels map[string]map[string]string) map[string]Node {
	out := map[string]Node{}
	for n, l := range labels {
		out[n] = Node{Name: n, Labels: l}
	}
	return out
}

// ownership computes every node's owned IPs and maps each IP to its owners.
func ownership(t *testing.T, cfg *config.Config, ms []Member, nodes map[string]Node, svcs []*corev1.Service, eps EndpointsOf, now time.Time) map[netip.Addr][]string {
	t.Helper()
	out := map[netip.Addr][]string{}
	for n := range nodes {
		for _, ip := range L2Owners(cfg, n, ms, nodes, svcs, eps, now, 5*time.Second) {
			out[ip] = append(out[ip], n)
		}
	}
	return out
}

func manyServices(n int) []*corev1.Service {
	var out []*corev1.Service
	for i := range n {
		out = append(out, svcWith(fmt.Sprint("s", i), false, fmt.Sprintf("10.9.%d.%d", i/250, 1+i%250)))
	}
	return out
}

func TestL2OneOwnerSpreadAndMinimalMoves(t *testing.T) {
	cfg := l2Config(t, "")
	nodes := nodeMap(map[string]map[string]string{"n1": nil, "n2": nil, "n3": nil})
	svcs := manyServices(300)
	noEps := func(string, string) []*discoveryv1.EndpointSlice { return nil }
	now := t0.Add(time.Minute)
	before := ownership(t, cfg, members("n1", "n2", "n3"), nodes, svcs, noEps, now)
	count := map[string]int{}
	for ip, owners := range before {
		if len(owners) != 1 {
			t.Fatalf("%s has owners %v", ip, owners)
		}
		count[owners[0]]++
	}
	if len(before) != 300 {
		t.Fatalf("%d IPs owned, want 300", len(before))
	}
	for n, c := range count {
		if c < 70 || c > 130 {
			t.Fatalf("uneven spread: %v (%s)", count, n)
		}
	}
	// n3 dies: only its IPs move, each to exactly one other node.
	after := ownership(t, cfg, members("n1", "n2"), nodes, svcs, noEps, now)
	for ip, owners := range after {
		if len(owners) != 1 || owners[0] == "n3" {
			t.Fatalf("after n3 died %s has owners %v", ip, owners)
		}
		if before[ip][0] != "n3" && before[ip][0] != owners[0] {
			t.Fatalf("%s moved from %s to %s though its owner stayed alive", ip, before[ip][0], owners[0])
		}
	}
}

func TestL2ReturningNodeHoldDown(t *testing.T) {
	cfg := l2Config(t, "")
	nodes := nodeMap(map[string]map[string]string{"n1": nil, "n2": nil, "n3": nil})
	svcs := manyServices(60)
	noEps := func(string, string) []*discoveryv1.EndpointSlice { return nil }
	now := t0.Add(time.Minute)
	steady := ownership(t, cfg, members("n1", "n2", "n3"), nodes, svcs, noEps, now)
	// n3 comes back: alive only since now. It takes nothing until it has
	// been alive for the hold-down, then exactly its old share.
	back := append(members("n1", "n2"), Member{Node: "n3", AliveSince: now})
	early := ownership(t, cfg, back, nodes, svcs, noEps, now.Add(time.Second))
	for ip, owners := range early {
		if owners[0] == "n3" {
			t.Fatalf("returning n3 took %s within the hold-down", ip)
		}
	}
	later := ownership(t, cfg, back, nodes, svcs, noEps, now.Add(6*time.Second))
	for ip, owners := range later {
		if len(owners) != 1 || owners[0] != steady[ip][0] {
			t.Fatalf("after the hold-down %s is owned by %v, before by %v", ip, owners, steady[ip])
		}
	}
	// A lone fresh node takes everything at once: no one else can answer.
	lone := ownership(t, cfg, []Member{{Node: "n3", AliveSince: now}}, nodes, svcs, noEps, now)
	for ip, owners := range lone {
		if owners[0] != "n3" {
			t.Fatalf("%s: %v", ip, owners)
		}
	}
	if len(lone) != 60 {
		t.Fatalf("a lone fresh node owns %d of 60", len(lone))
	}
}

func TestL2LocalSelectorAndSharing(t *testing.T) {
	cfg := l2Config(t, "l2=yes")
	nodes := nodeMap(map[string]map[string]string{"n1": {"l2": "yes"}, "n2": {"l2": "yes"}, "n3": {"l2": "no"}})
	yes := true
	eps := map[string][]*discoveryv1.EndpointSlice{
		"local": {slice("local", ep("n2", &yes))},
		"none":  {slice("none", ep("n3", &yes))},
	}
	svcs := []*corev1.Service{
		svcWith("local", true, "10.9.0.5"),
		svcWith("none", true, "10.9.0.6"), // its only endpoint is on an unselected node
		svcWith("a", false, "10.9.0.7"),
		svcWith("b", false, "10.9.0.7"), // shares a's IP
		svcWith("foreign", false, "192.0.2.1"),
	}
	got := ownership(t, cfg, members("n1", "n2", "n3"), nodes, svcs, func(ns, name string) []*discoveryv1.EndpointSlice { return eps[name] }, t0.Add(time.Minute))
	if o := got[netip.MustParseAddr("10.9.0.5")]; len(o) != 1 || o[0] != "n2" {
		t.Fatalf("Local IP owners %v, want n2 (its endpoint's node)", o)
	}
	if o := got[netip.MustParseAddr("10.9.0.6")]; len(o) != 0 {
		t.Fatalf("an IP with no eligible node is owned by %v", o)
	}
	if o := got[netip.MustParseAddr("10.9.0.7")]; len(o) != 1 || o[0] == "n3" {
		t.Fatalf("shared IP owners %v", o)
	}
	if _, ok := got[netip.MustParseAddr("192.0.2.1")]; ok {
		t.Fatal("an IP outside the pools is owned")
	}
	// Not l2 mode: nothing.
	spine := spineConfig(t)
	if o := L2Owners(spine, "n1", members("n1"), nodes, svcs, nil, t0, 0); o != nil {
		t.Fatalf("spine mode owns %v", o)
	}
}
