package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/charm"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/fakejuju"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// newBed starts a test bed with start for one test, and removes it (after
// logging what the processes said, if the test failed) when the test ends.
func newBed(t *testing.T, start func(context.Context, spinebed.Options) (*spinebed.Bed, error), opts spinebed.Options) *spinebed.Bed {
	t.Helper()
	netns.Require(t)
	if _, _, err := cluster.Binaries(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	opts.Binary, opts.Dir = binary, t.TempDir()
	b, err := start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(b.Logs())
		}
		b.Close()
	})
	return b
}

func TestSpineEndToEnd(t *testing.T) {
	// The controller's local API where the charm is told to look for it, so
	// that the real dispatch binary can run actions against this bed.
	apiAddr := freeAddress(t)
	b := newBed(t, spinebed.Start, spinebed.Options{APIAddress: apiAddr})
	ctx := context.Background()
	if err := b.StartWorkload(b.Config("  public: {addresses: [10.212.100.0/28]}\n", "")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n1, n2 := spinebed.NodeIP(1), spinebed.NodeIP(2)

	// A Cluster Service: both nodes announce its IP; the spine has ECMP.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 8080}}}}
	created := time.Now()
	if _, err := b.Kube.CoreV1().Services("web").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vip, err := b.WaitIP("web", "web", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitNextHops(vip, 30*time.Second, n1, n2); err != nil {
		t.Fatal(err)
	}
	t.Logf("web got %s; create -> route at the spine from both nodes: %s", vip, time.Since(created).Round(time.Millisecond))

	// Traffic: the client reaches both nodes through the spine.
	stop, err := b.ServeVIP(vip, 8080)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	seen := map[string]bool{}
	if _, err := netns.WaitFor(ctx, 10*time.Second, func() bool {
		for range 8 {
			if who, err := netns.Ask(b.Client, vip+":8080"); err == nil {
				seen[who] = true
			}
		}
		return len(seen) == 2
	}); err != nil {
		t.Fatalf("client reached %v through the spine, want both nodes", seen)
	}

	// bgp-status through the real dispatch binary: the controller gathers
	// each speaker's own report over the node network.
	if err := b.ReportSpeakerPods(ctx); err != nil {
		t.Fatal(err)
	}
	dispatch := fakejuju.BuildDispatch(t)
	j := fakejuju.New(t, &fakejuju.State{Config: fakejuju.Defaults(t), Leader: true})
	j.Env = []string{charm.APIEnv + "=" + apiAddr}
	bgpStatus := func() map[string]string {
		t.Helper()
		if out, err := j.Action(t, dispatch, "bgp-status", nil); err != nil || j.State(t).ActionFailed != nil {
			t.Fatalf("bgp-status: %v %v\n%s", err, j.State(t).ActionFailed, out)
		}
		return j.State(t).ActionResults
	}
	r := bgpStatus()
	for i, n := range []string{n1, n2} {
		k := fmt.Sprintf("speakers.%d.", i)
		if r[k+"node"] != fmt.Sprint("node", i+1) || r[k+"peers.0.address"] != fmt.Sprintf("10.212.%d.1", i+1) ||
			r[k+"peers.0.state"] != "established" || r[k+"peers.0.as"] != "64500" || r[k+"routes"] != "1" || r[k+"peers.0.routes"] != "1" || r[k+"error"] != "" {
			t.Fatalf("bgp-status for %s: %v", n, r)
		}
	}
	if r["summary"] != "spine mode: 2 speakers, 2/2 sessions established, 0 with errors" {
		t.Fatalf("bgp-status summary %q", r["summary"])
	}
	t.Logf("bgp-status:\n%s", r["table"])

	// Local: only the node with a ready endpoint announces; moving the
	// endpoint moves the route.
	local := svc.DeepCopy()
	local.Name = "local"
	local.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	if _, err := b.Kube.CoreV1().Services("web").Create(ctx, local, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lvip, err := b.WaitIP("web", "local", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	node, ready := "node2", true
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "local-1", Namespace: "web", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.168.0.9"}, NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}
	if es, err = b.Kube.DiscoveryV1().EndpointSlices("web").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitNextHops(lvip, 30*time.Second, n2); err != nil {
		t.Fatal(err)
	}
	node = "node1"
	es.Endpoints[0].NodeName = &node
	if _, err := b.Kube.DiscoveryV1().EndpointSlices("web").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	took, err := b.WaitNextHops(lvip, 30*time.Second, n1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Local endpoint moved: route moved at the spine in %s", took.Round(time.Millisecond))

	// verify through the real dispatch: the Local Service is announced by
	// the node with its endpoint only, the Cluster one by both nodes, and
	// every BGP session is up.
	if out, err := j.Action(t, dispatch, "verify", nil); err != nil || j.State(t).ActionFailed != nil {
		t.Fatalf("verify: %v %v\n%s", err, j.State(t).ActionFailed, out)
	}
	r = j.State(t).ActionResults
	want := map[string]string{
		"web/local advertised":      "pass announced by BGP from node1",
		"web/local local-endpoints": "pass announced only from nodes with endpoints: node1",
		"web/web advertised":        "pass announced by BGP from node1, node2",
		" bgp node1 -> 10.212.1.1":  "pass established",
		" bgp node2 -> 10.212.2.1":  "pass established",
	}
	for i := 0; r[fmt.Sprintf("checks.%d.name", i)] != ""; i++ {
		k := fmt.Sprintf("checks.%d.", i)
		if w, ok := want[r[k+"service"]+" "+r[k+"name"]]; ok {
			if got := r[k+"result"] + " " + r[k+"detail"]; got != w {
				t.Errorf("verify %s %s: %q, want %q", r[k+"service"], r[k+"name"], got, w)
			}
			delete(want, r[k+"service"]+" "+r[k+"name"])
		}
	}
	if len(want) > 0 || r["failed"] != "0" {
		t.Fatalf("verify: missing %v, failed %s\n%s", want, r["failed"], r["table"])
	}
	t.Logf("verify:\n%s", r["table"])

	// SIGTERM of node1's speaker withdraws its routes at once.
	start := time.Now()
	b.Signal(1, syscall.SIGTERM)
	if _, err := b.WaitNextHops(vip, 10*time.Second, n2); err != nil {
		t.Fatal(err)
	}
	t.Logf("speaker SIGTERM: node1's route gone at the spine in %s", time.Since(start).Round(time.Millisecond))
	if _, err := b.WaitNextHops(lvip, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// A speaker that is gone is listed with the reason, not left out.
	r = bgpStatus()
	if !strings.Contains(r["speakers.0.error"], "unreachable") || r["speakers.1.peers.0.state"] != "established" ||
		r["summary"] != "spine mode: 2 speakers, 1/1 sessions established, 1 with errors" {
		t.Fatalf("bgp-status after node1's speaker stopped: %v", r)
	}
}
