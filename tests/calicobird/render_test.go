package calicobird

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/workload/calico"
)

// The Charmed Kubernetes AS-per-rack example: mesh off, each rack's nodes
// peer their ToR in their own AS.
func TestRender(t *testing.T) {
	c, err := calico.Parse(map[string]any{
		calico.OptMesh:            false,
		calico.OptSubnetPeers:     "{10.215.1.0/24: [{address: 10.215.1.1, as-number: 65001}], 10.215.2.0/24: [{address: 10.215.2.1, as-number: 65002}]}",
		calico.OptSubnetAS:        "{10.215.1.0/24: 64601, 10.215.2.0/24: 64602}",
		calico.OptLoadBalancerIPs: "10.215.100.0/28",
	})
	if err != nil {
		t.Fatal(err)
	}
	n1 := Node{Name: "node1", Unit: 0, Address: netip.MustParseAddr("10.215.1.11"), PodCIDR: netip.MustParsePrefix("10.40.1.0/24")}
	n3 := Node{Name: "node3", Unit: 2, Address: netip.MustParseAddr("10.215.2.11"), PodCIDR: netip.MustParsePrefix("10.40.3.0/24")}
	all := []Node{n1, n3}
	if AS(c, n1) != 64601 || AS(c, n3) != 64602 {
		t.Fatalf("AS %d %d", AS(c, n1), AS(c, n3))
	}
	if p := Peers(c, n1, all); len(p) != 1 || p[0] != (Peer{netip.MustParseAddr("10.215.1.1"), 65001}) {
		t.Fatalf("node1's peers %v", p)
	}
	// A Local Service's /32 from the node with its endpoint, inside the
	// CIDR only.
	conf := Render(c, n1, all, []netip.Addr{netip.MustParseAddr("10.215.100.3"), netip.MustParseAddr("192.0.2.9")})
	for _, want := range []string{"router id 10.215.1.11;", "route 10.40.1.0/24 blackhole;", "route 10.215.100.0/28 blackhole;", "route 10.215.100.3/32 blackhole;",
		"local 10.215.1.11 as 64601;", "neighbor 10.215.1.1 as 65001;"} {
		if !strings.Contains(conf, want) {
			t.Fatalf("no %q in\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "192.0.2.9") || strings.Contains(conf, "10.215.2.1 ") {
		t.Fatalf("advertises outside the CIDRs or peers another rack's ToR:\n%s", conf)
	}
	// Mesh on: every other node too, in its own AS.
	c.Mesh = true
	if p := Peers(c, n1, all); len(p) != 2 || p[1] != (Peer{n3.Address, 64602}) {
		t.Fatalf("mesh peers %v", p)
	}
	// Without the option, only the pod CIDR.
	c.ServiceIPs = map[string][]string{}
	if a := Advertised(c, n1, []netip.Addr{netip.MustParseAddr("10.215.100.3")}); len(a) != 1 || a[0] != n1.PodCIDR {
		t.Fatalf("advertised without service IPs: %v", a)
	}
}
