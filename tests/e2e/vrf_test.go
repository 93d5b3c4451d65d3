package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// vrfNextHops is the BGP next hops the VRF router has for prefix in vrf
// ("" for the default VRF), sorted.
func vrfNextHops(b *spinebed.Bed, vrf, prefix string) []string {
	cmd := "show bgp ipv4 unicast " + prefix + " json"
	if vrf != "" {
		cmd = "show bgp vrf " + vrf + " ipv4 unicast " + prefix + " json"
	}
	out, err := b.VRF.Vtysh(cmd)
	if err != nil {
		return nil
	}
	return nextHopsOf(out)
}

// vrfRoutes is what the VRF router routes, for failures and the log.
func vrfRoutes(b *spinebed.Bed) string {
	var out strings.Builder
	for _, c := range []string{"show bgp vrf all summary", "show ip route vrf all"} {
		s, _ := b.VRF.Vtysh(c)
		fmt.Fprintf(&out, "router: %s\n%s\n", c, s)
	}
	return out.String()
}

// TestVRFWorkaround is the workaround that splits one router in two VRFs:
// Calico's BGP (BIRD on the nodes) peers the default VRF, the speakers the
// lb VRF on a second subnet of the same link, and the router leaks the
// pool's /32s, and nothing else, into the default VRF. The Calico link
// accepts the config (the speakers' peer is not one of Calico's); the lb
// VRF learns each Service's /32 from the right nodes, with each speaker's
// lb-subnet address as next hop; the client, in
// the default VRF, reaches a Cluster and a Local Service; what the lb VRF
// holds outside the pool stays there, and Calico's peers are not sent the
// pool; verify passes through the real dispatch.
func TestVRFWorkaround(t *testing.T) {
	b := newBed(t, func(ctx context.Context, o spinebed.Options) (*spinebed.Bed, error) {
		return spinebed.StartVRF(ctx, o, nil)
	}, spinebed.Options{})
	ctx := context.Background()
	waitCalicoUp(t, b)
	const model, password = "0b6f2a9e-4c1d-4e8a-9f3b-7d5c2e1a6b04", "vrf-s3cret"
	fc := calicoController(t, b, model, password)
	u, err := b.Kubebed.DeployWith(ctx, "lb", map[string]any{"pools": "10.217.100.0/28", "peering-mode": "spine", "as-number": 64512.0,
		"subnet-spine-peers": "{10.217.1.0/24: [{address: " + spinebed.VRFPeer + ", as-number: 65001}]}",
		"juju-credentials":   "secret:creds", "calico-model": model}, linkState(fc, password))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := u.State(ctx); err != nil || st.UnitStatus.Name != "active" {
		t.Fatalf("with the Calico link: %v %+v", err, st.UnitStatus)
	}
	waitSpeakers(t, b, 2)
	vip, lvip := webAndLocal(t, b, "node2")
	n1, n2 := spinebed.VRFSpeakerIP(1), spinebed.VRFSpeakerIP(2)
	for prefix, want := range map[string][]string{vip + "/32": {n1, n2}, lvip + "/32": {n2}} {
		if _, err := netns.WaitFor(ctx, 60*time.Second, func() bool { return slices.Equal(vrfNextHops(b, "lb", prefix), want) }); err != nil {
			t.Fatalf("the lb VRF's next hops for %s: %v, want %v\n%s", prefix, vrfNextHops(b, "lb", prefix), want, vrfRoutes(b))
		}
	}
	// The default VRF's kernel table forwards the VIPs to the nodes.
	var routes string
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool {
		routes, _ = b.VRF.Exec("ip route show " + vip)
		return strings.Contains(routes, n1) && strings.Contains(routes, n2)
	}); err != nil {
		t.Fatalf("the default VRF's kernel route for %s: %q, want both nodes\n%s", vip, routes, vrfRoutes(b))
	}
	shown, _ := b.VRF.Vtysh("show ip route " + vip + "/32")
	t.Logf("router, default VRF: show ip route %s/32\n%s", vip, shown)
	shown, _ = b.VRF.Vtysh("show ip route vrf lb " + vip + "/32")
	t.Logf("router, lb VRF: show ip route vrf lb %s/32\n%s", vip, shown)

	// Only the pool crosses (the lb VRF's own other prefix stays in its
	// BGP table); Calico is not sent the pool.
	if out, _ := b.VRF.Vtysh("show bgp vrf lb ipv4 unicast " + spinebed.VRFKept); strings.Contains(out, "not in table") {
		t.Fatalf("the lb VRF does not have its own %s:\n%s", spinebed.VRFKept, out)
	}
	if out, _ := b.VRF.Vtysh("show bgp ipv4 unicast " + spinebed.VRFKept); !strings.Contains(out, "not in table") {
		t.Fatalf("%s crossed from the lb VRF into the default VRF:\n%s", spinebed.VRFKept, out)
	}
	for i := 1; i <= 2; i++ {
		n := spinebed.VRFNodeIP(i)
		if out, err := b.VRF.Vtysh("show bgp ipv4 unicast neighbors " + n + " advertised-routes"); err != nil || strings.Contains(out, vip+"/32") || !strings.Contains(out, "10.217.3.0/24") {
			t.Fatalf("the router sends node%d's Calico the pool, or not its other routes: %v\n%s", i, err, out)
		}
	}

	waitPods(t, b, vip, 2, "through the router", vrfRoutes)
	var a kubebed.Answer
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { a, err = echo(b.Client, lvip); return err == nil }); err != nil {
		t.Fatalf("local: %v\n%s", err, vrfRoutes(b))
	}
	if host, _, _ := strings.Cut(a.Client, ":"); host != "10.217.3.2" || a.Node != "node2" {
		t.Fatalf("Local Service: the pod on %s saw the client as %s, want 10.217.3.2 from node2", a.Node, a.Client)
	}
	// Both halves' sessions are up: Calico's in the default VRF, the
	// speakers' in lb.
	for i := 1; i <= 2; i++ {
		if out, _ := b.BIRD(i, "show", "protocols"); !strings.Contains(out, "Established") {
			t.Fatalf("node%d's BIRD lost its session:\n%s", i, out)
		}
	}
	summary, _ := b.VRF.Vtysh("show bgp vrf all summary")
	t.Logf("router: show bgp vrf all summary\n%s", summary)

	st, out, err := u.Action(ctx, "verify", nil)
	if err != nil || st.Failed != nil || st.Results["failed"] != "0" {
		t.Fatalf("verify: %v %v\n%s\n%s", err, st.Failed, st.Results["table"], out)
	}
	t.Logf("verify:\n%s", st.Results["table"])
}
