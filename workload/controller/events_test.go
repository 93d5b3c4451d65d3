package controller

import (
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The outbox's queue: order kept, a keyed Event replaces the unsent one
// under its key (and goes to the back, after what was posted meanwhile),
// and a key is free again once its Event is taken.
func TestOutboxReplacesQueued(t *testing.T) {
	c := &Controller{}
	o := newOutbox(nil, "test", slog.Default(), newMetrics(c))
	svc := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	}
	o.post(svc("a"), corev1.EventTypeWarning, "PoolChangeHeldBack", "k/a", "held a")
	o.post(svc("b"), corev1.EventTypeWarning, "PoolChangeHeldBack", "k/b", "held b")
	o.post(svc("a"), corev1.EventTypeNormal, "IPAllocated", "", "allocated a")
	o.post(svc("a"), corev1.EventTypeNormal, "PoolChangeReverted", "k/a", "reverted a")
	var got []string
	take := func() {
		ev := o.next()
		if ev == nil {
			got = append(got, "-")
			return
		}
		got = append(got, ev.message)
	}
	take()
	o.post(svc("b"), corev1.EventTypeNormal, "PoolChangeReverted", "k/b", "reverted b")
	take()
	take()
	take()
	take()
	// "held b" went out before its replacement was posted, so both go.
	want := []string{"held b", "allocated a", "reverted a", "reverted b", "-"}
	if len(got) != len(want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sent %q, want %q", got, want)
		}
	}
	if n := len(o.byKey); n != 0 {
		t.Fatalf("%d keys left after the queue emptied", n)
	}
}

// A full outbox drops the new Event, and the one queued under its key
// still goes out: the matter is not left without a word.
func TestOutboxFullKeepsTheQueuedOne(t *testing.T) {
	o := newOutbox(nil, "test", slog.Default(), newMetrics(&Controller{}))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}}
	o.post(svc, corev1.EventTypeWarning, "PoolChangeHeldBack", "k/a", "held a")
	for i := 1; i < maxQueuedEvents; i++ {
		o.post(svc, corev1.EventTypeNormal, "Filler", "", "filler")
	}
	o.post(svc, corev1.EventTypeNormal, "PoolChangeReverted", "k/a", "reverted a")
	if ev := o.next(); ev == nil || ev.message != "held a" {
		t.Fatalf("first out: %+v, want the queued held-back Event", ev)
	}
}
