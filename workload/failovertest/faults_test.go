package failovertest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/calico-lb/calico-lb/tests/apienv"
	"github.com/calico-lb/calico-lb/tests/cluster"
	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/workload/access"
)

// TestFailoverFaults runs the failover test's cluster changes against the
// real apiserver as the controller's own account: the mark and the cordon
// go on and come off, a mark whose time is up is restored by a starting
// controller (its own died mid-test), and the drain leaves DaemonSet,
// mirror and finished pods and honours a PodDisruptionBudget.
func TestFailoverFaults(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	own := e.controllerClient()
	c := New(Options{Client: own, Namespace: e.ns, Identity: "t"})
	node := e.ns + "-n1"
	if _, err := e.client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.client.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
	// The test's powers are the controller's only while granted (the
	// charm grants them when the action starts): without, no cordon.
	a := access.Access{Namespace: e.ns, LeaseName: e.ns}
	cordon := func() error {
		return c.setMark(ctx, node, mark{ID: "r0", Until: time.Now().Add(time.Minute)}, true)
	}
	if err := cordon(); !apierrors.IsForbidden(err) {
		t.Fatalf("a cordon without the failover test's powers: %v, want Forbidden", err)
	}
	if underway, err := Underway(ctx, e.client, a); err != nil || underway {
		t.Fatalf("a test is underway before any: %v %v", underway, err)
	}
	if err := a.Failover(ctx, e.client, true); err != nil {
		t.Fatal(err)
	}
	if _, err := netns.WaitFor(ctx, 10*time.Second, func() bool { return cordon() == nil }); err != nil {
		t.Fatalf("the granted powers do not cordon: %v", cordon())
	}
	if underway, err := Underway(ctx, e.client, a); err != nil || !underway {
		t.Fatalf("the mark does not count as a test underway: %v %v", underway, err)
	}
	if err := c.clearMark(ctx, node, mark{ID: "r0", Cordoned: true}); err != nil {
		t.Fatal(err)
	}
	getNode := func() *corev1.Node {
		n, err := e.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Marked and cordoned; a second test sees it running.
	m := mark{ID: "r1", Service: "shop/web", Until: time.Now().Add(time.Minute), Cordoned: true}
	if err := c.setMark(ctx, node, m, true); err != nil {
		t.Fatal(err)
	}
	if n := getNode(); !n.Spec.Unschedulable || !strings.Contains(n.Annotations[failoverMark], `"id":"r1"`) {
		t.Fatalf("after setMark: unschedulable %v, annotations %v", n.Spec.Unschedulable, n.Annotations)
	}
	running, restored, err := c.restoreAbandoned(ctx)
	if err != nil || running[node].ID != "r1" || len(restored) != 0 {
		t.Fatalf("a running test: %v %v %v", running, restored, err)
	}
	if err := c.clearMark(ctx, node, m); err != nil {
		t.Fatal(err)
	}
	if n := getNode(); n.Spec.Unschedulable || n.Annotations[failoverMark] != "" {
		t.Fatalf("after clearMark: unschedulable %v, annotations %v", n.Spec.Unschedulable, n.Annotations)
	}

	// A test whose controller died: a starting controller uncordons the
	// node once the mark's time is up.
	m.Until = time.Now().Add(2 * time.Second)
	if err := c.setMark(ctx, node, m, true); err != nil {
		t.Fatal(err)
	}
	// What a controller that starts does (cmd/calico-lb starts it beside
	// the controller).
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go New(Options{Client: own, Namespace: e.ns, Identity: "c1"}).WatchAbandoned(watchCtx)
	apienv.WaitUntil(t, "the abandoned test's node restored", func() bool {
		n := getNode()
		return !n.Spec.Unschedulable && n.Annotations[failoverMark] == ""
	})

	// The drain's choice of pods (no controller-manager here: the
	// namespace's default ServiceAccount is made by hand).
	if _, err := e.client.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name string, mod func(*corev1.Pod)) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
		if mod != nil {
			mod(p)
		}
		created, err := e.client.CoreV1().Pods(e.ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.Phase != "" {
			created.Status.Phase, created.Status.Conditions = p.Status.Phase, p.Status.Conditions
			if _, err := e.client.CoreV1().Pods(e.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	yes := true
	pod("plain", nil)
	// Running and ready: a budget does not hold back a pod that is not.
	pod("guarded", func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	})
	pod("daemon", func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "ds", UID: "u1", Controller: &yes}}
	})
	pod("mirror", func(p *corev1.Pod) { p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"} })
	pod("done", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })
	pods, err := c.drainable(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "guarded,plain" {
		t.Fatalf("drainable: %v, want guarded and plain", names)
	}
	// A budget that allows no disruption holds "guarded" back.
	zero := intstr.FromInt32(0)
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "guard", Namespace: e.ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &zero, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}}}}
	pdb, err = e.client.PolicyV1().PodDisruptionBudgets(e.ns).Create(ctx, pdb, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Its status as the disruption controller (not running here) would
	// write it; without it the apiserver waits for that controller.
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, DisruptionsAllowed: 0, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1}
	if _, err := e.client.PolicyV1().PodDisruptionBudgets(e.ns).UpdateStatus(ctx, pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		err := c.evict(ctx, p)
		switch p.Name {
		case "guarded":
			if !errors.Is(err, errBudget) {
				t.Fatalf("evicting a pod its budget protects: %v", err)
			}
		case "plain":
			if err != nil {
				t.Fatalf("evict plain: %v", err)
			}
			if got, err := e.client.CoreV1().Pods(e.ns).Get(ctx, "plain", metav1.GetOptions{}); err == nil && got.DeletionTimestamp == nil {
				t.Fatal("the evicted pod is not being deleted")
			}
		}
	}
}

// Two controllers (two units) that start a failover test at once: the
// Lease lets one through and refuses the other, names the holder, and is
// free again when the first releases it; one whose controller died is
// taken over once its time is up.
func TestFailoverLeaseOneAtATime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	own := e.controllerClient()
	mk := func(id string) *Runner { return New(Options{Client: own, Namespace: e.ns, Identity: id}) }
	a, b := mk("unit-0"), mk("unit-1")
	if held, err := a.takeFailoverLease(ctx, "r1", time.Minute); err != nil || held != "" {
		t.Fatalf("the first test: %q %v", held, err)
	}
	if underway, err := Underway(ctx, e.client, access.Access{Namespace: e.ns}); err != nil || !underway {
		t.Fatalf("a held Lease does not count as a test underway: %v %v", underway, err)
	}
	held, err := b.takeFailoverLease(ctx, "r2", time.Minute)
	if err != nil || !strings.Contains(held, "unit-0 r1") {
		t.Fatalf("the second test at once: %q %v, want refused naming unit-0 r1", held, err)
	}
	if err := b.releaseFailoverLease(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	if held, _ := b.takeFailoverLease(ctx, "r2", time.Minute); held == "" {
		t.Fatal("the other controller's release freed the first test's Lease")
	}
	if err := a.releaseFailoverLease(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if held, err := b.takeFailoverLease(ctx, "r2", time.Second); err != nil || held != "" {
		t.Fatalf("after the release: %q %v", held, err)
	}
	// unit-1 dies holding it: once its second is up, unit-0 takes over.
	time.Sleep(1500 * time.Millisecond)
	if held, err := a.takeFailoverLease(ctx, "r3", time.Minute); err != nil || held != "" {
		t.Fatalf("an expired Lease was not taken over: %q %v", held, err)
	}
}

func TestMain(m *testing.M) { apienv.Main(m) }

// env is one test's namespace on the package's control plane.
type env struct {
	t      *testing.T
	cl     *cluster.Cluster
	client kubernetes.Interface // the admin's
	ns     string
}

func newEnv(t *testing.T) *env {
	cl := apienv.ControlPlane(t)
	client := cl.Client(cluster.UserAdmin)
	return &env{t: t, cl: cl, client: client, ns: apienv.Namespace(t, client)}
}

// controllerClient is the controller's own account, as the charm makes it.
func (e *env) controllerClient() kubernetes.Interface {
	return apienv.ControllerClient(e.t, e.cl, e.ns, e.ns)
}
