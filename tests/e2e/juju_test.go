package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/images"
	"github.com/calico-lb/calico-lb/tests/jujubed"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
)

// TestJujuDeploy deploys calico-lb through a real Juju controller, as
// README's Deploy section tells an operator to (its juju commands are run
// as written there), onto the spine bed's real nodes, and then does what
// an operator does next through the real juju client: actions, a bad
// config value, BGP passwords from a Juju secret, and removal.
func TestJujuDeploy(t *testing.T) {
	b := newBed(t, spinebed.Start, spinebed.Options{})
	ctx := context.Background()
	dir := t.TempDir()
	ctrl, err := jujubed.Bootstrap(ctx, b.Kubebed, b.Kubeconfig, jujubed.Options{Dir: dir, Address: b.MgmtIPs[0], Log: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bootstrap took %s", ctrl.BootstrapTook.Round(time.Second))
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := ctrl.Juju(context.Background(), "debug-log", "-m", "lb", "--replay", "--no-tail", "--level", "WARNING", "--limit", "200")
			t.Logf("juju debug-log (lb, warnings):\n%s", out)
		}
	})

	// The image users deploy, built from this tree, in the bed's registry
	// under the tag README's commands name.
	const version = "readme"
	imgs, err := kubebed.Images()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Kubebed.Registry.Push(ctx, "calico-lb:"+version, imgs[images.CalicoLB]); err != nil {
		t.Fatal(err)
	}
	n1, n2 := spinebed.NodeIP(1), spinebed.NodeIP(2)
	vars := []string{
		"CONTROLLER=" + ctrl.Name,
		"REGISTRY=" + b.Kubebed.Registry.Host,
		"VERSION=" + version,
		"POOLS=10.212.100.0/28",
		"SPINE_PEERS={10.212.1.0/24: [{address: 10.212.1.1, as-number: 64500, hold-time: 9}], 10.212.2.0/24: [{address: 10.212.2.1, as-number: 64500, hold-time: 9}]}",
	}
	lines, err := jujubed.ReadmeCommands(filepath.Join(cluster.Root(), "README.md"), jujubed.DeployMarker)
	if err != nil {
		t.Fatal(err)
	}
	root := cluster.Root()
	ran := 0
	for _, line := range lines {
		switch {
		case strings.HasPrefix(line, "make "):
			// `make charm` as written; the image is the one pushed above,
			// built for this machine by the same code as `make image`.
			if out, err := exec.CommandContext(ctx, "make", "-C", root, "charm").CombinedOutput(); err != nil {
				t.Fatalf("make charm: %v\n%s", err, out)
			}
			continue
		case strings.HasPrefix(line, "skopeo "):
			continue
		case !strings.HasPrefix(line, "juju "):
			t.Fatalf("README's deploy block has %q, which this test does not know how to run", line)
		case strings.HasPrefix(line, "juju run "):
			// As an operator would: once juju status says active and
			// the spine has the sessions.
			waitActive(t, ctrl, "lb", "spine mode")
			waitEstablished(t, b, n1, n2)
		}
		out, err := ctrl.Shell(ctx, root, vars, line)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("$ %s\n%s", line, out)
		ran++
		if strings.HasPrefix(line, "juju run ") && strings.Contains(line, " verify") && !strings.Contains(out, `failed: "0"`) {
			t.Fatalf("verify did not pass:\n%s", out)
		}
	}
	if ran < 5 {
		t.Fatalf("ran %d juju commands from README; its deploy block lost some", ran)
	}

	// The speakers run, FRR learns the Service's /32 from both nodes, and
	// the client behind the spine reaches its pods through kube-proxy.
	waitSpeakers(t, b, 2)
	if _, err := b.Kubebed.Echo(ctx, kubebed.App{NS: "web", Name: "web", Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	vip, err := b.WaitIP("web", "web", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitNextHops(vip, time.Minute, n1, n2); err != nil {
		t.Fatal(err)
	}
	waitPods(t, b, vip, 2, "through the spine and kube-proxy", nil)

	run := func(args ...string) string {
		t.Helper()
		out, err := ctrl.Juju(ctx, append([]string{"run", "-m", "lb", "calico-lb/leader"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := run("bgp-status"); !strings.Contains(out, "2/2 sessions established") {
		t.Fatalf("bgp-status:\n%s", out)
	}
	if out := run("list-allocations"); !strings.Contains(out, vip) || !strings.Contains(out, "web/web") {
		t.Fatalf("list-allocations does not list web/web at %s:\n%s", vip, out)
	}

	// A bad value: the unit is blocked, juju status says which option and
	// how to fix it, and the workload keeps its last good config.
	if _, err := ctrl.Juju(ctx, "config", "-m", "lb", "calico-lb", "pools=10.212.100.0/33"); err != nil {
		t.Fatal(err)
	}
	st := waitUnit(t, ctrl, "lb", func(u jujubed.UnitStatus) bool { return u.Workload == "blocked" })
	if !strings.Contains(st.Message, "pools") {
		t.Fatalf("blocked with %q, which does not name pools", st.Message)
	}
	t.Logf("juju status after pools=10.212.100.0/33: blocked: %s", st.Message)
	if hops := b.NextHops(vip); len(hops) != 2 {
		t.Fatalf("with the bad value the spine has %v for %s, want both nodes still", hops, vip)
	}
	waitPods(t, b, vip, 2, "while the config is bad", nil)
	if _, err := ctrl.Juju(ctx, "config", "-m", "lb", "calico-lb", "pools=10.212.100.0/28"); err != nil {
		t.Fatal(err)
	}
	waitActive(t, ctrl, "lb", "spine mode")

	// BGP passwords from a Juju secret: the spine wants MD5 now, and the
	// sessions come back once the secret is granted and named.
	if out, err := b.FRR.Vtysh("-c", "configure terminal", "-c", "router bgp 64500", "-c", "neighbor NODES password spine-md5-secret"); err != nil {
		t.Fatalf("FRR password: %v\n%s", err, out)
	}
	if _, err := b.WaitNextHops(vip, 60*time.Second); err != nil {
		t.Fatalf("the spine kept routes from speakers without the password: %v", err)
	}
	uri, err := ctrl.Juju(ctx, "add-secret", "-m", "lb", "spine-md5", "spine=spine-md5-secret")
	if err != nil {
		t.Fatal(err)
	}
	uri = strings.TrimSpace(uri)
	if _, err := ctrl.Juju(ctx, "grant-secret", "-m", "lb", "spine-md5", "calico-lb"); err != nil {
		t.Fatal(err)
	}
	peers := "{10.212.1.0/24: [{address: 10.212.1.1, as-number: 64500, hold-time: 9, password-key: spine}], 10.212.2.0/24: [{address: 10.212.2.1, as-number: 64500, hold-time: 9, password-key: spine}]}"
	if _, err := ctrl.Juju(ctx, "config", "-m", "lb", "calico-lb", "bgp-passwords="+uri, "subnet-spine-peers="+peers); err != nil {
		t.Fatal(err)
	}
	took, err := b.WaitNextHops(vip, 2*time.Minute, n1, n2)
	if err != nil {
		out, _ := ctrl.Juju(ctx, "status", "-m", "lb")
		t.Fatalf("sessions with the password from %s: %v\n%s", uri, err, out)
	}
	t.Logf("MD5 sessions up from the Juju secret %s in %s", uri, took.Round(time.Millisecond))

	// Removal leaves nothing of calico-lb in the cluster.
	if _, err := ctrl.Juju(ctx, "remove-application", "-m", "lb", "calico-lb", "--no-prompt"); err != nil {
		t.Fatal(err)
	}
	gone := func() []string {
		var left []string
		if _, err := b.Kube.AppsV1().DaemonSets("lb").Get(ctx, "calico-lb-speaker", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "daemonset lb/calico-lb-speaker")
		}
		for _, sa := range []string{"calico-lb-speaker", "calico-lb-controller"} {
			if _, err := b.Kube.CoreV1().ServiceAccounts("lb").Get(ctx, sa, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				left = append(left, "serviceaccount lb/"+sa)
			}
		}
		var names []string
		crs, err := b.Kube.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{})
		if err != nil {
			return []string{err.Error()}
		}
		for _, cr := range crs.Items {
			names = append(names, "clusterrole "+cr.Name)
		}
		crbs, err := b.Kube.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
		if err != nil {
			return []string{err.Error()}
		}
		for _, crb := range crbs.Items {
			names = append(names, "clusterrolebinding "+crb.Name)
		}
		for _, n := range names {
			if _, name, _ := strings.Cut(n, " "); strings.HasPrefix(name, "calico-lb") {
				left = append(left, n)
			}
		}
		return left
	}
	if _, err := netns.WaitFor(ctx, 3*time.Minute, func() bool { return len(gone()) == 0 }); err != nil {
		t.Fatalf("after juju remove-application, still there: %v", gone())
	}
}

// waitEstablished waits until the spine's sessions with the nodes at
// addrs are Established.
func waitEstablished(t *testing.T, b *spinebed.Bed, addrs ...string) {
	t.Helper()
	var out string
	if _, err := netns.WaitFor(context.Background(), 2*time.Minute, func() bool {
		var err error
		if out, err = b.FRR.Vtysh("-c", "show bgp ipv4 unicast summary json"); err != nil {
			return false
		}
		var sum struct {
			Peers map[string]struct {
				State string `json:"state"`
			} `json:"peers"`
		}
		if json.Unmarshal([]byte(out), &sum) != nil {
			return false
		}
		for _, a := range addrs {
			if sum.Peers[a].State != "Established" {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("the spine's sessions with %v are not Established:\n%s", addrs, out)
	}
}

// waitActive waits until model's calico-lb/0 is active with a message
// that starts with prefix.
func waitActive(t *testing.T, ctrl *jujubed.Controller, model, prefix string) {
	t.Helper()
	waitUnit(t, ctrl, model, func(u jujubed.UnitStatus) bool {
		return u.Workload == "active" && strings.HasPrefix(u.Message, prefix) && u.Agent == "idle"
	})
}

// waitUnit waits until the leader unit of calico-lb in model satisfies ok,
// and returns its status.
func waitUnit(t *testing.T, ctrl *jujubed.Controller, model string, ok func(jujubed.UnitStatus) bool) jujubed.UnitStatus {
	t.Helper()
	var last jujubed.UnitStatus
	var lastErr error
	if _, err := netns.WaitFor(context.Background(), 5*time.Minute, func() bool {
		st, err := ctrl.AppStatus(context.Background(), model, "calico-lb")
		if err != nil {
			lastErr = err
			return false
		}
		for _, u := range st.Units {
			if u.Leader {
				last = u
				return ok(u)
			}
		}
		return false
	}); err != nil {
		t.Fatalf("calico-lb's leader unit: %+v (%v)", last, lastErr)
	}
	return last
}
