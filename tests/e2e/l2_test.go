package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/speaker"
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

// TestL2EndToEnd runs calico-lb in l2 mode on three real nodes, deployed as
// Juju deploys it: one speaker answers ARP (and NDP) for each IP, the client
// on the segment reaches the test application's pods through it and
// kube-proxy, and ownership moves when the owner's speaker or link goes.
func TestL2EndToEnd(t *testing.T) {
	b := newL2(t)
	kb := b.Kubebed
	ctx := context.Background()
	u := deployUnit(t, b, map[string]any{"pools": "10.214.0.100-10.214.0.120 fd14::100-fd14::120", "peering-mode": "l2"})
	waitSpeakers(t, b, 3)
	macOf := map[string]int{} // MAC -> node index (1-based)
	for i, ns := range b.Nodes {
		macOf[b.MAC(ns)] = i + 1
	}
	// owner waits until exactly one node, not not, answers ARP for ip.
	owner := func(ip string, not int) int {
		t.Helper()
		var macs []string
		if _, err := netns.WaitFor(ctx, 20*time.Second, func() bool {
			macs = arpingMACs(b, ip, 1)
			return len(macs) == 1 && macOf[macs[0]] != 0 && macOf[macs[0]] != not
		}); err != nil {
			t.Fatalf("ARP for %s answered by %v (not wanted: node%d)", ip, macs, not)
		}
		return macOf[macs[0]]
	}
	// steady waits until 5 broadcast probes in a row are answered by one
	// node. Speakers that miss heartbeats for 350 ms (a starved machine:
	// go test runs the real-node packages side by side) may both answer
	// for a moment; what must hold is that they settle on one owner.
	steady := func(ip, when string) {
		t.Helper()
		var macs []string
		took, err := netns.WaitFor(ctx, 20*time.Second, func() bool {
			macs = arpingMACs(b, ip, 5)
			return len(macs) == 1
		})
		if err != nil {
			t.Fatalf("%s: 5 ARP probes answered by %v, want one node, for 20 s", when, macs)
		}
		if took > 6*time.Second {
			t.Logf("%s: one node answered every probe only after %s", when, took.Round(time.Millisecond))
		}
	}
	answer := func(vip string) kubebed.Answer {
		t.Helper()
		var a kubebed.Answer
		var err error
		if _, werr := netns.WaitFor(ctx, 30*time.Second, func() bool {
			a, err = echo(b.Client, vip)
			return err == nil
		}); werr != nil {
			t.Fatalf("the client got no answer from %s: %v", vip, err)
		}
		return a
	}

	if _, err := kb.Echo(ctx, kubebed.App{NS: "web", Name: "web", Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	vip, err := b.WaitIP("web", "web", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	first := owner(vip, 0)
	steady(vip, "at start")
	a := answer(vip)
	t.Logf("%s owned by node%d; answered by %s on %s", vip, first, a.Pod, a.Node)

	// A forger on the segment (the client) sends heartbeats for the owner,
	// to every node, 20 a second for about 10 s, each claiming the owner
	// started that very moment (the others would hold it down and take its
	// IP while it still answers): in the unauthenticated format of old, and
	// in today's with a key it does not have. Nothing changes: one node
	// answers, the same.
	var sends []string
	for _, ip := range b.NodeIPs {
		sends = append(sends, fmt.Sprintf(`now=$(date +%%s%%N); printf 'CLB1 node%d %%s 0' "$now" > /dev/udp/%s/%d; printf 'CLB2 node%d %%s 0 99999999 %%s %s' "$now" "$now" > /dev/udp/%s/%d`,
			first, ip, speaker.DefaultL2Port, first, strings.Repeat("ab", 32), ip, speaker.DefaultL2Port))
	}
	script := "for i in $(seq 200); do " + strings.Join(sends, "; ") + "; sleep 0.05; done"
	forging := make(chan error, 1)
	go func() {
		out, err := b.Net.Exec(b.Client, "bash", "-c", script)
		if err != nil {
			err = fmt.Errorf("%w: %s", err, out)
		}
		forging <- err
	}()
	time.Sleep(time.Second) // hold-down would have moved it by now
	for i := 0; i < 3; i++ {
		if macs := arpingMACs(b, vip, 2); len(macs) != 1 || macOf[macs[0]] != first {
			t.Fatalf("while heartbeats were forged, ARP for %s was answered by %v, want node%d alone", vip, macs, first)
		}
	}
	if err := <-forging; err != nil {
		t.Fatalf("forger: %v", err)
	}

	// verify through the real dispatch: the owner the speakers report is
	// the node that really answers ARP.
	st, out, err := u.Action(ctx, "verify", map[string]any{"service": "web/web"})
	if err != nil || st.Failed != nil {
		t.Fatalf("verify: %v %v\n%s", err, st, out)
	}
	r := st.Results
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

	// failover-test would fail the node that really answers ARP.
	st, out, err = u.Action(ctx, "failover-test", map[string]any{"service": "web/web", "mode": "node", "dry-run": true})
	if err != nil || st.Failed != nil {
		t.Fatalf("failover-test: %v %v\n%s", err, st.Failed, out)
	}
	if r := st.Results; r["result"] != "planned" || r["target"] != fmt.Sprint("node", first) || r["announcement"] != "l2" || !strings.Contains(r["steps.0"], "drain") {
		t.Fatalf("failover-test dry run: %v", r)
	}
	t.Logf("failover-test dry run:\n%s", st.Results["plan"])

	// The owner's speaker pod deleted: another node answers, and the
	// client is served meanwhile; the DaemonSet's replacement takes the IP
	// back at most once.
	pods := waitSpeakers(t, b, 3)
	start := time.Now()
	if err := b.Kube.CoreV1().Pods("lb").Delete(ctx, pods[first-1].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	second := owner(vip, first)
	t.Logf("owner's speaker pod deleted: node%d answers ARP after %s (1 s arping probes; make bench-l2 times it finely)", second, time.Since(start).Round(time.Millisecond))
	// The new owner's journal (its speaker API, with the controller's
	// token) has the takeover and the gratuitous ARPs, after the fault.
	if j := speakerJournal(t, b, second, vip, start); !slices.ContainsFunc(j.Events, func(e api.SpeakerEvent) bool { return e.Kind == "owner" && e.Subject == vip && e.Detail == "taken" }) ||
		!slices.ContainsFunc(j.Events, func(e api.SpeakerEvent) bool { return e.Kind == "garp" && e.Subject == vip }) {
		t.Fatalf("node%d's journal since the fault has no takeover of %s: %+v", second, vip, j)
	}
	answer(vip)
	waitSpeakers(t, b, 3)
	var seen []string
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if m := arpingMACs(b, vip, 1); len(m) == 1 && (len(seen) == 0 || seen[len(seen)-1] != m[0]) {
			seen = append(seen, m[0])
		}
	}
	if len(seen) > 2 {
		t.Fatalf("ownership flapped after node%d's speaker came back: %v", first, seen)
	}

	// The owner's link goes down: another node takes the IP and the client
	// reconnects (kube-proxy may still send some connections to the pod
	// behind the cut link until its node is marked NotReady).
	now := owner(vip, 0)
	start = time.Now()
	if _, err := b.Net.Exec(b.Nodes[now-1], "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatal(err)
	}
	next := owner(vip, now)
	t.Logf("node%d's link down: node%d answers ARP after %s", now, next, time.Since(start).Round(time.Millisecond))
	answer(vip)
	if _, err := b.Net.Exec(b.Nodes[now-1], "ip", "link", "set", "eth0", "up"); err != nil {
		t.Fatal(err)
	}
	steady(vip, "after the partition healed")

	// Local: the owner is the node with the pod, the pod sees the client's
	// address, and the owner follows the pod.
	if _, err := kb.Echo(ctx, kubebed.App{NS: "web", Name: "local", Replicas: 1, Policy: corev1.ServiceExternalTrafficPolicyLocal, Nodes: []string{"node3"}}); err != nil {
		t.Fatal(err)
	}
	local, err := b.WaitIP("web", "local", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := owner(local, 0); got != 3 {
		t.Fatalf("Local %s owned by node%d, its pod is on node3", local, got)
	}
	if a := answer(local); !strings.HasPrefix(a.Client, "10.214.0.2:") || a.Node != "node3" {
		t.Fatalf("Local: %+v, want the client's own address 10.214.0.2 seen on node3", a)
	}
	if err := kb.MoveApp(ctx, "web", "local", "node2"); err != nil {
		t.Fatal(err)
	}
	if got := owner(local, 3); got != 2 {
		t.Fatalf("Local %s owned by node%d after its pod moved to node2", local, got)
	}

	// IPv6: the client reaches an IPv6 VIP through NDP and kube-proxy.
	if _, err := kb.Echo(ctx, kubebed.App{NS: "web", Name: "web6", Replicas: 2, Families: []corev1.IPFamily{corev1.IPv6Protocol}}); err != nil {
		t.Fatal(err)
	}
	v6, err := b.WaitIP("web", "web6", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a = answer("[" + v6 + "]")
	t.Logf("IPv6 VIP %s answered by %s on %s, which saw %s", v6, a.Pod, a.Node, a.Client)
}

// speakerJournal reads node i's speaker journal from the client, as the
// controller would: over the node network, with a token of the
// controller's account for that node.
func speakerJournal(t *testing.T, b *spinebed.Bed, i int, ip string, since time.Time) api.SpeakerJournal {
	t.Helper()
	url := fmt.Sprintf("http://%s:9403/v1/journal?ip=%s&since=%s", b.NodeIPs[i-1], ip, since.UTC().Format(time.RFC3339Nano))
	out, err := b.Net.Exec(b.Client, "curl", "-sf", "--max-time", "5", "-H", "Authorization: Bearer "+speakerToken(t, b, access.ControllerAccount, fmt.Sprint("node", i)), url)
	var j api.SpeakerJournal
	if err != nil || json.Unmarshal([]byte(out), &j) != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, out)
	}
	return j
}

// speakerToken is a token of ServiceAccount account (in the lb
// namespace) for node's speaker, as the controller mints them.
func speakerToken(t *testing.T, b *spinebed.Bed, account, node string) string {
	t.Helper()
	tr, err := b.Kube.CoreV1().ServiceAccounts("lb").CreateToken(context.Background(), account, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{api.SpeakerAudience(node)}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}
