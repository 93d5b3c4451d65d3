// Package leadership is the controller's leader election beyond client-go's:
// a Lease lock that publishes where its holder answers probes, and a
// standby's prober that takes the Lease as soon as the leader's process is
// gone instead of when its Lease runs out.
//
// Why it is safe: a standby seizes only after the leader's own address,
// which it has reached before, refuses connections twice in a row (the
// kernel answers so for a port no process holds), and only by an update
// that holds the resourceVersion of a read made just then, so that any
// renewal in between makes the seizure fail. A timeout proves nothing (a
// partition, a busy node) and leaves the Lease's expiry the only rule. A
// leader that finds another holder in the Lease stops at once (OnLost)
// rather than when its renew deadline passes.
package leadership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// AnnotationAddress on the Lease is where its holder answers probes
// (host:port of its metrics listener); absent when it publishes none.
const AnnotationAddress = "calico-lb.io/holder-address"

// Lock is a resourcelock.Interface over a coordination/v1 Lease. It is
// safe for the elector and a Prober to use at once.
type Lock struct {
	client    coordinationclient.LeasesGetter
	namespace string
	name      string
	identity  string
	address   string // where this instance answers probes; "" none

	mu     sync.Mutex
	lease  *coordinationv1.Lease // the last one read or written
	held   bool                  // this instance last wrote itself holder
	onLost func()
}

var _ resourcelock.Interface = (*Lock)(nil)

// NewLock returns the lock on Lease namespace/name for identity, which
// publishes address (host:port, or "" for none) while it holds the Lease.
func NewLock(client coordinationclient.LeasesGetter, namespace, name, identity, address string) *Lock {
	return &Lock{client: client, namespace: namespace, name: name, identity: identity, address: address}
}

// OnLost sets what runs when a read finds another holder in a Lease this
// instance held: the leader stops leading at once.
func (l *Lock) OnLost(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onLost = f
}

// Observed says who held the Lease at the last read or write, and where
// that holder answers probes.
func (l *Lock) Observed() (holder, address string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lease == nil {
		return "", ""
	}
	return holderOf(l.lease), l.lease.Annotations[AnnotationAddress]
}

// Get reads the Lease.
func (l *Lock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	lease, err := l.client.Leases(l.namespace).Get(ctx, l.name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	rec := resourcelock.LeaseSpecToLeaderElectionRecord(&lease.Spec)
	l.mu.Lock()
	l.lease = lease
	lost := l.held && rec.HolderIdentity != l.identity
	if lost {
		l.held = false
	}
	onLost := l.onLost
	l.mu.Unlock()
	if lost && onLost != nil {
		onLost()
	}
	raw, err := json.Marshal(rec)
	return rec, raw, err
}

// Create creates the Lease with rec.
func (l *Lock) Create(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: l.namespace, Name: l.name}}
	l.fill(lease, rec)
	created, err := l.client.Leases(l.namespace).Create(ctx, lease, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	l.wrote(created, rec)
	return nil
}

// Update writes rec over the Lease last read, holding its resourceVersion.
func (l *Lock) Update(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	l.mu.Lock()
	last := l.lease
	l.mu.Unlock()
	if last == nil {
		return errors.New("leadership: the Lease was not read before it was updated")
	}
	return l.update(ctx, last, rec)
}

func (l *Lock) update(ctx context.Context, last *coordinationv1.Lease, rec resourcelock.LeaderElectionRecord) error {
	lease := last.DeepCopy()
	l.fill(lease, rec)
	updated, err := l.client.Leases(l.namespace).Update(ctx, lease, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	l.wrote(updated, rec)
	return nil
}

// Seize takes the Lease from holder, whom a probe at address found gone:
// from a read made now, only if holder still holds it there, and by an
// update that fails if anyone wrote the Lease since that read.
func (l *Lock) Seize(ctx context.Context, holder, address string, leaseDuration time.Duration) error {
	lease, err := l.client.Leases(l.namespace).Get(ctx, l.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the Lease: %w", err)
	}
	if holderOf(lease) != holder || lease.Annotations[AnnotationAddress] != address {
		return fmt.Errorf("the Lease changed hands (now %q) since the probe", holderOf(lease))
	}
	old := resourcelock.LeaseSpecToLeaderElectionRecord(&lease.Spec)
	now := metav1.Now()
	rec := resourcelock.LeaderElectionRecord{
		HolderIdentity:       l.identity,
		LeaseDurationSeconds: max(1, int(leaseDuration/time.Second)),
		AcquireTime:          now,
		RenewTime:            now,
		LeaderTransitions:    old.LeaderTransitions + 1,
	}
	if err := l.update(ctx, lease, rec); err != nil {
		return fmt.Errorf("take the Lease: %w", err)
	}
	return nil
}

// fill sets rec and this instance's address, when it is the holder.
func (l *Lock) fill(lease *coordinationv1.Lease, rec resourcelock.LeaderElectionRecord) {
	lease.Spec = resourcelock.LeaderElectionRecordToLeaseSpec(&rec)
	delete(lease.Annotations, AnnotationAddress)
	if rec.HolderIdentity == l.identity && l.address != "" {
		if lease.Annotations == nil {
			lease.Annotations = map[string]string{}
		}
		lease.Annotations[AnnotationAddress] = l.address
	}
}

func (l *Lock) wrote(lease *coordinationv1.Lease, rec resourcelock.LeaderElectionRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lease = lease
	l.held = rec.HolderIdentity == l.identity
}

// RecordEvent records nothing: the controller logs its own transitions.
func (l *Lock) RecordEvent(string) {}

// Identity is this instance's identity in the Lease.
func (l *Lock) Identity() string { return l.identity }

// Describe names the Lease.
func (l *Lock) Describe() string { return l.namespace + "/" + l.name }

func holderOf(lease *coordinationv1.Lease) string {
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}
