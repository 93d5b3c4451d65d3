package allocator

import (
	"errors"
	"fmt"
	"testing"
)

// While a pool change is held back, new Services take addresses the new
// pools keep; one that can only get an address the change would take away
// is reported by PendingLoss, and applying the change moves exactly the
// Services held back plus that one.
func TestAllocationWhileHeldBack(t *testing.T) {
	old := []Pool{{Name: "p", Ranges: rngs("10.0.0.1-10.0.0.40"), AutoAssign: true}}
	a := mustNew(t, old...)
	allocN(t, a, "old", 30) // .1-.30
	next := []Pool{{Name: "p", Ranges: rngs("10.0.0.36-10.0.0.40", "10.0.9.0/24"), AutoAssign: true}}
	ch, err := a.SetPools(next, false)
	if !errors.Is(err, ErrHeldBack) || len(ch.Orphans) != 30 {
		t.Fatalf("SetPools = %d orphans, %v; want 30, held back", len(ch.Orphans), err)
	}
	wantOrder(t, "while held back", allocN(t, a, "new", 5), "10.0.0.36 10.0.0.37 10.0.0.38 10.0.0.39 10.0.0.40")
	for i := range 5 {
		if lost := a.PendingLoss(svc("ns", fmt.Sprint("new", i))); len(lost) != 0 {
			t.Fatalf("new%d would lose %v", i, lost)
		}
	}
	// Nothing the change keeps is free: an address it takes away, reported.
	wantOrder(t, "no kept address free", allocN(t, a, "late", 1), "10.0.0.31")
	if lost := a.PendingLoss(svc("ns", "late0")); len(lost) != 1 || lost[0].String() != "10.0.0.31" {
		t.Fatalf("PendingLoss(late0) = %v, want 10.0.0.31", lost)
	}
	ch, err = a.SetPools(next, true)
	if err != nil || len(ch.Orphans) != 31 {
		t.Fatalf("apply: %d orphans, %v; want 31", len(ch.Orphans), err)
	}
	if lost := a.PendingLoss(svc("ns", "late0")); lost != nil {
		t.Fatalf("PendingLoss after apply = %v", lost)
	}

	// Sharing: a shared address the change would take away is not joined
	// while a fresh one it keeps is free.
	b := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.1-10.0.0.10"), AutoAssign: true})
	first := v4req("ns", "dns-tcp")
	first.SharingKey, first.BackendKey = "dns", "b"
	mustAlloc(t, b, first) // .1
	if _, err := b.SetPools([]Pool{{Name: "p", Ranges: rngs("10.0.0.5-10.0.0.10"), AutoAssign: true}}, false); !errors.Is(err, ErrHeldBack) {
		t.Fatalf("not held back: %v", err)
	}
	second := v4req("ns", "dns-udp")
	second.SharingKey, second.BackendKey, second.Ports = "dns", "b", []Port{{"UDP", 53}}
	if got := mustAlloc(t, b, second).IPs[0].String(); got != "10.0.0.5" {
		t.Fatalf("keyed Service while held back got %s, want 10.0.0.5 (not the shared .1 the change takes away)", got)
	}
	// Reverted: nothing is held back, and sharing works as before.
	b.DropPending()
	third := v4req("ns", "dns-other")
	third.SharingKey, third.BackendKey, third.Ports = "dns", "b", []Port{{"TCP", 5353}}
	if got := mustAlloc(t, b, third).IPs[0].String(); got != "10.0.0.1" {
		t.Fatalf("after the revert got %s, want to join 10.0.0.1", got)
	}
}

// Next-fit keeps its furthest position through a held-back change: a
// Service given an address while the change was held (one the change
// keeps, behind the position) does not pull the position back, so after
// a revert the next Service gets a never-used address, not one released
// seconds before.
func TestHeldBackKeepsFurthestPosition(t *testing.T) {
	full := []Pool{{Name: "p", Ranges: rngs("10.0.0.1-10.0.0.254"), AutoAssign: true}}
	a := mustNew(t, full...)
	allocN(t, a, "s", 30) // .1-.30
	for i := 5; i < 10; i++ {
		a.Release(svc("ns", fmt.Sprint("s", i))) // .6-.10
	}
	if _, err := a.SetPools([]Pool{{Name: "p", Ranges: rngs("10.0.0.1-10.0.0.15"), AutoAssign: true}}, false); !errors.Is(err, ErrHeldBack) {
		t.Fatalf("shrinking to .1-.15 was not held back: %v", err)
	}
	wantOrder(t, "while held back", allocN(t, a, "held", 1), "10.0.0.6")
	if _, err := a.SetPools(full, false); err != nil {
		t.Fatalf("reverting: %v", err)
	}
	a.DropPending()
	wantOrder(t, "after the revert", allocN(t, a, "after", 2), "10.0.0.31 10.0.0.32")
}
