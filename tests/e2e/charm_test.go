package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/charm"
	"github.com/calico-lb/calico-lb/charm/calicolink"
	"github.com/calico-lb/calico-lb/charm/plan"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/fakejuju"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/tests/pebbled"
	"github.com/calico-lb/calico-lb/workload/access"
	"github.com/calico-lb/calico-lb/workload/config"
)

// The charm with real parts: the real dispatch binary run as Juju runs it
// (hook environment, hook tools on PATH that follow the real ones' formats),
// a real Pebble whose socket stands in for the container's, and the real
// workload under that Pebble against the test kube-apiserver.
func TestCharmRealParts(t *testing.T) {
	cfg := fakejuju.Defaults(t)
	cfg["pools"] = "10.0.0.0/24"
	cfg["peering-mode"] = "calico"
	b := newCharmBed(t, &fakejuju.State{Config: cfg, Leader: true, Secrets: map[string]map[string]string{"secret:pw": {"spine1": "s3cret"}},
		Relations: map[string][]*fakejuju.Relation{charm.MetricsEndpoint: {{ID: "metrics-endpoint:5", RemoteApp: "prometheus"}}}, Address: "127.0.0.1"})
	j, dispatch, root, kube, pb, apiAddr, hook := b.j, b.dispatch, b.root, b.kube, b.pb, b.apiAddr, b.hook

	hook("install")
	hook("calico-lb-pebble-ready")
	hook("config-changed")
	svc, err := pb.Service("calico-lb")
	if err != nil || svc.Current != "active" {
		t.Fatalf("workload service %+v, %v", svc, err)
	}
	// The controller runs as its own ServiceAccount, which the charm had
	// the workload create, with a token only the workload's user reads.
	if !controllerHasOwnAccount(t, kube, root, pb) {
		t.Fatal("the controller does not run as its own ServiceAccount")
	}
	// The workload comes up; update-status then reports active with the summary.
	waitHTTP(t, "http://"+apiAddr+"/readyz")
	// `calico-lb access` ran in the hooks above and left its receipt: an
	// update-status before the receipt's time skips it (the receipt stays
	// as it was), and one that finds none runs it (a new receipt).
	receipt := filepath.Join(root, plan.AccessReceiptFile)
	receiptBefore, err := os.ReadFile(receipt)
	if err != nil {
		t.Fatalf("no access receipt after the first hooks: %v", err)
	}
	hook("update-status")
	if st := j.State(t).UnitStatus; st.Name != "active" || st.Message != "calico mode; 1 pool, 0/254 in use"+noLink("10.0.0.0/24") {
		t.Fatalf("status %+v", st)
	}
	if after, err := os.ReadFile(receipt); err != nil || string(after) != string(receiptBefore) {
		t.Fatalf("update-status ran calico-lb access before it was due: receipt %q, was %q (%v)", after, receiptBefore, err)
	}
	if err := os.Remove(receipt); err != nil {
		t.Fatal(err)
	}
	hook("update-status")
	if _, err := os.ReadFile(receipt); err != nil {
		t.Fatalf("update-status without a receipt did not run calico-lb access: %v", err)
	}

	// metrics-endpoint: the unit's address and the controller's job (calico
	// mode runs no speakers), and the target really serves the metrics.
	rel := j.State(t).Relation("metrics-endpoint:5")
	if rel.UnitData["prometheus_scrape_unit_address"] != "127.0.0.1" || !strings.Contains(rel.AppData["scrape_jobs"], `"targets":["*:9401"]`) ||
		strings.Contains(rel.AppData["scrape_jobs"], "calico-lb-speakers") || !strings.Contains(rel.AppData["scrape_metadata"], `"model":"lb"`) {
		t.Fatalf("metrics-endpoint data: %+v", rel)
	}
	if body := httpBody(t, "http://127.0.0.1:9401/metrics"); !strings.Contains(body, "calico_lb_pool_addresses") {
		t.Fatalf("the scrape target serves:\n%.2000s", body)
	}
	if resp, err := http.Post("http://127.0.0.1:9401/v1/pool-change", "", nil); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the metrics listener must not offer the local API: %v %v", resp, err)
	}
	// The local API answers /v1/ only with the controller's key, which the
	// charm read through Pebble for the hooks above: a caller on loopback
	// without it (kubectl port-forward) gets 401.
	if resp, err := http.Post("http://"+apiAddr+"/v1/reallocate?service=default/none", "", nil); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the local API without its key: %v %v, want 401", resp, err)
	}
	key, err := os.ReadFile(filepath.Join(root, plan.APIKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+apiAddr+"/v1/allocations", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(key)))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the local API with its key: %v %v", resp, err)
	}

	// Services get IPs from the workload the charm configured.
	ctx := context.Background()
	// waitShop waits until shop's IP is in the pool with prefix.
	waitShop := func(prefix string, limit time.Duration) {
		t.Helper()
		var ip string
		if _, err := netns.WaitFor(ctx, limit, func() bool {
			s, err := kube.CoreV1().Services("default").Get(ctx, "shop", metav1.GetOptions{})
			if err == nil && len(s.Status.LoadBalancer.Ingress) > 0 {
				ip = s.Status.LoadBalancer.Ingress[0].IP
			}
			return strings.HasPrefix(ip, prefix)
		}); err != nil {
			t.Fatalf("shop has IP %q, want one from %s*", ip, prefix)
		}
	}
	if _, err := kube.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "shop"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitShop("10.0.0.", 20*time.Second)
	hook("update-status")
	if st := j.State(t).UnitStatus; st.Message != "calico mode; 1 pool, 1/254 in use"+noLink("10.0.0.0/24") {
		t.Fatalf("status %+v", st)
	}

	// Invalid config: blocked, and the workload keeps its config file.
	before, _ := os.ReadFile(filepath.Join(root, config.DefaultPath))
	j.Update(t, func(s *fakejuju.State) { s.Config["pools"] = "10.0.0.0/33" })
	hook("config-changed")
	if st := j.State(t).UnitStatus; st.Name != "blocked" || !strings.Contains(st.Message, "pools") {
		t.Fatalf("status %+v", st)
	}
	if after, _ := os.ReadFile(filepath.Join(root, config.DefaultPath)); string(after) != string(before) {
		t.Fatal("an invalid config reached the workload's file")
	}

	// BGP passwords from a user secret: a 0600 file, never logged.
	j.Update(t, func(s *fakejuju.State) { s.Config["pools"] = "10.0.0.0/24"; s.Config["bgp-passwords"] = "secret:pw" })
	hook("config-changed")
	pw := filepath.Join(root, config.DefaultPasswordFile)
	fi, err := os.Stat(pw)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(pw); !strings.Contains(string(b), "s3cret") {
		t.Fatalf("password file %q", b)
	}
	for _, l := range j.State(t).Logs {
		if strings.Contains(l, "s3cret") {
			t.Fatalf("a password in the log: %s", l)
		}
	}

	// An action through the real dispatch and the real workload.
	a, out, err := j.Action(t, dispatch, "list-allocations", nil)
	if err != nil {
		t.Fatalf("list-allocations: %v\n%s\nlogs %v\ncalls %v", err, out, j.State(t).Logs, j.State(t).Calls[len(j.State(t).Calls)-3:])
	}
	if r := a.Results; r["services.0.name"] != "default/shop" {
		t.Fatalf("list-allocations results %v (failed: %v)", r, a.Failed)
	}

	// verify in calico mode without the link: it cannot see calico's
	// option, and says what to run.
	if a, out, err = j.Action(t, dispatch, "verify", map[string]any{"service": "default/shop"}); err != nil || a.Failed != nil {
		t.Fatalf("verify: %v %v\n%s", err, a.Failed, out)
	}
	if r := a.Results; r["checks.0.name"] != "calico-option" || r["checks.0.result"] != "warn" ||
		r["checks.0.fix"] != "run: "+calicolink.Command("calico", "bgp-service-loadbalancer-ips", []string{"10.0.0.0/24"}) ||
		r["checks.1.name"] != "calico-peers" || r["checks.1.result"] != "info" || r["checks.2.name"] != "calico-ipam" || r["checks.2.result"] != "pass" ||
		r["checks.3.name"] != "external-ips" || r["checks.3.result"] != "pass" || r["checks.4.service"] != "default/shop" || r["checks.4.result"] != "pass" {
		t.Fatalf("verify results %v", r)
	}

	// A pool change that would take shop's IP: held back, blocked naming
	// the Service and the action; apply-pool-change applies it.
	j.Update(t, func(s *fakejuju.State) { s.Config["pools"] = "10.0.1.0/24" })
	// The config-changed hook itself reports it: the charm has the workload
	// take in the file it pushed before it reads the status.
	hook("config-changed")
	if st := j.State(t).UnitStatus; st.Name != "blocked" || !strings.Contains(st.Message, "default/shop") || !strings.Contains(st.Message, "apply-pool-change") {
		t.Fatalf("status %+v, want blocked on the held-back pool change", st)
	}
	if a, out, err = j.Action(t, dispatch, "apply-pool-change", nil); err != nil {
		t.Fatalf("apply-pool-change: %v\n%s", err, out)
	}
	if r := a.Results; r["applied"] != "true" || r["services.0"] != "default/shop" {
		t.Fatalf("apply-pool-change results %v (failed: %v)", r, a.Failed)
	}
	waitShop("10.0.1.", 15*time.Second)
	hook("update-status")
	if st := j.State(t).UnitStatus; st.Name != "active" || st.Message != "calico mode; 1 pool, 1/254 in use"+noLink("10.0.1.0/24") {
		t.Fatalf("status after apply-pool-change %+v", st)
	}

	// reallocate: shop gets the next address, and its status shows it
	// before the action returns.
	s, _ := kube.CoreV1().Services("default").Get(ctx, "shop", metav1.GetOptions{})
	was := s.Status.LoadBalancer.Ingress[0].IP
	if a, out, err = j.Action(t, dispatch, "reallocate", map[string]any{"service": "default/shop"}); err != nil {
		t.Fatalf("reallocate: %v\n%s", err, out)
	}
	r := a.Results
	s, _ = kube.CoreV1().Services("default").Get(ctx, "shop", metav1.GetOptions{})
	if r["old-ips"] != was || r["new-ips"] == was || r["status-written"] != "true" || s.Status.LoadBalancer.Ingress[0].IP != r["new-ips"] {
		t.Fatalf("reallocate results %v (failed: %v); shop now %v", r, a.Failed, s.Status.LoadBalancer.Ingress)
	}
	if a, _, err = j.Action(t, dispatch, "reallocate", map[string]any{"service": "default/nope"}); err != nil {
		t.Fatal(err)
	}
	if f := a.Failed; f == nil || !strings.Contains(*f, "no such Service") {
		t.Fatalf("reallocate of a missing Service: failed %v", f)
	}

	// remove of a leader the application outlives (a scale-down): the
	// other units still need the Lease and the controller's account.
	if _, err := kube.CoordinationV1().Leases("lb").Get(ctx, "calico-lb-controller", metav1.GetOptions{}); err != nil {
		t.Fatalf("the workload's Lease: %v", err)
	}
	j.Update(t, func(s *fakejuju.State) {
		s.GoalUnits = map[string]string{"calico-lb/0": "dying", "calico-lb/1": "active"}
	})
	hook("remove")
	if _, err := kube.CoreV1().ServiceAccounts("lb").Get(ctx, access.ControllerAccount, metav1.GetOptions{}); err != nil {
		t.Fatalf("a scale-down removed the controller's ServiceAccount: %v", err)
	}
	if _, err := kube.CoordinationV1().Leases("lb").Get(ctx, "calico-lb-controller", metav1.GetOptions{}); err != nil {
		t.Fatalf("a scale-down removed the Lease: %v", err)
	}

	// remove with the application: the leader has the workload delete what
	// it created; here the Lease (calico mode runs no speakers).
	j.Update(t, func(s *fakejuju.State) {
		s.GoalUnits = map[string]string{"calico-lb/0": "dying", "calico-lb/1": "dying"}
	})
	hook("remove")
	if _, err := kube.CoordinationV1().Leases("lb").Get(ctx, "calico-lb-controller", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the Lease is still there after remove (%v); logs %v", err, j.State(t).Logs)
	}
	if _, err := kube.CoreV1().ServiceAccounts("lb").Get(ctx, access.ControllerAccount, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the controller's ServiceAccount is still there after remove (%v)", err)
	}
	if _, err := kube.RbacV1().ClusterRoles().Get(ctx, access.ControllerAccount+"-lb", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the controller's ClusterRole is still there after remove (%v)", err)
	}
}

// controllerHasOwnAccount: the ServiceAccount and its roles exist, the
// token file is there (0600), and Pebble runs the controller with it.
func controllerHasOwnAccount(t *testing.T, kube kubernetes.Interface, root string, pb *pebbled.Daemon) bool {
	t.Helper()
	ctx := context.Background()
	if _, err := kube.CoreV1().ServiceAccounts("lb").Get(ctx, access.ControllerAccount, metav1.GetOptions{}); err != nil {
		t.Logf("ServiceAccount: %v", err)
		return false
	}
	if _, err := kube.RbacV1().Roles("lb").Get(ctx, access.ControllerAccount, metav1.GetOptions{}); err != nil {
		t.Logf("Role: %v", err)
		return false
	}
	tok := filepath.Join(root, plan.TokenFile)
	if fi, err := os.Stat(tok); err != nil || fi.Mode().Perm() != 0o600 {
		t.Logf("token file: %v %v", fi, err)
		return false
	}
	layer, err := pb.Client.PlanBytes(nil)
	if err != nil || !strings.Contains(string(layer), "--token-file "+tok) {
		t.Logf("plan: %v\n%s", err, layer)
		return false
	}
	return true
}

// charmBed is the charm with real parts: the real dispatch binary with
// fakejuju's hook tools, a real Pebble, and the real workload under it
// against the test kube-apiserver (model namespace "lb").
type charmBed struct {
	j        *fakejuju.Juju
	dispatch string
	root     string // the workload container's file system
	kube     kubernetes.Interface
	pb       *pebbled.Daemon
	apiAddr  string // the workload's local API
	hook     func(name string)
}

func newCharmBed(t *testing.T, st *fakejuju.State) *charmBed {
	t.Helper()
	c := cluster.StartT(t)
	kc, err := c.WriteKubeconfig(cluster.UserAdmin)
	if err != nil {
		t.Fatal(err)
	}
	b := &charmBed{kube: c.Client(cluster.UserAdmin), pb: pebbled.StartT(t), root: t.TempDir(), apiAddr: freeAddress(t)}
	// The model's namespace, where Juju runs the charm (the workload's Lease lives there).
	if _, err := b.kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lb"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(b.root, "usr", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binary, filepath.Join(b.root, "usr", "bin", "calico-lb")); err != nil {
		t.Fatal(err)
	}
	b.dispatch = fakejuju.BuildDispatch(t)
	b.j = fakejuju.New(t, st)
	b.j.Env = fakejuju.LayoutEnv(charm.Layout{PebbleSocket: b.pb.Socket, ContainerRoot: b.root, Kubeconfig: kc, APIAddress: b.apiAddr})
	b.hook = func(name string) {
		t.Helper()
		start := time.Now()
		if out, err := b.j.Hook(b.dispatch, name); err != nil {
			t.Fatalf("hook %s: %v\n%s\nlogs: %v", name, err, out, b.j.State(t).Logs)
		}
		t.Logf("hook %s took %s: %+v", name, time.Since(start).Round(time.Millisecond), b.j.State(t).UnitStatus)
	}
	return b
}

// freeAddress is a free loopback address for a workload's local API, so
// that tests do not depend on the default port being free.
func freeAddress(t *testing.T) string {
	t.Helper()
	addr, err := cluster.FreeAddress()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// noLink is what the status adds in calico mode without juju-credentials.
func noLink(cidrs string) string {
	return "; no Calico link, so run: " + calicolink.Command("calico", "bgp-service-loadbalancer-ips", strings.Fields(cidrs))
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	var last error
	if _, err := netns.WaitFor(context.Background(), 30*time.Second, func() bool {
		resp, err := http.Get(url)
		if last = err; err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		t.Fatalf("%s not ready: %v (last error %v)", url, err, last)
	}
}
