package speakerhook

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestJournal(t *testing.T) {
	j := NewJournal()
	t0 := time.Now()
	vip := netip.MustParseAddr("10.208.1.5")
	// A start's burst of announcements, then more session events than the
	// ring holds: the VIP's announcement is still there, the oldest
	// session events are not.
	var burst []netip.Prefix
	for i := range 10000 {
		burst = append(burst, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 208, byte(i >> 8), byte(i)}), 32))
	}
	j.Routes(burst, nil)
	for i := range journalSize + 10 {
		j.Event("session", "10.0.255.1", fmt.Sprint("event ", i))
	}
	got := j.Since(t0, vip)
	if len(got.Events) != journalSize+1 {
		t.Fatalf("%d events, want the ring's %d and the VIP's announcement", len(got.Events), journalSize)
	}
	if got.Events[0].Kind != "announce" || got.Events[0].Subject != "10.208.1.5/32" {
		t.Fatalf("first event %+v, want the VIP's announcement", got.Events[0])
	}
	if got.Events[1].Detail != "event 10" || got.Events[len(got.Events)-1].Detail != fmt.Sprint("event ", journalSize+9) {
		t.Fatalf("the ring kept %q to %q, want the last %d", got.Events[1].Detail, got.Events[len(got.Events)-1].Detail, journalSize)
	}
	for i := 1; i < len(got.Events); i++ {
		if got.Events[i].At.Before(got.Events[i-1].At) {
			t.Fatalf("events out of order at %d", i)
		}
	}
	// Since is a time filter; other IPs' routes are not included.
	t1 := time.Now()
	j.Routes(nil, []netip.Prefix{netip.MustParsePrefix("10.208.1.5/32")})
	j.Event("owner", "10.208.1.9", "taken")
	got = j.Since(t1, vip)
	if len(got.Events) != 2 || got.Events[0].Kind != "withdraw" || got.Events[1].Kind != "owner" || got.Started.IsZero() {
		t.Fatalf("since t1: %+v", got)
	}
	// A prefix withdrawn an hour ago is forgotten at the next withdrawal.
	old := netip.MustParsePrefix("10.208.9.9/32")
	j.routes[old] = routeTimes{announced: time.Now().Add(-3 * time.Hour), withdrawn: time.Now().Add(-2 * time.Hour)}
	j.Routes(nil, []netip.Prefix{netip.MustParsePrefix("10.208.1.6/32")})
	if _, kept := j.routes[old]; kept {
		t.Fatal("a prefix withdrawn two hours ago is still kept")
	}
	var none *Journal
	none.Event("session", "x", "y")
	none.Routes(burst, nil)
	if got := none.Since(t0, vip); len(got.Events) != 0 {
		t.Fatalf("nil journal: %+v", got)
	}
}
