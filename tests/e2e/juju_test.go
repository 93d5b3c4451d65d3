package e2e

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/calico-lb/calico-lb/charm/calicolink"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/failoverbed"
	"github.com/calico-lb/calico-lb/tests/images"
	"github.com/calico-lb/calico-lb/tests/jujubed"
	"github.com/calico-lb/calico-lb/tests/kubebed"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/spinebed"
	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/calico"
)

// TestJujuDeploy deploys calico-lb through a real Juju controller, as
// README's Deploy section tells an operator to (its juju commands are run
// as written there), onto the spine bed's real nodes, and then does what
// an operator does next through the real juju client: actions, a bad
// config value, BGP passwords from a Juju secret, and removal.
func TestJujuDeploy(t *testing.T) {
	b := newBed(t, spinebed.Start, spinebed.Options{})
	ctx := context.Background()
	const version = "readme"
	ctrl, imgs := bootJuju(t, b, version)
	n1, n2 := spinebed.NodeIP(1), spinebed.NodeIP(2)
	vars := []string{
		"CONTROLLER=" + ctrl.Name,
		"REGISTRY=" + b.Kubebed.Registry.Host,
		"VERSION=" + version,
		"POOLS=10.212.100.0/28",
		"SPINE_PEERS={10.212.1.0/24: [{address: 10.212.1.1, as-number: 64500, hold-time: 9}], 10.212.2.0/24: [{address: 10.212.2.1, as-number: 64500, hold-time: 9}]}",
	}
	root := cluster.Root()
	// As an operator would: juju run once juju status says active and the
	// spine has the sessions.
	ready := func() error {
		waitActive(t, ctrl, "lb", "spine mode")
		waitEstablished(t, b, n1, n2)
		return nil
	}
	d, err := ctrl.DeployFromReadme(ctx, root, vars, ready, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range d.Ran {
		if strings.HasPrefix(line, "juju run ") && strings.Contains(line, " verify") && !strings.Contains(d.Out[i], `failed: "0"`) {
			t.Fatalf("README's %s did not pass:\n%s", line, d.Out[i])
		}
	}
	ran := len(d.Ran)
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

	// A second unit is a standby: when the leader's pod goes, it takes
	// over (a Service created meanwhile gets its IP) and no IP changes.
	if _, err := ctrl.Juju(ctx, "scale-application", "-m", "lb", "calico-lb", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := netns.WaitFor(ctx, 5*time.Minute, func() bool {
		st, err := ctrl.AppStatus(ctx, "lb", "calico-lb")
		return err == nil && len(st.Units) == 2 && st.Units["calico-lb/1"].Workload == "active"
	}); err != nil {
		out, _ := ctrl.Juju(ctx, "status", "-m", "lb")
		t.Fatalf("calico-lb/1 not active after scale-application 2:\n%s", out)
	}
	leader, err := b.Kube.CoordinationV1().Leases("lb").Get(ctx, access.DefaultLeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	holder := ""
	for _, pod := range []string{"calico-lb-0", "calico-lb-1"} {
		if leader.Spec.HolderIdentity != nil && strings.HasPrefix(*leader.Spec.HolderIdentity, pod) {
			holder = pod
		}
	}
	if holder == "" {
		t.Fatalf("the Lease's holder %v is neither unit's pod", leader.Spec.HolderIdentity)
	}
	deleted := time.Now()
	if err := b.Kube.CoreV1().Pods("lb").Delete(ctx, holder, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete the leading controller's pod %s: %v", holder, err)
	}
	if _, err := b.Kubebed.Echo(ctx, kubebed.App{NS: "web2", Name: "web2", Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	vip2, err := b.WaitIP("web2", "web2", 2*time.Minute)
	if err != nil {
		t.Fatalf("no IP for a Service created after the leader's pod %s was deleted: %v", holder, err)
	}
	t.Logf("leader's pod %s deleted: web2 got %s %s later", holder, vip2, time.Since(deleted).Round(time.Millisecond))
	if now, err := b.WaitIP("web", "web", time.Second); err != nil || now != vip {
		t.Fatalf("web's IP is %s (%v) after the takeover, was %s", now, err, vip)
	}

	// juju refresh to a new build of the charm and a new image: every IP
	// stays, and the routes come back from the new speakers.
	if err := b.Kubebed.Registry.Push(ctx, "calico-lb:"+version+"-2", imgs[images.CalicoLB]); err != nil {
		t.Fatal(err)
	}
	if err := jujubed.MakeCharm(ctx, root); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.JujuIn(ctx, root, "refresh", "-m", "lb", "calico-lb", "--path", "./calico-lb_"+runtime.GOARCH+".charm",
		"--resource", "workload-image="+b.Kubebed.Registry.Host+"/calico-lb:"+version+"-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := netns.WaitFor(ctx, 5*time.Minute, func() bool {
		ds, err := b.Kube.AppsV1().DaemonSets("lb").Get(ctx, "calico-lb-speaker", metav1.GetOptions{})
		return err == nil && strings.HasSuffix(ds.Spec.Template.Spec.Containers[0].Image, ":"+version+"-2") &&
			ds.Status.UpdatedNumberScheduled == 2 && ds.Status.NumberReady == 2
	}); err != nil {
		t.Fatalf("the speakers did not move to the refreshed image: %v", err)
	}
	waitActive(t, ctrl, "lb", "spine mode")
	if _, err := b.WaitNextHops(vip, 2*time.Minute, n1, n2); err != nil {
		t.Fatalf("after juju refresh: %v", err)
	}
	for ns, want := range map[string]string{"web": vip, "web2": vip2} {
		if now, err := b.WaitIP(ns, ns, time.Second); err != nil || now != want {
			t.Fatalf("%s's IP is %s (%v) after juju refresh, was %s", ns, now, err, want)
		}
	}
	waitPods(t, b, vip, 2, "after juju refresh", nil)

	// The failover test through juju run, timed by the probe agent on the
	// client behind the spine: web's pods on one node are relocated.
	bin, err := failoverbed.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	probe, err := failoverbed.StartProbe(b, bin, "10.212.3.2", "10.212.100.0/28")
	if err != nil {
		t.Fatal(err)
	}
	out, err := ctrl.Juju(ctx, append([]string{"run", "-m", "lb", "calico-lb/leader", "failover-test", "service=web/web", "mode=pod", "timeout=120"}, probe.Args()...)...)
	if err != nil || !strings.Contains(out, "result: passed") || !strings.Contains(out, "outage-ms:") {
		t.Fatalf("failover-test through juju run: %v\n%s", err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "outage-ms:") || strings.HasPrefix(l, "recovered-ms:") || strings.HasPrefix(l, "result:") {
			t.Logf("failover-test mode=pod through juju run: %s", l)
		}
	}
	waitPods(t, b, vip, 2, "after the failover test", nil)

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

// bootJuju bootstraps a real Juju controller onto b's cluster and pushes
// the calico-lb image users deploy, built from this tree, to the bed's
// registry as calico-lb:version; it returns the controller and the images.
func bootJuju(t *testing.T, b *spinebed.Bed, version string) (*jujubed.Controller, map[string]v1.Image) {
	t.Helper()
	ctx := context.Background()
	ctrl, err := jujubed.Bootstrap(ctx, b.Kubebed, b.Kubeconfig, jujubed.Options{Dir: t.TempDir(), Address: b.MgmtIPs[0], Log: func(s string) { t.Log(s) }})
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
	imgs, err := kubebed.Images()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Kubebed.Registry.Push(ctx, "calico-lb:"+version, imgs[images.CalicoLB]); err != nil {
		t.Fatal(err)
	}
	return ctrl, imgs
}

// waitEstablished waits until the spine's sessions with the nodes at
// addrs are Established.
func waitEstablished(t *testing.T, b *spinebed.Bed, addrs ...string) {
	t.Helper()
	if err := b.WaitEstablished(2*time.Minute, addrs...); err != nil {
		t.Fatal(err)
	}
}

// waitActive waits until model's calico-lb leader is active with a message
// that starts with prefix.
func waitActive(t *testing.T, ctrl *jujubed.Controller, model, prefix string) {
	t.Helper()
	if _, err := ctrl.WaitUnit(context.Background(), model, "calico-lb", 5*time.Minute, jujubed.Active(prefix)); err != nil {
		t.Fatal(err)
	}
}

// waitUnit waits until the leader unit of calico-lb in model satisfies ok,
// and returns its status.
func waitUnit(t *testing.T, ctrl *jujubed.Controller, model string, ok func(jujubed.UnitStatus) bool) jujubed.UnitStatus {
	t.Helper()
	u, err := ctrl.WaitUnit(context.Background(), model, "calico-lb", 5*time.Minute, ok)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestJujuCalicoLink runs calico mode through a real Juju controller on the
// racks bed: calico (the stand-in charm with the real charm's options) in
// its own model, as in Charmed Kubernetes; calico-lb in another, reaching
// calico's model as a Juju user made with add-user and grant, its
// credentials in a Juju secret as docs/modes.md says. The Calico link
// writes the pool into calico's option through Juju; the bed's Calico
// stand-in (BIRD on every node) follows calico's config as Juju has it;
// the ToRs and the spine learn the routes and the client reaches the
// Services; verify passes through `juju run`.
func TestJujuCalicoLink(t *testing.T) {
	b := newRacks(t, map[string]any{calico.OptLoadBalancerIPs: "", calico.OptExternalIPs: ""})
	ctx := context.Background()
	const version = "link"
	ctrl, _ := bootJuju(t, b, version)
	dir := t.TempDir()
	uuid, err := ctrl.DeployCalico(ctx, dir, ctrl.Cloud, "ck", b.Racks.Options())
	if err != nil {
		t.Fatal(err)
	}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	src, err := ctrl.FollowConfig(fctx, "ck", "calico", func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	b.Racks.CalicoFrom(src)
	waitCalicoUp(t, b)
	for i := range b.Nodes {
		if err := labelNode(ctx, b, fmt.Sprint("node", i+1), map[string]string{"rack": fmt.Sprint("r", i/2+1)}); err != nil {
			t.Fatal(err)
		}
	}

	// The operator's steps (docs/modes.md, "The charm does it").
	creds, err := ctrl.LinkUser(ctx, "calico-lb-link", "link-s3cret-pw", "ck")
	if err != nil {
		t.Fatal(err)
	}
	if err := jujubed.MakeCharm(ctx, cluster.Root()); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"add-model", "lb", ctrl.Cloud},
		{"deploy", "-m", "lb", "./calico-lb_" + runtime.GOARCH + ".charm", "--resource", "workload-image=" + b.Kubebed.Registry.Host + "/calico-lb:" + version, "--trust",
			"--config", "pools=10.215.100.0/28", "--config", "peering-mode=calico"},
	} {
		if _, err := ctrl.JujuIn(ctx, cluster.Root(), args...); err != nil {
			t.Fatal(err)
		}
	}
	creds[calicolink.KeyModel] = uuid // pinned, as docs/modes.md has it
	uri, err := ctrl.AddSecret(ctx, dir, "lb", "calico-lb-juju", creds)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"grant-secret", "-m", "lb", "calico-lb-juju", "calico-lb"},
		{"config", "-m", "lb", "calico-lb", "juju-credentials=" + uri, "calico-model=" + uuid},
	} {
		if _, err := ctrl.Juju(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	option := func() string {
		vals, err := ctrl.AppConfig(ctx, "ck", "calico")
		if err != nil {
			return err.Error()
		}
		s, _ := vals[calico.OptLoadBalancerIPs].(string)
		return s
	}
	if _, err := netns.WaitFor(ctx, 5*time.Minute, func() bool { return option() == "10.215.100.0/28" }); err != nil {
		out, _ := ctrl.Juju(ctx, "status", "-m", "lb")
		t.Fatalf("calico's %s is %q through Juju, want the pool\n%s", calico.OptLoadBalancerIPs, option(), out)
	}
	t.Logf("the Calico link wrote calico's %s through the real controller as calico-lb-link", calico.OptLoadBalancerIPs)
	waitActive(t, ctrl, "lb", "calico mode")

	// Calico (its stand-in, following Juju) advertises the pool from every
	// node; the client reaches a Cluster and a Local Service.
	waitBGPNextHops(t, b, "10.215.100.0/28", "10.215.101.2", "10.215.102.2")
	vip, lvip := racksApps(t, b)
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { _, err := echo(b.Client, vip); return err == nil }); err != nil {
		t.Fatalf("the client gets no answer from %s through Calico's routes", vip)
	}
	waitBGPNextHops(t, b, lvip+"/32", "10.215.102.2")
	if _, err := netns.WaitFor(ctx, 30*time.Second, func() bool { _, err := echo(b.Client, lvip); return err == nil }); err != nil {
		t.Fatalf("the client gets no answer from the Local Service at %s", lvip)
	}
	out, err := ctrl.Juju(ctx, "run", "-m", "lb", "calico-lb/leader", "verify")
	if err != nil || !strings.Contains(out, `failed: "0"`) || !strings.Contains(out, "calico-peers") {
		t.Fatalf("verify through juju run: %v\n%s", err, out)
	}
	t.Logf("verify:\n%s", out)
}
