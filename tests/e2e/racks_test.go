package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/charm/calicolink"
	"github.com/calico-lb/calico-lb/tests/failoverbed"
	"github.com/calico-lb/calico-lb/tests/fakecontroller"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
	"github.com/calico-lb/calico-lb/workload/calico"
	"github.com/calico-lb/calico-lb/workload/speakerset"
)

func newRacks(t *testing.T, calico map[string]any) *spinebed.Bed {
	return newBed(t, func(ctx context.Context, o spinebed.Options) (*spinebed.Bed, error) {
		return spinebed.StartRacks(ctx, o, calico)
	}, spinebed.Options{})
}

// bgpNextHops is the BGP next hops FRR on f's router has for prefix (its
// BGP table, before recursive resolution), sorted.
func bgpNextHops(b *spinebed.Bed, prefix string) []string {
	out, err := b.FRR.Vtysh("-c", "show ip bgp "+prefix+" json")
	if err != nil {
		return nil
	}
	return nextHopsOf(out)
}

// nextHopsOf reads the next hops of every path in FRR's JSON for one
// prefix, sorted.
func nextHopsOf(out string) []string {
	var r struct {
		Paths []struct {
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	if json.Unmarshal([]byte(out), &r) != nil {
		return nil
	}
	var hops []string
	for _, p := range r.Paths {
		for _, n := range p.Nexthops {
			hops = append(hops, n.IP)
		}
	}
	slices.Sort(hops)
	return slices.Compact(hops)
}

// racksRoutes is what the routers and a node route, for failures.
func racksRoutes(b *spinebed.Bed) string {
	var out strings.Builder
	for _, ns := range []string{b.Spine, b.Racks.ToRs[0].NS, b.Nodes[0], b.Client} {
		r, _ := b.Net.Exec(ns, "ip", "route")
		fmt.Fprintf(&out, "--- %s: ip route\n%s", ns, r)
	}
	bgp, _ := b.FRR.Vtysh("-c", "show ip bgp")
	fmt.Fprintf(&out, "--- spine: show ip bgp\n%s", bgp)
	bgp, _ = b.Racks.ToRs[0].Vtysh("-c", "show ip bgp")
	fmt.Fprintf(&out, "--- tor1: show ip bgp\n%s", bgp)
	bgp, _ = b.FRR.Vtysh("-c", "show ip bgp neighbors 10.215.101.2 advertised-routes")
	fmt.Fprintf(&out, "--- spine: advertised to tor1\n%s", bgp)
	return out.String()
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func waitBGPNextHops(t *testing.T, b *spinebed.Bed, prefix string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if _, err := netns.WaitFor(context.Background(), 60*time.Second, func() bool { return slices.Equal(bgpNextHops(b, prefix), want) }); err != nil {
		t.Fatalf("the spine's BGP next hops for %s: %v, want %v", prefix, bgpNextHops(b, prefix), want)
	}
}

// waitCalicoUp waits until every node's BIRD (Calico's stand-in) has its
// session to its ToR established, and the spine has every node's pod
// range from it.
func waitCalicoUp(t *testing.T, b *spinebed.Bed) {
	t.Helper()
	for i := 1; i <= len(b.Nodes); i++ {
		if _, err := netns.WaitFor(context.Background(), 60*time.Second, func() bool {
			out, _ := b.BIRD(i, "show", "protocols")
			return strings.Contains(out, "Established")
		}); err != nil {
			out, _ := b.BIRD(i, "show", "protocols", "all")
			t.Fatalf("node%d's BIRD has no session up:\n%s", i, out)
		}
	}
}

// TestRacksSpinePeering is the seeds' workaround on their topology: Calico
// (BIRD on every node) keeps the node-ToR sessions, calico-lb's speakers
// peer the spine through the ToRs (multihop). The spine learns each
// Service's /32 from the right nodes, the client reaches a Cluster and a
// Local Service through spine and ToR, Calico's sessions stay up, and
// verify passes through the real dispatch.
func TestRacksSpinePeering(t *testing.T) {
	b := newRacks(t, nil)
	ctx := context.Background()
	waitCalicoUp(t, b)
	u := deployUnit(t, b, map[string]any{"pools": "10.215.100.0/28", "peering-mode": "spine", "as-number": 64512.0,
		"subnet-spine-peers": "{10.215.1.0/24: [{address: 10.215.101.1, as-number: 65000, multihop: 2}], 10.215.2.0/24: [{address: 10.215.102.1, as-number: 65000, multihop: 2}]}"})
	waitSpeakers(t, b, 4)
	vip, lvip := racksApps(t, b)
	waitBGPNextHops(t, b, vip+"/32", spinebed.RackNodeIP(1), spinebed.RackNodeIP(2), spinebed.RackNodeIP(3), spinebed.RackNodeIP(4))
	waitBGPNextHops(t, b, lvip+"/32", spinebed.RackNodeIP(3))
	routes, _ := b.FRR.Vtysh("-c", "show ip route "+vip+"/32")
	t.Logf("spine: show ip route %s/32\n%s", vip, routes)
	// Each ToR forwards a VIP to its own rack's nodes: the spine passed
	// the speakers' next hops on.
	for r, want := range map[int][]string{0: {spinebed.RackNodeIP(1), spinebed.RackNodeIP(2)}, 1: {spinebed.RackNodeIP(3), spinebed.RackNodeIP(4)}} {
		tor := b.Racks.ToRs[r]
		if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { return slices.Equal(sorted(tor.Routes(vip)), want) }); err != nil {
			t.Fatalf("tor%d's next hops for %s: %v, want %v\n%s", r+1, vip, tor.Routes(vip), want, racksRoutes(b))
		}
	}

	waitPods(t, b, vip, 2, "through spine and ToRs", racksRoutes)
	var a kubebed.Answer
	var err error
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { a, err = echo(b.Client, lvip); return err == nil }); err != nil {
		t.Fatalf("local: %v", err)
	}
	if host, _, _ := strings.Cut(a.Client, ":"); host != "10.215.3.2" || a.Node != "node3" {
		t.Fatalf("Local Service: the pod on %s saw the client as %s, want 10.215.3.2 from node3", a.Node, a.Client)
	}

	// Calico's sessions are untouched: each node's BIRD still has its
	// ToR, and the spine still has every node's pod range.
	for i := 1; i <= 4; i++ {
		out, _ := b.BIRD(i, "show", "protocols")
		if !strings.Contains(out, "Established") {
			t.Fatalf("node%d's BIRD lost its session:\n%s", i, out)
		}
	}
	for i := 1; i <= 4; i++ {
		if hops := b.NextHops(fmt.Sprintf("10.%d.%d.0/24", 215+20, i)); len(hops) == 0 {
			t.Fatalf("the spine has no route to node%d's pods", i)
		}
	}

	st, out, err := u.Action(ctx, "verify", nil)
	if err != nil || st.Failed != nil || st.Results["failed"] != "0" {
		t.Fatalf("verify: %v %v\n%s\n%s", err, st.Failed, st.Results["table"], out)
	}
	t.Logf("verify:\n%s", st.Results["table"])

	// Dedicated racks: speakers in rack 1 only. The Cluster Service is
	// announced from rack 1's nodes and reachable through them; the Local
	// one, whose pod runs in rack 2, is announced by nobody, and verify
	// says why and what to do.
	for i := 1; i <= 4; i++ {
		if err := labelNode(ctx, b, fmt.Sprint("node", i), map[string]string{"tor": fmt.Sprint((i + 1) / 2)}); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := u.Configure(ctx, map[string]any{"speaker-node-selector": "tor in (1)"}); err != nil {
		t.Fatalf("config-changed: %v\n%s", err, out)
	}
	for _, p := range waitSpeakers(t, b, 2) {
		if n := p.Spec.NodeName; n != "node1" && n != "node2" {
			t.Fatalf("a speaker runs on %s, outside rack 1", n)
		}
	}
	waitBGPNextHops(t, b, vip+"/32", spinebed.RackNodeIP(1), spinebed.RackNodeIP(2))
	waitBGPNextHops(t, b, lvip+"/32")
	waitPods(t, b, vip, 2, "through rack 1", nil)
	st, _, err = u.Action(ctx, "verify", nil)
	r := st.Results
	if err != nil || r["failed"] == "0" || !strings.Contains(r["table"], "where no speaker runs") || !strings.Contains(r["table"], "externalTrafficPolicy: Cluster") {
		t.Fatalf("verify with the Local pod outside the speakers' rack: %v\n%s", err, r["table"])
	}
	t.Logf("verify, speakers in rack 1 only:\n%s", r["table"])
}

// TestRacksCalicoMode is calico mode on the seeds' topology: no speakers;
// the Calico link puts the pool into calico's service-IP option (in a
// fake Juju controller the charm reaches from its pod), and Calico's BGP
// (BIRD, the stand-in, rendered from that option) advertises the pool from
// every node to the ToRs, and a Local Service's /32 from the node with its
// pod only. The client reaches both; the Local pod sees the client's own
// address; moving the pod moves the /32; verify passes, and with the
// option emptied it fails naming the juju config command. Then the
// failover test's mode=pod, timed by the probe on the client, agrees with
// an independent client.
func TestRacksCalicoMode(t *testing.T) {
	const model, password = "5b2d0c9e-7d2b-4c55-9a1e-2b7c4d6e8f02", "racks-s3cret"
	b, fc := linkedRacks(t, model, password)
	ctx := context.Background()
	option := func() string { return spinebed.CalicoOption(fc, model, calico.OptLoadBalancerIPs) }
	setOption := func(v string) { spinebed.SetCalicoOption(fc, model, calico.OptLoadBalancerIPs, v) }
	u, err := b.Kubebed.DeployWith(ctx, "lb", map[string]any{"pools": "10.215.100.0/28", "peering-mode": "calico", "juju-credentials": "secret:creds", "calico-model": model},
		linkState(fc, password))
	if err != nil {
		t.Fatal(err)
	}
	if got := option(); got != "10.215.100.0/28" {
		st, _ := u.State(ctx)
		t.Fatalf("calico's %s is %q after config-changed, want the pool (unit: %+v)", calico.OptLoadBalancerIPs, got, st.UnitStatus)
	}
	kb := b.Kubebed
	// The pool from every node, through both ToRs.
	waitBGPNextHops(t, b, "10.215.100.0/28", "10.215.101.2", "10.215.102.2")
	vip, lvip := racksApps(t, b)
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { _, err := echo(b.Client, vip); return err == nil }); err != nil {
		t.Fatalf("the client gets no answer from %s through Calico's routes", vip)
	}
	waitBGPNextHops(t, b, lvip+"/32", "10.215.102.2")
	var a kubebed.Answer
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { a, err = echo(b.Client, lvip); return err == nil }); err != nil {
		t.Fatalf("local: %v", err)
	}
	if host, _, _ := strings.Cut(a.Client, ":"); host != "10.215.3.2" || a.Node != "node3" {
		t.Fatalf("Local Service: the pod on %s saw the client as %s, want 10.215.3.2 from node3", a.Node, a.Client)
	}
	routes, _ := b.FRR.Vtysh("-c", "show ip bgp")
	t.Logf("spine: show ip bgp\n%s", routes)
	if err := kb.MoveApp(ctx, "web", "local", "node1"); err != nil {
		t.Fatal(err)
	}
	waitBGPNextHops(t, b, lvip+"/32", "10.215.101.2")
	t.Logf("the Local pod moved to node1: its /32 moved to rack 1's ToR")

	st, out, err := u.Action(ctx, "verify", nil)
	if err != nil || st.Failed != nil || st.Results["failed"] != "0" {
		t.Fatalf("verify: %v %v\n%s\n%s", err, st.Failed, st.Results["table"], out)
	}
	t.Logf("verify:\n%s", st.Results["table"])

	// The failover test's mode=pod in calico mode, timed from the client:
	// web (Cluster), and roam, a Local Service whose one pod may run
	// anywhere (local is pinned to node1 now).
	if _, err := kb.Echo(ctx, kubebed.App{NS: "web", Name: "roam", Replicas: 1, Policy: corev1.ServiceExternalTrafficPolicyLocal}); err != nil {
		t.Fatal(err)
	}
	rvip, err := b.WaitIP("web", "roam", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	probe, err := failoverbed.StartProbe(b, binary, "10.215.3.2", "10.215.100.0/28")
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"web", "roam"} {
		target := vip
		if svc == "roam" {
			target = rvip
		}
		if err := failoverbed.WaitAnswers(b, target, time.Minute); err != nil {
			t.Fatal(err)
		}
		client := failoverbed.StartClient(b.Client, net.JoinHostPort(target, fmt.Sprint(kubebed.EchoPort)))
		r, err := failoverbed.Run(ctx, u, client, probe.With(map[string]any{"service": "web/" + svc, "mode": "pod", "timeout": 60}))
		client.Stop()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("calico mode, %s pod: %s, outage-ms %s (independent client %s), %s -> %s\n%s", svc, r.Results["result"], r.Results["outage-ms"],
			r.Client.Round(time.Millisecond), r.Results["attracting-nodes-before"], r.Results["attracting-nodes-after"], r.Results["timeline"])
		if r.Failed != "" || !r.Agree() {
			t.Fatalf("failover-test mode=pod in calico mode: %q, agree %v", r.Failed, r.Agree())
		}
		if err := failoverbed.Settled(ctx, b, target); err != nil {
			t.Fatal(err)
		}
	}

	// The option emptied behind calico-lb's back: verify fails naming the
	// charm's fix and the exact juju config command.
	setOption("")
	st, _, err = u.Action(ctx, "verify", nil)
	if err != nil || st.Results["failed"] == "0" || !strings.Contains(st.Results["table"], "sync-calico dry-run=false") ||
		!strings.Contains(st.Results["table"], calicolink.Command("calico", "bgp-service-loadbalancer-ips", []string{"10.215.100.0/28"})) {
		t.Fatalf("verify with the option emptied: %v\n%s", err, st.Results["table"])
	}
	t.Logf("verify with the option emptied:\n%s", st.Results["table"])

}

// TestRacksCollision is why calico-lb exists, shown: speakers told to peer
// their own ToR, where Calico (BIRD) already holds the session from the
// same address. The ToR sees a second connection from a neighbour it has
// and resolves the collision by closing one: the speakers' sessions never
// hold, while BIRD's stay up. With the Calico link reading the same calico
// options, the charm refuses that config before it reaches the workload:
// blocked, naming the peer and the calico option.
func TestRacksCollision(t *testing.T) {
	b := newRacks(t, nil)
	ctx := context.Background()
	waitCalicoUp(t, b)
	tors := "{10.215.1.0/24: [{address: 10.215.1.1, as-number: 65001}], 10.215.2.0/24: [{address: 10.215.2.1, as-number: 65002}]}"
	u := deployUnit(t, b, map[string]any{"pools": "10.215.100.0/28", "peering-mode": "spine", "as-number": 64512.0, "subnet-spine-peers": tors})
	waitSpeakers(t, b, 4)
	if _, err := b.Kubebed.Echo(ctx, kubebed.App{NS: "web", Name: "web", Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	// The speakers try for half a minute; none of their sessions holds.
	var established []string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, _, err := u.Action(ctx, "bgp-status", nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			if st.Results[fmt.Sprintf("speakers.%d.peers.0.state", i)] == "established" {
				established = append(established, st.Results[fmt.Sprintf("speakers.%d.node", i)])
			}
		}
		time.Sleep(2 * time.Second)
	}
	tor1 := b.Racks.ToRs[0]
	neighbors, _ := tor1.Vtysh("-c", "show bgp summary")
	log := tor1.Log()
	t.Logf("tor1: show bgp summary\n%s", neighbors)
	collisions := 0
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(strings.ToLower(l), "collision") {
			collisions++
			if collisions <= 5 {
				t.Logf("tor1 log: %s", l)
			}
		}
	}
	t.Logf("speakers seen established at some poll: %v; tor1 logged %d collision lines", established, collisions)
	// BIRD's sessions are what the ToR keeps.
	for i := 1; i <= 4; i++ {
		out, _ := b.BIRD(i, "show", "protocols")
		if !strings.Contains(out, "Established") {
			t.Fatalf("node%d's BIRD lost its session to the collision:\n%s", i, out)
		}
	}
	if collisions == 0 {
		t.Fatalf("tor1 logged no collision; its log:\n%s", log)
	}
	if vip, err := b.WaitIP("web", "web", 30*time.Second); err == nil && len(bgpNextHops(b, vip+"/32")) > 0 {
		t.Fatalf("the spine learnt %s (%v) through the colliding sessions", vip, bgpNextHops(b, vip+"/32"))
	}

	// The same config with the Calico link: refused before the workload.
	const model, password = "6c3e1d0f-7d2b-4c55-9a1e-2b7c4d6e8f03", "collide-s3cret"
	fc := calicoController(t, b, model, password)
	u2, err := b.Kubebed.DeployWith(ctx, "lb2", map[string]any{"pools": "10.215.100.16/28", "peering-mode": "spine", "as-number": 64512.0, "subnet-spine-peers": tors,
		"juju-credentials": "secret:creds", "calico-model": model, "load-balancer-class": "lb2.calico-lb.io/spine"},
		linkState(fc, password))
	if err != nil {
		t.Fatal(err)
	}
	st, err := u2.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("with the Calico link: %s: %s", st.UnitStatus.Name, st.UnitStatus.Message)
	if st.UnitStatus.Name != "blocked" || !strings.Contains(st.UnitStatus.Message, "spine peer 10.215.1.1") || !strings.Contains(st.UnitStatus.Message, "subnet-bgp-peers[10.215.1.0/24]") {
		t.Fatalf("unit status %+v", st.UnitStatus)
	}
	if _, err := b.Kube.AppsV1().DaemonSets("lb2").Get(ctx, "calico-lb-speaker", metav1.GetOptions{}); err == nil {
		t.Fatal("the refused config reached the workload: it runs speakers")
	}
}

// racksApps deploys web (Cluster, 2 pods) and local (Local, its pod on
// node3) in namespace web and returns their IPs.
func racksApps(t *testing.T, b *spinebed.Bed) (vip, lvip string) { return webAndLocal(t, b, "node3") }

// webAndLocal deploys the test application as web (Cluster, two pods)
// and local (Local, one pod on localNode), and returns their IPs.
func webAndLocal(t *testing.T, b *spinebed.Bed, localNode string) (vip, lvip string) {
	t.Helper()
	ctx := context.Background()
	for _, app := range []kubebed.App{{NS: "web", Name: "web", Replicas: 2},
		{NS: "web", Name: "local", Replicas: 1, Policy: corev1.ServiceExternalTrafficPolicyLocal, Nodes: []string{localNode}}} {
		if _, err := b.Kubebed.Echo(ctx, app); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if vip, err = b.WaitIP("web", "web", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if lvip, err = b.WaitIP("web", "local", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return vip, lvip
}

// linkedRacks is the racks bed with Calico following calico's options as
// a fake Juju controller holds them in model (empty service-IP options to
// begin with), Calico's sessions up, and the nodes labelled with their
// racks (r1, r2).
func linkedRacks(t *testing.T, model, password string) (*spinebed.Bed, *fakecontroller.Controller) {
	t.Helper()
	b := newRacks(t, map[string]any{calico.OptLoadBalancerIPs: "", calico.OptExternalIPs: ""})
	fc := calicoController(t, b, model, password)
	b.FollowController(fc, model)
	waitCalicoUp(t, b)
	for i := range b.Nodes {
		if err := labelNode(context.Background(), b, fmt.Sprint("node", i+1), map[string]string{"rack": fmt.Sprint("r", i/2+1)}); err != nil {
			t.Fatal(err)
		}
	}
	return b, fc
}

// calicoController is the bed's fake Juju controller with calico's
// options (spinebed.CalicoController), until the test ends.
func calicoController(t *testing.T, b *spinebed.Bed, model, password string) *fakecontroller.Controller {
	t.Helper()
	fc, err := b.CalicoController(model, password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fc.Close)
	return fc
}

var linkState = spinebed.LinkState

// switchClients starts a client connecting to vip (Cluster) and to lvip
// (Local) every 10 ms from behind the spine. lost says what they lost
// between from and to ("" for nothing); stop ends them.
func switchClients(b *spinebed.Bed, vip, lvip string) (lost func(from, to time.Time) string, stop func()) {
	port := fmt.Sprint(kubebed.EchoPort)
	cl, lo := failoverbed.StartClient(b.Client, net.JoinHostPort(vip, port)), failoverbed.StartClient(b.Client, net.JoinHostPort(lvip, port))
	lost = func(from, to time.Time) string {
		var out []string
		for _, c := range []struct {
			name string
			c    *failoverbed.Client
		}{{"Cluster", cl}, {"Local", lo}} {
			if outage, n := c.c.Outage(from, to); n > 0 {
				out = append(out, fmt.Sprintf("%s lost %s (%d failed connections)", c.name, outage.Round(time.Millisecond), n))
			}
		}
		return strings.Join(out, "; ")
	}
	return lost, func() { cl.Stop(); lo.Stop() }
}

// TestRacksModeSwitch switches peering-mode live on the seeds' topology,
// with clients connecting to a Cluster and a Local Service every 10 ms
// from behind the spine: calico -> spine keeps calico-lb's pool in
// calico's option (Calico keeps announcing it) until every speaker
// announces, and spine -> calico keeps the speakers announcing while
// Calico takes over. Neither direction loses a connection, and no
// Service changes IP. (Before, calico -> spine emptied calico's option
// first: the clients lost 3.7 s; spine -> calico removed the speakers at
// once: 0.1 s, on this bed where the stand-in BIRD follows within a
// second.)
func TestRacksModeSwitch(t *testing.T) {
	const model, password = "8e3f1a2b-7d2b-4c55-9a1e-2b7c4d6e8f03", "racks-s3cret"
	b, fc := linkedRacks(t, model, password)
	ctx := context.Background()
	option := func() string { return spinebed.CalicoOption(fc, model, calico.OptLoadBalancerIPs) }
	const pool = "10.215.100.0/28"
	u, err := b.Kubebed.DeployWith(ctx, "lb", map[string]any{"pools": pool, "peering-mode": "calico", "as-number": 64512.0,
		"subnet-spine-peers": "{10.215.1.0/24: [{address: 10.215.101.1, as-number: 65000, multihop: 2}], 10.215.2.0/24: [{address: 10.215.102.1, as-number: 65000, multihop: 2}]}",
		"juju-credentials":   "secret:creds", "calico-model": model}, linkState(fc, password))
	if err != nil {
		t.Fatal(err)
	}
	waitBGPNextHops(t, b, pool, "10.215.101.2", "10.215.102.2")
	vip, lvip := racksApps(t, b)
	for _, ip := range []string{vip, lvip} {
		if err := failoverbed.WaitAnswers(b, ip, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	lost, stop := switchClients(b, vip, lvip)

	// calico -> spine: the hook returns once the speakers announce and
	// calico-lb's CIDR has left calico.
	start := time.Now()
	if out, err := u.Configure(ctx, map[string]any{"peering-mode": "spine"}); err != nil {
		t.Fatalf("config-changed: %v\n%s", err, out)
	}
	hook := time.Since(start)
	if got := option(); got != "" {
		st, _ := u.State(ctx)
		t.Fatalf("after the switch to spine calico's option is %q (unit: %+v)", got, st.UnitStatus)
	}
	waitBGPNextHops(t, b, vip+"/32", spinebed.RackNodeIP(1), spinebed.RackNodeIP(2), spinebed.RackNodeIP(3), spinebed.RackNodeIP(4))
	waitBGPNextHops(t, b, pool) // Calico's aggregate is gone
	time.Sleep(2 * time.Second)
	toSpine := time.Now()
	if l := lost(start, toSpine); l != "" {
		t.Errorf("calico -> spine: %s", l)
	} else {
		t.Logf("calico -> spine: config-changed took %s (it waits for the speakers); no connection lost", hook.Round(time.Millisecond))
	}

	// spine -> calico: calico's option first, the speakers stay for the
	// hand-over, then go.
	if out, err := u.Configure(ctx, map[string]any{"peering-mode": "calico"}); err != nil {
		t.Fatalf("config-changed: %v\n%s", err, out)
	}
	if got := option(); got != pool {
		t.Fatalf("after the switch to calico its option is %q, want %s", got, pool)
	}
	waitBGPNextHops(t, b, pool, "10.215.101.2", "10.215.102.2")
	if _, err := netns.WaitFor(ctx, 2*speakerset.DefaultSpeakerHandOver, func() bool { return len(bgpNextHops(b, vip+"/32")) == 0 }); err != nil {
		t.Fatalf("the speakers still announce %s/32 %s after the switch to calico", vip, 2*speakerset.DefaultSpeakerHandOver)
	}
	gone := time.Since(toSpine)
	time.Sleep(2 * time.Second)
	end := time.Now()
	stop()
	if l := lost(toSpine, end); l != "" {
		t.Errorf("spine -> calico: %s", l)
	} else {
		t.Logf("spine -> calico: Calico announces the pool, the speakers' /32s went %s after the switch; no connection lost", gone.Round(time.Second))
	}
	for name, want := range map[string]string{"web": vip, "local": lvip} {
		if got, err := b.WaitIP("web", name, 5*time.Second); err != nil || got != want {
			t.Errorf("%s's IP went from %s to %s (%v)", name, want, got, err)
		}
	}
}

// TestRacksModeSwitchL2 switches peering-mode live between l2 and the BGP
// modes on the racks bed, with a pool on rack 1's segment and the speakers
// on rack 1 (speaker-node-selector rack=r1): rack 1's ToR reaches the pool
// as its connected subnet (ARP, answered by the l2 owner) unless BGP gives
// it a longer route (Calico's aggregate, or the speakers' /32s through the
// spine), so every mode reaches the clients behind the spine. calico -> l2
// keeps the pool in calico's option until every speaker hears the others;
// l2 -> calico keeps the owners answering while Calico takes over;
// l2 <-> spine rolls the speakers node by node (their capabilities
// differ). No direction may lose a connection, and no Service changes IP.
func TestRacksModeSwitchL2(t *testing.T) {
	const model, password = "5c0d7e21-3a4b-4f6e-8d9c-1b2a3c4d5e6f", "racks-l2-s3cret"
	b, fc := linkedRacks(t, model, password)
	ctx := context.Background()
	option := func() string { return spinebed.CalicoOption(fc, model, calico.OptLoadBalancerIPs) }
	pool := spinebed.RackL2Pool
	u, err := b.Kubebed.DeployWith(ctx, "lb", map[string]any{"pools": pool, "peering-mode": "calico", "as-number": 64512.0,
		"speaker-node-selector": "rack=r1",
		"subnet-spine-peers":    "{10.215.1.0/24: [{address: 10.215.101.1, as-number: 65000, multihop: 2}]}",
		"juju-credentials":      "secret:creds", "calico-model": model}, linkState(fc, password))
	if err != nil {
		t.Fatal(err)
	}
	waitBGPNextHops(t, b, pool, "10.215.101.2", "10.215.102.2")
	vip, lvip := webAndLocal(t, b, "node1")
	for _, ip := range []string{vip, lvip} {
		if err := failoverbed.WaitAnswers(b, ip, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	tor1 := b.Racks.ToRs[0].NS
	// answered is whether rack 1's ToR gets an ARP answer for vip.
	answered := func() bool {
		out, _ := b.Net.Exec(tor1, "arping", "-c", "1", "-w", "1", "-I", "br0", vip)
		return macRe.MatchString(out)
	}
	lost, stop := switchClients(b, vip, lvip)
	defer stop()
	mark := time.Now()
	step := func(name string, settle func()) {
		t.Helper()
		settle()
		time.Sleep(2 * time.Second)
		now := time.Now()
		if l := lost(mark, now); l != "" {
			t.Errorf("%s: %s", name, l)
		} else {
			t.Logf("%s: no connection lost (%s)", name, now.Sub(mark).Round(time.Second))
		}
		mark = now
	}
	configure := func(mode string) {
		t.Helper()
		if out, err := u.Configure(ctx, map[string]any{"peering-mode": mode}); err != nil {
			t.Fatalf("config-changed to %s: %v\n%s", mode, err, out)
		}
	}

	step("calico -> l2", func() {
		configure("l2")
		if got := option(); got != "" {
			st, _ := u.State(ctx)
			t.Fatalf("after the switch to l2 calico's option is %q (unit: %+v)", got, st.UnitStatus)
		}
		waitBGPNextHops(t, b, pool) // Calico's aggregate is gone: ARP on rack 1
		if _, err := netns.WaitFor(ctx, 10*time.Second, answered); err != nil {
			t.Fatalf("no speaker answers ARP for %s on rack 1 in l2 mode", vip)
		}
	})
	step("l2 -> spine", func() {
		configure("spine")
		waitBGPNextHops(t, b, vip+"/32", spinebed.RackNodeIP(1), spinebed.RackNodeIP(2))
		waitSpeakers(t, b, 2)
		if _, err := netns.WaitFor(ctx, 10*time.Second, func() bool { return !answered() }); err != nil {
			t.Fatalf("a speaker still answers ARP for %s in spine mode", vip)
		}
	})
	step("spine -> l2", func() {
		configure("l2")
		waitBGPNextHops(t, b, vip+"/32")
		waitSpeakers(t, b, 2)
		if _, err := netns.WaitFor(ctx, 10*time.Second, answered); err != nil {
			t.Fatalf("no speaker answers ARP for %s on rack 1 in l2 mode", vip)
		}
	})
	step("l2 -> calico", func() {
		configure("calico")
		if got := option(); got != pool {
			t.Fatalf("after the switch to calico its option is %q, want %s", got, pool)
		}
		waitBGPNextHops(t, b, pool, "10.215.101.2", "10.215.102.2")
		if _, err := netns.WaitFor(ctx, 2*speakerset.DefaultSpeakerHandOver, func() bool { return !answered() }); err != nil {
			t.Fatalf("a speaker still answers ARP for %s %s after the switch to calico", vip, 2*speakerset.DefaultSpeakerHandOver)
		}
	})
	for name, want := range map[string]string{"web": vip, "local": lvip} {
		if got, err := b.WaitIP("web", name, 5*time.Second); err != nil || got != want {
			t.Errorf("%s's IP went from %s to %s (%v)", name, want, got, err)
		}
	}
}
