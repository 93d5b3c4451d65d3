package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/calico-lb/calico-lb/tests/failoverbed"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/controller"
)

// speakerUIDs maps each speaker pod's node to the pod's UID.
func speakerUIDs(t *testing.T, b *spinebed.Bed) map[string]types.UID {
	t.Helper()
	pods, err := b.Kube.CoreV1().Pods("lb").List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + access.SpeakerName})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]types.UID{}
	for _, p := range pods.Items {
		out[p.Spec.NodeName] = p.UID
	}
	return out
}

// frrSessions is, per neighbor, its state and how often FRR established
// the session: a reset counts one more. (FRR's "up since" epoch is now
// minus the uptime, so it moves by a second from one read to the next.)
func frrSessions(t *testing.T, b *spinebed.Bed) map[string]string {
	t.Helper()
	out, err := b.FRR.Vtysh("-c", "show bgp neighbors json")
	if err != nil {
		t.Fatal(err)
	}
	var ns map[string]struct {
		State       string `json:"bgpState"`
		Established int    `json:"connectionsEstablished"`
	}
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		t.Fatalf("show bgp neighbors json: %v\n%.2000s", err, out)
	}
	s := map[string]string{}
	for addr, n := range ns {
		s[addr] = fmt.Sprintf("%s, established %d times", n.State, n.Established)
	}
	return s
}

// extraService puts a second Service in front of web's pods, asking for
// an address from pool.
func extraService(t *testing.T, b *spinebed.Bed, name, pool string) {
	t.Helper()
	web, err := b.Kube.CoreV1().Services("web").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "web", Annotations: map[string]string{controller.AnnotationPool: pool}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: web.Spec.Selector,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(web.Spec.Ports[0].TargetPort.IntVal)}}}}
	if web.Spec.Ports[0].TargetPort.Type == intstr.String {
		svc.Spec.Ports[0].TargetPort = web.Spec.Ports[0].TargetPort
	}
	if _, err := b.Kube.CoreV1().Services("web").Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// speakerLogs is what node's speaker pod logged.
func speakerLogs(t *testing.T, b *spinebed.Bed, node string) string {
	t.Helper()
	ctx := context.Background()
	pods, err := b.Kube.CoreV1().Pods("lb").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + access.SpeakerName, FieldSelector: "spec.nodeName=" + node})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("the speaker pod on %s: %v %v", node, err, pods)
	}
	raw, err := b.Kube.CoreV1().Pods("lb").GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestSpineReloadKeepsSessions: on real nodes, with clients connecting
// to a Cluster and a Local Service every 10 ms through the spine, adding
// a pool, changing the pools' communities and changing the peers' timers
// each reach the running speakers (a Service of the new pool is announced,
// the spine sees the community, the speakers take the timers) with no
// failed connection, no speaker pod replaced and no BGP session reset at
// the spine. Before, each change rolled every speaker pod.
func TestSpineReloadKeepsSessions(t *testing.T) {
	b := newBed(t, spinebed.Start, spinebed.Options{})
	ctx := context.Background()
	n1, n2 := spinebed.NodeIP(1), spinebed.NodeIP(2)
	cfg := maps.Clone(spineConfig)
	u := deployUnit(t, b, cfg)
	waitSpeakers(t, b, 2)
	vip, lvip := webAndLocal(t, b, "node2")
	if _, err := b.WaitNextHops(vip, 60*time.Second, n1, n2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitNextHops(lvip, 60*time.Second, n2); err != nil {
		t.Fatal(err)
	}
	waitPods(t, b, vip, 2, "through the spine", nil)
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { _, err := echo(b.Client, lvip); return err == nil }); err != nil {
		t.Fatalf("the Local Service does not answer: %v", err)
	}
	pods, sessions := speakerUIDs(t, b), frrSessions(t, b)
	t.Logf("spine sessions before: %v", sessions)
	cluster, local := failoverbed.StartClient(b.Client, vip+":80"), failoverbed.StartClient(b.Client, lvip+":80")
	start := time.Now()
	settle := func() { time.Sleep(3 * time.Second) } // connections keep going meanwhile

	// A second pool: a Service of it is announced by both nodes.
	cfg["pools"] = "{default: {addresses: [10.212.100.0/28]}, extra: {addresses: [10.212.101.0/28]}}"
	if out, err := u.Configure(ctx, map[string]any{"pools": cfg["pools"]}); err != nil {
		t.Fatalf("config-changed: %v\n%s", err, out)
	}
	extraService(t, b, "extra", "extra")
	evip, err := b.WaitIP("web", "extra", 30*time.Second)
	if err != nil || !strings.HasPrefix(evip, "10.212.101.") {
		t.Fatalf("the Service of the new pool got %q (%v)", evip, err)
	}
	took, err := b.WaitNextHops(evip, 30*time.Second, n1, n2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("new pool: %s announced by both speakers %s after its IP was given", evip, took.Round(time.Millisecond))
	settle()

	// Communities on the first pool: the spine sees them on its routes.
	cfg["pools"] = "{default: {addresses: [10.212.100.0/28], communities: ['65000:100']}, extra: {addresses: [10.212.101.0/28]}}"
	if out, err := u.Configure(ctx, map[string]any{"pools": cfg["pools"]}); err != nil {
		t.Fatalf("config-changed: %v\n%s", err, out)
	}
	var route string
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool {
		route, _ = b.FRR.Vtysh("-c", "show ip bgp "+vip+"/32 json")
		return strings.Count(route, "65000:100") >= 2 // from both nodes
	}); err != nil {
		t.Fatalf("the spine's routes for %s carry no community 65000:100 from both nodes:\n%s", vip, route)
	}
	settle()

	// The peers' timers: the speakers take them without a reset.
	cfg["subnet-spine-peers"] = strings.ReplaceAll(cfg["subnet-spine-peers"].(string), "hold-time: 9", "hold-time: 12")
	if out, err := u.Configure(ctx, map[string]any{"subnet-spine-peers": cfg["subnet-spine-peers"]}); err != nil {
		t.Fatalf("config-changed: %v\n%s", err, out)
	}
	timers := regexp.MustCompile(`BGP peer timers changed.*hold=12`)
	for _, node := range []string{"node1", "node2"} {
		if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { return timers.MatchString(speakerLogs(t, b, node)) }); err != nil {
			t.Fatalf("the speaker on %s did not take the new hold time:\n%s", node, speakerLogs(t, b, node))
		}
	}
	settle()
	end := time.Now()
	cluster.Stop()
	local.Stop()

	for name, c := range map[string]*failoverbed.Client{"Cluster " + vip: cluster, "Local " + lvip: local} {
		if outage, failed := c.Outage(start, end); failed > 0 {
			t.Errorf("the client lost %s for %s (%d failed connections) over the three changes", name, outage, failed)
		}
	}
	if now := speakerUIDs(t, b); !maps.Equal(now, pods) {
		t.Errorf("speaker pods replaced: before %v, after %v", pods, now)
	}
	if now := frrSessions(t, b); !maps.Equal(now, sessions) {
		t.Errorf("BGP sessions reset at the spine: before %v, after %v", sessions, now)
	}
	t.Logf("three changes over %s: no connection lost (every 10 ms to both VIPs), the same speaker pods, the spine's sessions untouched: %v",
		end.Sub(start).Round(time.Second), sessions)
}

// ownershipChanges sums calico_lb_l2_ownership_changes_total over the
// nodes' speakers, scraped from the client as Prometheus would.
func ownershipChanges(t *testing.T, b *spinebed.Bed) int {
	t.Helper()
	total := 0
	for _, ip := range b.NodeIPs {
		out, err := b.Net.Exec(b.Client, "curl", "-sf", "--max-time", "5", "http://"+ip+":9403/metrics")
		if err != nil {
			t.Fatalf("scrape %s: %v", ip, err)
		}
		for _, line := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(line, "calico_lb_l2_ownership_changes_total "); ok {
				n, _ := strconv.ParseFloat(v, 64)
				total += int(n)
			}
		}
	}
	return total
}

// TestL2ReloadKeepsOwners: in l2 mode on real nodes, adding a pool and
// rotating the heartbeat keys (a second key, then moved first, as
// docs/security.md says) reach the running speakers without moving an
// IP: the same node answers ARP, no ownership changes are counted (but
// the new pool's Service's own), no
// speaker pod is replaced and the client connecting every 10 ms loses
// nothing.
func TestL2ReloadKeepsOwners(t *testing.T) {
	b := newL2(t)
	kb := b.Kubebed
	ctx := context.Background()
	u := deployUnit(t, b, map[string]any{"pools": "10.214.0.100-10.214.0.120", "peering-mode": "l2"})
	waitSpeakers(t, b, 3)
	if _, err := kb.Echo(ctx, kubebed.App{NS: "web", Name: "web", Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	vip, err := b.WaitIP("web", "web", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var macs []string
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool {
		macs = arpingMACs(b, vip, 5)
		return len(macs) == 1
	}); err != nil {
		t.Fatalf("ARP for %s answered by %v", vip, macs)
	}
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { _, err := echo(b.Client, vip); return err == nil }); err != nil {
		t.Fatal(err)
	}
	owner, pods, changes := macs[0], speakerUIDs(t, b), ownershipChanges(t, b)
	client := failoverbed.StartClient(b.Client, vip+":80")
	start := time.Now()

	if out, err := u.Configure(ctx, map[string]any{"pools": "{default: {addresses: [10.214.0.100-10.214.0.120]}, extra: {addresses: [10.214.0.130-10.214.0.140]}}"}); err != nil {
		t.Fatalf("config-changed: %v\n%s", err, out)
	}
	extraService(t, b, "extra", "extra")
	evip, err := b.WaitIP("web", "extra", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { _, err := echo(b.Client, evip); return err == nil }); err != nil {
		t.Fatalf("the Service of the new pool (%s) does not answer: %v", evip, err)
	}
	// One change: the new Service's IP, taken by its owner.
	if now := ownershipChanges(t, b); now != changes+1 {
		t.Errorf("%d ownership changes for one new IP", now-changes)
	}
	changes = ownershipChanges(t, b)

	// Rotation: the new key second (every speaker accepts it), then first.
	secrets := b.Kube.CoreV1().Secrets("lb")
	sec, err := secrets.Get(ctx, access.SpeakerSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := strings.TrimSpace(string(sec.Data["l2-keys"]))
	next := strings.Repeat("5a", 32)
	for k, keys := range []string{old + "\n" + next + "\n", next + "\n" + old + "\n"} {
		sec, err := secrets.Get(ctx, access.SpeakerSecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sec.Data["l2-keys"] = []byte(keys)
		if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		for i := range b.Nodes {
			node := fmt.Sprint("node", i+1)
			if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool {
				return strings.Count(speakerLogs(t, b, node), "L2 heartbeat keys changed") >= k+1
			}); err != nil {
				t.Fatalf("the speaker on %s did not take the keys:\n%s", node, speakerLogs(t, b, node))
			}
		}
		time.Sleep(2 * time.Second)
	}
	end := time.Now()
	client.Stop()

	if outage, failed := client.Outage(start, end); failed > 0 {
		t.Errorf("the client lost %s for %s (%d failed connections)", vip, outage, failed)
	}
	if now := arpingMACs(b, vip, 5); len(now) != 1 || now[0] != owner {
		t.Errorf("ARP for %s answered by %v, was %s", vip, now, owner)
	}
	if now := ownershipChanges(t, b); now != changes {
		t.Errorf("%d ownership changes during the key rotation", now-changes)
	}
	if now := speakerUIDs(t, b); !maps.Equal(now, pods) {
		t.Errorf("speaker pods replaced: before %v, after %v", pods, now)
	}
	t.Logf("a new pool and a key rotation over %s: %s stayed with %s, no ownership change, the same speaker pods, no connection lost", end.Sub(start).Round(time.Second), vip, owner)
}
