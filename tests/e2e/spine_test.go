package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/images"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
	"github.com/calico-lb/calico-lb/workload/rock"
	"github.com/calico-lb/calico-lb/workload/speakerset"
)

// newBed starts a test bed with real nodes with start for one test, and
// removes it (after saying what calico-lb's pods did, if the test failed)
// when the test ends.
func newBed(t *testing.T, start func(context.Context, spinebed.Options) (*spinebed.Bed, error), opts spinebed.Options) *spinebed.Bed {
	t.Helper()
	cluster.RequireNodes(t)
	if _, _, err := cluster.Binaries(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	opts.Log = func(s string) { t.Log(s) }
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

// TestSpineEndToEnd runs calico-lb as users run it, on real nodes: the
// charm's real dispatch in the charm container of a Juju-shaped pod
// configures the workload container's Pebble; the controller there gives
// Services their IPs and runs the speakers as the DaemonSet it writes, from
// the image in the registry, under the image's Pebble; FRR learns the /32
// from the nodes that should announce it, and a client behind the spine
// gets its answer from the test application's pods through the spine and
// kube-proxy.
func TestSpineEndToEnd(t *testing.T) {
	b := newBed(t, spinebed.Start, spinebed.Options{})
	kb := b.Kubebed
	ctx := context.Background()
	n1, n2 := spinebed.NodeIP(1), spinebed.NodeIP(2)

	// Deploy and configure as an operator would: speakers on the nodes
	// speaker-node-selector selects (rack r1 only, to begin with), each
	// peering with its rack's spine side.
	first := maps.Clone(spineConfig)
	first["speaker-node-selector"] = "rack in (r1)"
	u := deployUnit(t, b, first)
	st, err := u.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("unit status after config-changed: %s: %s", st.UnitStatus.Name, st.UnitStatus.Message)
	if st.UnitStatus.Name != "active" || !strings.HasPrefix(st.UnitStatus.Message, "spine mode") {
		t.Fatalf("unit status %+v", st.UnitStatus)
	}

	// The controller runs as the image's unprivileged user: it needs only
	// the apiserver.
	pod, err := b.Kube.CoreV1().Pods("lb").Get(ctx, u.Pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := kubebed.WorkloadPID(b.Nodes[slices.Index([]string{"node1", "node2"}, pod.Spec.NodeName)], "controller")
	if err != nil {
		t.Fatal(err)
	}
	if uid, err := kubebed.UID(pid); err != nil || uid != "584792" {
		t.Fatalf("the controller runs as uid %q (%v), want the image's _daemon_ (584792)", uid, err)
	}

	// A Cluster Service: the selected node announces it, and no other.
	created := time.Now()
	if _, err := kb.Echo(ctx, kubebed.App{NS: "web", Name: "web", Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	vip, err := b.WaitIP("web", "web", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitNextHops(vip, 60*time.Second, n1); err != nil {
		t.Fatal(err)
	}
	t.Logf("web got %s; Deployment and Service applied -> route at the spine from node1, the one selected node: %s", vip, time.Since(created).Round(time.Millisecond))
	if pods := waitSpeakers(t, b, 1); pods[0].Spec.NodeName != "node1" {
		t.Fatalf("the speaker runs on %s, which speaker-node-selector does not select", pods[0].Spec.NodeName)
	}

	// The operator selects rack r2 too (config-changed through the real
	// dispatch): its node gets a speaker and announces as well. The
	// speakers are the controller's DaemonSet, from the image the
	// controller's own Pod runs, Ready under the image's Pebble.
	if out, err := u.Configure(ctx, map[string]any{"speaker-node-selector": spineConfig["speaker-node-selector"]}); err != nil {
		t.Fatalf("config-changed: %v\n%s", err, out)
	}
	speakers := waitSpeakers(t, b, 2)
	for _, p := range speakers {
		if img := p.Spec.Containers[0].Image; img != kb.Image(images.CalicoLB) {
			t.Fatalf("speaker %s runs %s, want the controller's %s", p.Name, img, kb.Image(images.CalicoLB))
		}
	}
	// Spine speakers need no privilege (BGP dials out, BFD listens above
	// the privileged ports): they run as the image's unprivileged user,
	// and BFD comes up below all the same.
	for i, ns := range b.Nodes {
		pid, err := kubebed.SpeakerPID(ns)
		if err != nil {
			t.Fatal(err)
		}
		if uid, err := kubebed.UID(pid); err != nil || uid != strconv.Itoa(rock.UID) {
			t.Fatalf("node%d's speaker runs as uid %q (%v), want the image's _daemon_ (%d)", i+1, uid, err, rock.UID)
		}
	}

	// Both nodes announce the Cluster Service now; the spine has ECMP,
	// and the client reaches both pods through kube-proxy.
	if _, err := b.WaitNextHops(vip, 60*time.Second, n1, n2); err != nil {
		t.Fatal(err)
	}
	pods := map[string]bool{}
	if _, err := netns.WaitFor(ctx, 20*time.Second, func() bool {
		for range 8 {
			if a, err := echo(b.Client, vip); err == nil {
				pods[a.Pod] = true
			}
		}
		return len(pods) == 2
	}); err != nil {
		t.Fatalf("the client reached pods %v through the spine and kube-proxy, want both", pods)
	}

	// bgp-status through the real dispatch in the charm container: the
	// controller gathers each speaker pod's own report.
	act, out, err := u.Action(ctx, "bgp-status", nil)
	if err != nil || act.Failed != nil {
		t.Fatalf("bgp-status: %v %v\n%s", err, act, out)
	}
	r := act.Results
	for i := range 2 {
		k := fmt.Sprintf("speakers.%d.", i)
		if r[k+"node"] != fmt.Sprint("node", i+1) || r[k+"peers.0.address"] != fmt.Sprintf("10.212.%d.1", i+1) ||
			r[k+"peers.0.state"] != "established" || r[k+"routes"] != "1" || r[k+"error"] != "" {
			t.Fatalf("bgp-status: %v", r)
		}
	}
	t.Logf("bgp-status:\n%s", r["table"])

	// The speakers' status API tells the network (peers, AS numbers,
	// routes) only to the controller, which bgp-status just went through:
	// from the client, /v1/bgp wants the token; /metrics stays open.
	for path, want := range map[string]string{"/v1/bgp": "401", "/metrics": "200"} {
		out, err := b.Net.Exec(b.Client, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
			fmt.Sprintf("http://%s:9403%s", spinebed.NodeIP(1), path))
		if err != nil || strings.TrimSpace(out) != want {
			t.Fatalf("GET %s from the client: %q (%v), want %s", path, out, err, want)
		}
	}

	// Local: only the node with a ready pod announces, and the pod sees the
	// client's own address (source IP preserved, as Local promises).
	if _, err := kb.Echo(ctx, kubebed.App{NS: "web", Name: "local", Replicas: 1, Policy: corev1.ServiceExternalTrafficPolicyLocal, Nodes: []string{"node2"}}); err != nil {
		t.Fatal(err)
	}
	lvip, err := b.WaitIP("web", "local", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitNextHops(lvip, 30*time.Second, n2); err != nil {
		t.Fatal(err)
	}
	var a kubebed.Answer
	if _, err := netns.WaitFor(ctx, 20*time.Second, func() bool {
		a, err = echo(b.Client, lvip)
		return err == nil
	}); err != nil {
		t.Fatalf("local: %v", err)
	}
	if host, _, _ := strings.Cut(a.Client, ":"); host != "10.212.3.2" || a.Node != "node2" {
		t.Fatalf("Local Service: the pod on %s saw the client as %s, want 10.212.3.2 from node2", a.Node, a.Client)
	}
	t.Logf("Local Service: answered by %s on %s, which saw the client's own address %s", a.Pod, a.Node, a.Client)

	// The pod moves to node1: the route follows.
	moved := time.Now()
	if err := kb.MoveApp(ctx, "web", "local", "node1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitNextHops(lvip, 60*time.Second, n1); err != nil {
		t.Fatal(err)
	}
	t.Logf("Local pod moved to node1: route moved at the spine %s after the Deployment changed", time.Since(moved).Round(time.Millisecond))

	// failover-test plans from what attracts the traffic now: web is
	// announced from both nodes; local's one pod is on node1, so failing
	// node1's speaker would leave it nowhere to go.
	act, out, err = u.Action(ctx, "failover-test", map[string]any{"service": "web/web", "mode": "speaker", "dry-run": true})
	if err != nil || act.Failed != nil {
		t.Fatalf("failover-test: %v %v\n%s", err, act.Failed, out)
	}
	if r := act.Results; r["result"] != "planned" || r["attracting-nodes-before"] != "node1,node2" || r["target"] != "node1" || r["vip"] != vip {
		t.Fatalf("failover-test dry run: %v", r)
	}
	t.Logf("failover-test dry run:\n%s", act.Results["plan"])
	act, _, err = u.Action(ctx, "failover-test", map[string]any{"service": "web/local", "mode": "speaker", "dry-run": true})
	if err != nil || act.Failed == nil || !strings.Contains(*act.Failed, "no other node with one of its pods has a working speaker") {
		t.Fatalf("failover-test of a Local Service with one pod: %v %v", err, act.Failed)
	}
	t.Logf("failover-test refused: %s", *act.Failed)

	// verify through the real dispatch.
	act, out, err = u.Action(ctx, "verify", nil)
	if err != nil || act.Failed != nil {
		t.Fatalf("verify: %v %v\n%s", err, act, out)
	}
	r = act.Results
	if r["failed"] != "0" {
		t.Fatalf("verify failed:\n%s", r["table"])
	}
	t.Logf("verify:\n%s", r["table"])

	// kubectl logs of a speaker pod shows the speaker's own lines.
	logs, err := kb.Logs(ctx, "lb", speakers[0].Name, "speaker")
	if err != nil || !strings.Contains(logs, "node="+speakers[0].Spec.NodeName) {
		t.Fatalf("speaker logs show no speaker lines (%v):\n%s", err, logs)
	}

	// The kubelet holds the speaker to its memory limit, and Go's
	// collector knows it: GOMEMLIMIT in bytes, as the runtime reads it.
	pid, err = kubebed.SpeakerPID(b.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	limit, err := kubebed.MemoryLimit(pid)
	want := speakerset.SpeakerResources.Limits.Memory().Value()
	if err != nil || int64(limit) != want {
		t.Fatalf("speaker container memory limit %d (%v), want %d", limit, err, want)
	}
	if env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); !strings.Contains(string(env), fmt.Sprintf("\x00GOMEMLIMIT=%d\x00", want)) {
		t.Fatalf("the speaker's environment has no GOMEMLIMIT=%d", want)
	}
	if u, err := kubebed.ContainerUsage(pid); err == nil {
		t.Logf("speaker container: %s", u)
	}
}

func labelNode(ctx context.Context, b *spinebed.Bed, name string, labels map[string]string) error {
	n, err := b.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	maps.Copy(n.Labels, labels)
	_, err = b.Kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	return err
}

// waitSpeakers waits until want speaker pods are Ready and returns them
// in node order.
func waitSpeakers(t *testing.T, b *spinebed.Bed, want int) []corev1.Pod {
	t.Helper()
	pods, err := b.Kubebed.WaitSpeakers(context.Background(), "lb", want, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

// waitPods waits until the client has been answered by n different pods
// at vip, and fails the test naming the path (through) and what diag
// (when not nil) says then, otherwise.
func waitPods(t *testing.T, b *spinebed.Bed, vip string, n int, through string, diag func(*spinebed.Bed) string) {
	t.Helper()
	pods := map[string]bool{}
	if _, err := netns.WaitFor(context.Background(), 30*time.Second, func() bool {
		if a, err := echo(b.Client, vip); err == nil {
			pods[a.Pod] = true
		}
		return len(pods) == n
	}); err != nil {
		more := ""
		if diag != nil {
			more = "\n" + diag(b)
		}
		t.Fatalf("the client reached pods %v %s, want %d%s", pods, through, n, more)
	}
}

// echo asks the test application at vip (IPv6 in brackets) from ns.
func echo(ns, vip string) (kubebed.Answer, error) { return kubebed.Ask(ns, vip, time.Second) }

// TestSpineFailures breaks the pieces of calico-lb on real nodes and
// checks that Kubernetes and Pebble bring them back: a speaker pod
// deleted (the DaemonSet recreates it; its routes go and come back), the
// speaker process SIGKILLed inside its pod (the image's Pebble restarts
// it), and the controller pod deleted (the StatefulSet recreates it; no IP
// moves, and a Service created meanwhile is served).
func TestSpineFailures(t *testing.T) {
	b := newBed(t, spinebed.Start, spinebed.Options{BFD: true})
	kb := b.Kubebed
	ctx := context.Background()
	n1, n2 := spinebed.NodeIP(1), spinebed.NodeIP(2)
	spineConfig := maps.Clone(spineConfig)
	spineConfig["subnet-spine-peers"] = "{10.212.1.0/24: [{address: 10.212.1.1, as-number: 64500, hold-time: 9, bfd: true, bfd-interval: 100, bfd-multiplier: 3}], " +
		"10.212.2.0/24: [{address: 10.212.2.1, as-number: 64500, hold-time: 9, bfd: true, bfd-interval: 100, bfd-multiplier: 3}]}"
	u := deployUnit(t, b, spineConfig)
	waitSpeakers(t, b, 2)
	if _, err := kb.Echo(ctx, kubebed.App{NS: "web", Name: "web", Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	vip, err := b.WaitIP("web", "web", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitNextHops(vip, 30*time.Second, n1, n2); err != nil {
		t.Fatal(err)
	}

	// The speaker pod on node1 deleted: it withdraws as it stops, and its
	// replacement announces again.
	pods := waitSpeakers(t, b, 2)
	start := time.Now()
	if err := b.Kube.CoreV1().Pods("lb").Delete(ctx, pods[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	gone, err := b.WaitNextHops(vip, 30*time.Second, n2)
	if err != nil {
		t.Fatal(err)
	}
	back, err := b.WaitNextHops(vip, 60*time.Second, n1, n2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("speaker pod on node1 deleted: its route gone at the spine in %s, back from the recreated pod %s later",
		gone.Round(time.Millisecond), back.Round(time.Millisecond))

	// The speaker process SIGKILLed inside its pod: the kernel closes its
	// BGP session, FRR withdraws, and the image's Pebble starts it again.
	pods = waitSpeakers(t, b, 2)
	pid, err := kubebed.SpeakerPID(b.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitNextHops(vip, 30*time.Second, n2); err != nil {
		t.Fatal(err)
	}
	back, err = b.WaitNextHops(vip, 60*time.Second, n1, n2)
	if err != nil {
		t.Fatal(err)
	}
	again, err := kubebed.SpeakerPID(b.Nodes[0])
	if err != nil || again == pid {
		t.Fatalf("after SIGKILL the speaker is pid %d (was %d): %v", again, pid, err)
	}
	p, err := b.Kube.CoreV1().Pods("lb").Get(ctx, pods[0].Name, metav1.GetOptions{})
	if err != nil || p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatalf("the speaker's container restarted (%v): Pebble should have restarted the process inside it", err)
	}
	t.Logf("speaker SIGKILLed in its pod: Pebble restarted it (pid %d -> %d), route back at the spine %s after it was gone", pid, again, back.Round(time.Millisecond))

	// BFD from inside the speaker pod, under the DaemonSet's own security
	// context (every capability dropped): node2 black-holed with its
	// speaker running, the spine drops its route long before the 9 s hold
	// time would.
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool {
		out, _ := b.FRR.Vtysh("-c", "show bfd peers brief")
		return strings.Count(out, " up ") >= 2
	}); err != nil {
		out, _ := b.FRR.Vtysh("-c", "show bfd peers brief")
		t.Fatalf("BFD sessions with the speaker pods never came up:\n%s", out)
	}
	if err := b.Net.Blackhole(b.Nodes[1], "10.212.2.1"); err != nil {
		t.Fatal(err)
	}
	took, err := b.WaitNextHops(vip, 5*time.Second, n1)
	if err != nil {
		t.Fatal(err)
	}
	if took > 2*time.Second {
		t.Fatalf("node2 black-holed: route gone after %s, the hold time's doing, not BFD's", took)
	}
	t.Logf("node2 black-holed: its route gone at the spine after %s (BFD 100 ms x 3 from the speaker pod; hold time 9 s)", took.Round(time.Millisecond))
	if err := b.Net.Unblackhole(b.Nodes[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitNextHops(vip, 60*time.Second, n1, n2); err != nil {
		t.Fatal(err)
	}

	// The controller pod deleted: the StatefulSet recreates it, Juju runs
	// pebble-ready in the new pod, and the controller re-adopts every IP.
	if err := b.Kube.CoreV1().Pods("lb").Delete(ctx, u.Pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := netns.WaitFor(ctx, time.Minute, func() bool {
		p, err := b.Kube.CoreV1().Pods("lb").Get(ctx, u.Pod, metav1.GetOptions{})
		return err == nil && p.UID != "" && p.DeletionTimestamp == nil && p.CreationTimestamp.After(start)
	}); err != nil {
		t.Fatal("the StatefulSet did not recreate the controller pod")
	}
	// A Service created while no controller runs waits, then is served.
	if _, err := kb.Echo(ctx, kubebed.App{NS: "web", Name: "late", Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if err := u.WaitRunning(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	st, err := u.FreshState(ctx, spineConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.SetState(ctx, st); err != nil {
		t.Fatal(err)
	}
	for _, hook := range []string{"calico-lb-pebble-ready", "config-changed"} {
		if out, err := u.Hook(ctx, hook); err != nil {
			t.Fatalf("%s: %v\n%s", hook, err, out)
		}
	}
	late, err := b.WaitIP("web", "late", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if now, err := b.WaitIP("web", "web", time.Second); err != nil || now != vip {
		t.Fatalf("web moved from %s to %s (%v) across the controller's restart", vip, now, err)
	}
	if _, err := b.WaitNextHops(late, 30*time.Second, n1, n2); err != nil {
		t.Fatal(err)
	}
	if _, err := echo(b.Client, late); err != nil {
		t.Fatalf("late Service at %s: %v", late, err)
	}
	t.Logf("controller pod recreated: web kept %s, late got %s and answers", vip, late)
}

// spineConfig is the charm config of the spine tests: speakers on the
// racks' nodes, each peering with its rack's side of the spine.
var spineConfig = map[string]any{
	"pools": "10.212.100.0/28", "peering-mode": "spine", "as-number": 64512.0,
	"subnet-spine-peers":    "{10.212.1.0/24: [{address: 10.212.1.1, as-number: 64500, hold-time: 9}], 10.212.2.0/24: [{address: 10.212.2.1, as-number: 64500, hold-time: 9}]}",
	"speaker-node-selector": "rack in (r1,r2)",
}

// deployUnit labels the nodes with their racks (node i in rack ri),
// deploys the unit with config and runs its first hooks.
func deployUnit(t *testing.T, b *spinebed.Bed, config map[string]any) *kubebed.Unit {
	t.Helper()
	ctx := context.Background()
	for i := range b.Nodes {
		if err := labelNode(ctx, b, fmt.Sprint("node", i+1), map[string]string{"rack": fmt.Sprint("r", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	u, err := b.Kubebed.Deploy(ctx, "lb", config)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
