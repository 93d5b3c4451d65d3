package leadership

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/calico-lb/calico-lb/tests/apienv"
	"github.com/calico-lb/calico-lb/tests/cluster"
)

func TestMain(m *testing.M) { apienv.Main(m) }

const leaseName = "calico-lb-controller"

// controllerClient is the controller's own account, with the RBAC the
// charm grants it, in a namespace of the test's own.
func controllerClient(t *testing.T) (kubernetes.Interface, string) {
	cl := apienv.ControlPlane(t)
	ns := apienv.Namespace(t, cl.Client(cluster.UserAdmin))
	return apienv.ControllerClient(t, cl, ns, leaseName), ns
}

func hold(t *testing.T, l *Lock) {
	t.Helper()
	now := metav1.Now()
	rec := resourcelock.LeaderElectionRecord{HolderIdentity: l.Identity(), LeaseDurationSeconds: 5, AcquireTime: now, RenewTime: now}
	if _, _, err := l.Get(context.Background()); apierrors.IsNotFound(err) {
		err = l.Create(context.Background(), rec)
		if err != nil {
			t.Fatal(err)
		}
		return
	} else if err != nil {
		t.Fatal(err)
	}
	if err := l.Update(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
}

// A seized Lease is the standby's; the old holder, on its next read,
// stops at once, and its renewal from the stale read fails.
func TestSeize(t *testing.T) {
	client, ns := controllerClient(t)
	ctx := context.Background()
	a := NewLock(client.CoordinationV1(), ns, leaseName, "a", "127.0.0.1:1")
	b := NewLock(client.CoordinationV1(), ns, leaseName, "b", "127.0.0.1:2")
	var lost atomic.Int32
	a.OnLost(func() { lost.Add(1) })
	hold(t, a)
	if _, _, err := b.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if h, addr := b.Observed(); h != "a" || addr != "127.0.0.1:1" {
		t.Fatalf("b observes %q at %q, want a at 127.0.0.1:1", h, addr)
	}
	if err := b.Seize(ctx, "a", "127.0.0.2:1", 5*time.Second); err == nil {
		t.Fatal("seized on a probe of another address than the holder's")
	}
	if err := b.Seize(ctx, "b", "127.0.0.1:1", 5*time.Second); err == nil {
		t.Fatal("seized from a holder that does not hold the Lease")
	}
	if err := b.Seize(ctx, "a", "127.0.0.1:1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// a renews from its stale read: refused, and its next read sees b.
	now := metav1.Now()
	if err := a.Update(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: "a", LeaseDurationSeconds: 5, AcquireTime: now, RenewTime: now}); !apierrors.IsConflict(err) {
		t.Fatalf("the old holder's renewal after the seizure: %v, want a conflict", err)
	}
	if lost.Load() != 0 {
		t.Fatal("OnLost before a read")
	}
	rec, _, err := a.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec.HolderIdentity != "b" || lost.Load() != 1 {
		t.Fatalf("holder %q, OnLost called %d times; want b, once", rec.HolderIdentity, lost.Load())
	}
	if h, addr := a.Observed(); h != "b" || addr != "127.0.0.1:2" {
		t.Fatalf("a observes %q at %q, want b at its address", h, addr)
	}
	// A seizure from a read the holder has since renewed fails.
	if err := a.Seize(ctx, "b", "127.0.0.1:2", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Update(ctx, resourcelock.LeaderElectionRecord{HolderIdentity: "b", LeaseDurationSeconds: 5, AcquireTime: now, RenewTime: now}); !apierrors.IsConflict(err) {
		t.Fatalf("b's renewal after a's seizure: %v, want a conflict", err)
	}
}

// A standby's prober takes the Lease once the leader's address, which it
// reached, refuses; it never does while the leader answers, nor when it
// never reached the address.
func TestProber(t *testing.T) {
	client, ns := controllerClient(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	leader := NewLock(client.CoordinationV1(), ns, leaseName, "leader", ln.Addr().String())
	hold(t, leader)
	standby := NewLock(client.CoordinationV1(), ns, leaseName, "standby", "")
	if _, _, err := standby.Get(context.Background()); err != nil {
		t.Fatal(err)
	}
	var reached atomic.Bool
	p := &Prober{Lock: standby, LeaseDuration: 5 * time.Second, Every: 20 * time.Millisecond, Reached: reached.Store}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seized := make(chan bool, 1)
	go func() { seized <- p.Watch(ctx) }()
	apienv.WaitUntil(t, "the standby reaches the leader", reached.Load)
	select {
	case <-seized:
		t.Fatal("took the Lease from a leader that answers")
	case <-time.After(300 * time.Millisecond):
	}
	closed := time.Now()
	ln.Close()
	select {
	case ok := <-seized:
		if !ok {
			t.Fatal("Watch ended without the Lease")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the standby did not take the Lease from a leader whose address refuses")
	}
	t.Logf("took the Lease %s after the leader's listener closed", time.Since(closed).Round(time.Millisecond))
	lease, err := client.CoordinationV1().Leases(ns).Get(context.Background(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := *lease.Spec.HolderIdentity; h != "standby" || *lease.Spec.LeaseTransitions != 1 {
		t.Fatalf("holder %q after %d transitions, want standby after 1", h, *lease.Spec.LeaseTransitions)
	}
	if _, has := lease.Annotations[AnnotationAddress]; has {
		t.Fatal("the new holder publishes no address, but the old one stayed on the Lease")
	}
}

// A leader whose address a standby never reached keeps the Lease when the
// address refuses: a firewall that rejects is not a dead process.
func TestProberNeverReached(t *testing.T) {
	client, ns := controllerClient(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refuses from the start
	hold(t, NewLock(client.CoordinationV1(), ns, leaseName, "leader", addr))
	standby := NewLock(client.CoordinationV1(), ns, leaseName, "standby", "")
	if _, _, err := standby.Get(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	p := &Prober{Lock: standby, LeaseDuration: 5 * time.Second, Every: 10 * time.Millisecond}
	if p.Watch(ctx) {
		t.Fatal("took the Lease from a leader never reached")
	}
	lease, err := client.CoordinationV1().Leases(ns).Get(context.Background(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := *lease.Spec.HolderIdentity; h != "leader" {
		t.Fatalf("holder %q, want leader", h)
	}
}
