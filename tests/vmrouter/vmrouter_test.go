package vmrouter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/tests/netns"
)

// TestVRFLeak boots the router with two VRFs and checks what the racks'
// VRF scenario builds on: a route a peer gives the lb VRF crosses into the
// default VRF only where the route-map lets it, and the kernel forwards a
// client in the default VRF to it.
func TestVRFLeak(t *testing.T) {
	b := netns.NewT(t)
	if m := Missing(); len(m) > 0 {
		t.Fatalf("router VM needs: %s", strings.Join(m, ", "))
	}
	ctx := context.Background()
	host, err := b.NS("router")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := b.NS("peer")
	if err != nil {
		t.Fatal(err)
	}
	client, err := b.NS("client")
	if err != nil {
		t.Fatal(err)
	}
	for _, br := range []string{"br0", "br1"} {
		if err := b.Bridge(host, br); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Link(peer, "eth0", []string{"10.9.2.11/24"}, host, "p-peer", nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Link(client, "eth0", []string{"10.9.3.2/24"}, host, "p-client", nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{host, "ip", "link", "set", "p-peer", "master", "br0"},
		{host, "ip", "link", "set", "p-client", "master", "br1"},
		{peer, "ip", "addr", "add", "10.9.100.5/32", "dev", "lo"},
		{peer, "ip", "addr", "add", "10.9.250.1/32", "dev", "lo"},
		{peer, "ip", "route", "add", "default", "via", "10.9.2.1"},
		{client, "ip", "route", "add", "default", "via", "10.9.3.1"},
	} {
		if _, err := b.Exec(c[0], c[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	r, err := Start(ctx, b, host, Options{
		NICs: []NIC{{Tap: "tap0", Bridge: "br0"}, {Tap: "tap1", Bridge: "br1"}},
		Setup: `set -e
ip link add lb type vrf table 10
ip link set lb up
ip link set eth0 master lb
ip addr add 10.9.2.1/24 dev eth0
ip addr add 10.9.3.1/24 dev eth1
ip link set eth0 up
ip link set eth1 up
sysctl -qw net.ipv4.ip_forward=1`,
		FRR: `frr defaults traditional
ip prefix-list POOLS seq 10 permit 10.9.100.0/24 le 32
route-map LB-TO-DEFAULT permit 10
 match ip address prefix-list POOLS
exit
router bgp 65001
 bgp router-id 10.9.3.1
 no bgp ebgp-requires-policy
 address-family ipv4 unicast
  redistribute connected
  import vrf lb
  import vrf route-map LB-TO-DEFAULT
 exit-address-family
exit
router bgp 65001 vrf lb
 bgp router-id 10.9.2.1
 no bgp ebgp-requires-policy
 neighbor 10.9.2.11 remote-as 64512
 address-family ipv4 unicast
  redistribute connected
 exit-address-family
exit
`,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("router VM up with FRR in %s", time.Since(start).Round(time.Millisecond))
	if out, err := r.Exec("ip -d link show lb"); err != nil || !strings.Contains(out, "vrf table 10") {
		t.Fatalf("no VRF device in the guest: %v: %s", err, out)
	}
	if _, err := b.StartFRR(peer, false, `frr defaults traditional
router bgp 64512
 bgp router-id 10.9.2.11
 no bgp ebgp-requires-policy
 neighbor 10.9.2.1 remote-as 65001
 address-family ipv4 unicast
  network 10.9.100.5/32
  network 10.9.250.1/32
 exit-address-family
exit
`); err != nil {
		t.Fatal(err)
	}
	if _, err := netns.WaitFor(ctx, 90*time.Second, func() bool {
		out, _ := r.Exec("ip route show 10.9.100.5")
		return strings.Contains(out, "10.9.2.11")
	}); err != nil {
		lb, _ := r.Vtysh("show bgp vrf lb ipv4 unicast")
		def, _ := r.Vtysh("show bgp ipv4 unicast")
		t.Fatalf("the pool's /32 did not cross into the default VRF's kernel table: lb: %s\ndefault: %s\nFRR: %s", lb, def, r.Log())
	}
	if out, _ := r.Exec("ip route show 10.9.250.1"); out != "" {
		t.Errorf("a route outside the pool crossed: %s", out)
	}
	if out, _ := r.Exec("ip route show vrf lb 10.9.250.1"); !strings.Contains(out, "10.9.2.11") {
		t.Errorf("the lb VRF lost its own route: %q", out)
	}
	for _, addr := range []string{"10.9.100.5:80", "10.9.250.1:80"} {
		l, err := netns.Listen(peer, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	dial := netns.Dialer(client, 3*time.Second)
	c, err := dial(ctx, "tcp", "10.9.100.5:80")
	if err != nil {
		t.Fatalf("client to the leaked /32: %v", err)
	}
	c.Close()
	if c, err := dial(ctx, "tcp", "10.9.250.1:80"); err == nil {
		c.Close()
		t.Errorf("client reached a route that must stay in the lb VRF")
	}
}
