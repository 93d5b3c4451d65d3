package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/charm"
	"github.com/calico-lb/calico-lb/tests/fakejuju"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

var macRe = regexp.MustCompile(`\[([0-9A-F:]{17})\]`)

// arpingMACs asks for ip from the client with count broadcast probes and
// returns the MACs that answered (each once, in order of first answer).
// Broadcast every time (-b): after a first answer arping would otherwise
// ask that MAC alone and never see a second node answering.
func arpingMACs(b *spinebed.Bed, ip string, count int) []string {
	out, _ := b.Net.Exec(b.Client, "arping", "-b", "-c", fmt.Sprint(count), "-w", fmt.Sprint(count+1), "-I", "eth0", ip)
	var macs []string
	for _, m := range macRe.FindAllStringSubmatch(out, -1) {
		if !slices.Contains(macs, m[1]) {
			macs = append(macs, m[1])
		}
	}
	return macs
}

func newL2(t *testing.T) *spinebed.Bed { return newBed(t, spinebed.StartL2, spinebed.Options{}) }

func TestL2EndToEnd(t *testing.T) {
	b := newL2(t)
	ctx := context.Background()
	if err := b.StartWorkload("mode: l2\npools:\n  p: {addresses: [10.214.0.100-10.214.0.120, 'fd14::100-fd14::120']}\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	macOf := map[string]int{} // MAC -> node index (1-based)
	for i, ns := range b.Nodes {
		macOf[b.MAC(ns)] = i + 1
	}
	serve := func(vip string) {
		stop, err := b.ServeVIP(vip, 8080)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	create := func(name string, mod func(*corev1.Service)) string {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "web"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 8080}}}}
		if mod != nil {
			mod(svc)
		}
		if _, err := b.Kube.CoreV1().Services("web").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ip, err := b.WaitIP("web", name, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return ip
	}
	// owner waits until exactly one node answers ARP for ip, and returns it.
	owner := func(ip string, not int) int {
		t.Helper()
		var macs []string
		if _, err := netns.WaitFor(ctx, 15*time.Second, func() bool {
			macs = arpingMACs(b, ip, 1)
			return len(macs) == 1 && macOf[macs[0]] != 0 && macOf[macs[0]] != not
		}); err != nil {
			t.Fatalf("ARP for %s answered by %v (not wanted: node%d)", ip, macs, not)
		}
		return macOf[macs[0]]
	}

	vip := create("web", nil)
	serve(vip)
	first := owner(vip, 0)
	// Steady state: one node answers, every time.
	if macs := arpingMACs(b, vip, 5); len(macs) != 1 {
		t.Fatalf("5 ARP probes answered by %v, want one node", macs)
	}
	if who, err := netns.Ask(b.Client, vip+":8080"); err != nil || who != fmt.Sprint("node", first) {
		t.Fatalf("TCP to %s answered by %q (%v), want node%d", vip, who, err, first)
	}
	t.Logf("%s owned by node%d", vip, first)

	// verify through the real dispatch: the owner the speakers report is
	// the node that really answers ARP.
	if err := b.ReportSpeakerPods(ctx); err != nil {
		t.Fatal(err)
	}
	dispatch := fakejuju.BuildDispatch(t)
	j := fakejuju.New(t, &fakejuju.State{Config: fakejuju.Defaults(t), Leader: true})
	j.Env = []string{charm.APIEnv + "=" + strings.TrimPrefix(b.ControllerAPI, "http://")}
	if out, err := j.Action(t, dispatch, "verify", map[string]any{"service": "web/web"}); err != nil || j.State(t).ActionFailed != nil {
		t.Fatalf("verify: %v %v\n%s", err, j.State(t).ActionFailed, out)
	}
	r := j.State(t).ActionResults
	found := false
	for i := 0; r[fmt.Sprintf("checks.%d.name", i)] != ""; i++ {
		k := fmt.Sprintf("checks.%d.", i)
		if r[k+"service"] == "web/web" && r[k+"name"] == "advertised" {
			found = true
			if want := fmt.Sprint("pass ARP/NDP owner node", first); r[k+"result"]+" "+r[k+"detail"] != want {
				t.Fatalf("verify: %q, want %q", r[k+"result"]+" "+r[k+"detail"], want)
			}
		}
	}
	if !found || r["failed"] != "0" {
		t.Fatalf("verify: advertised check found %v, failed %s\n%s", found, r["failed"], r["table"])
	}

	// SIGKILL of the owner's speaker: another node takes over.
	start := time.Now()
	b.Signal(first, syscall.SIGKILL)
	second := owner(vip, first)
	t.Logf("speaker SIGKILL: node%d answers ARP after %s (1 s arping probes; make bench-l2 times it finely)", second, time.Since(start).Round(time.Millisecond))

	// The new owner's link goes down: the third node takes over and the
	// client reconnects.
	start = time.Now()
	if _, err := b.Net.Exec(b.Nodes[second-1], "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	var who string
	if _, err := netns.WaitFor(ctx, 15*time.Second, func() bool {
		w, err := netns.Ask(b.Client, vip+":8080")
		who = w
		return err == nil && w != fmt.Sprint("node", second) && w != fmt.Sprint("node", first)
	}); err != nil {
		t.Fatalf("after node%d's link went down the client reached %q", second, who)
	}
	t.Logf("link down: client connected to %s %s after the fault (2 s connect timeout per attempt)", who, time.Since(start).Round(time.Millisecond))

	// The link comes back: the node that was cut off kept answering for
	// everything on its side; once it hears the others again, within the
	// liveness timeout, one node answers.
	if _, err := b.Net.Exec(b.Nodes[second-1], "ip", "link", "set", "eth0", "up"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if macs := arpingMACs(b, vip, 5); len(macs) != 1 {
		t.Fatalf("after the partition healed, 5 broadcast ARP probes were answered by %v, want one node", macs)
	}

	// The killed speaker comes back: ownership moves at most once (after
	// the hold-down), never back and forth.
	if err := b.StartSpeaker(first); err != nil {
		t.Fatal(err)
	}
	var seen []string
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if m := arpingMACs(b, vip, 1); len(m) == 1 && (len(seen) == 0 || seen[len(seen)-1] != m[0]) {
			seen = append(seen, m[0])
		}
	}
	if len(seen) > 2 {
		t.Fatalf("ownership flapped after node%d came back: %v", first, seen)
	}

	// Local: the owner is the node with the endpoint, and follows it.
	local := create("local", func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal })
	node, ready := "node3", true
	if second == 3 {
		node = "node1" // keep the endpoint off the node that was cut off
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "local-1", Namespace: "web", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.168.0.9"}, NodeName: &node, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}
	es, err := b.Kube.DiscoveryV1().EndpointSlices("web").Create(ctx, es, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := owner(local, 0); fmt.Sprint("node", got) != node {
		t.Fatalf("Local %s owned by node%d, its endpoint is on %s", local, got, node)
	}
	other := "node2"
	if second == 2 {
		other = "node1"
	}
	es.Endpoints[0].NodeName = &other
	if _, err := b.Kube.DiscoveryV1().EndpointSlices("web").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := owner(local, 0); fmt.Sprint("node", got) != other {
		t.Fatalf("Local %s owned by node%d after its endpoint moved to %s", local, got, other)
	}

	// IPv6: the client reaches an IPv6 VIP through NDP.
	v6 := create("web6", func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} })
	serve(v6)
	if _, err := netns.WaitFor(ctx, 15*time.Second, func() bool {
		w, err := netns.Ask(b.Client, "["+v6+"]:8080")
		who = w
		return err == nil && strings.HasPrefix(w, "node")
	}); err != nil {
		t.Fatalf("IPv6 VIP %s not reachable through NDP (last answer %q)", v6, who)
	}
	t.Logf("IPv6 VIP %s answered by %s", v6, who)
}
