package speaker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// Nobody without the key, or not at the node's address, moves what a
// speaker believes: forged heartbeats (the old unauthenticated format, a
// wrong key, the right format from the wrong address) neither keep a dead
// node alive nor make a live one look restarted; replays and stale
// heartbeats are dropped.
func TestHeartbeatsResistForgery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := StartLiveness(ctx, "a", loopback, testKeys, DefaultHeartbeat, DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	bctx, killB := context.WithCancel(ctx)
	b, err := StartLiveness(bctx, "b", loopback, testKeys, DefaultHeartbeat, DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	peers := map[string]netip.AddrPort{"a": lo(a), "b": lo(b)}
	a.SetPeers(peers)
	b.SetPeers(peers)
	aliveSince := func() (time.Time, bool) {
		for _, m := range a.Members(time.Now()) {
			if m.Node == "b" {
				return m.AliveSince, true
			}
		}
		return time.Time{}, false
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, ok := aliveSince(); !ok; _, ok = aliveSince() {
		if time.Now().After(deadline) {
			t.Fatal("a never heard b")
		}
		time.Sleep(10 * time.Millisecond)
	}
	since, _ := aliveSince()

	forger, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	wrongKey := mustKeys("ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100")
	forge := func(started time.Time) [][]byte {
		now := time.Now()
		hb := heartbeat{node: "b", started: started.UnixNano(), seq: 1 << 40, sent: now.UnixNano()}
		return [][]byte{
			[]byte(fmt.Sprintf("CLB1 b %d 0", started.UnixNano())), // before authentication
			hb.seal(wrongKey.Sign),                                 // a key the speakers do not have
			hb.seal(testKeys.Sign),                                 // the key, from the wrong address
		}
	}
	send := func(started time.Time, d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			for _, m := range forge(started) {
				_, _ = forger.WriteToUDPAddrPort(m, lo(a))
			}
		}
	}
	// A forged recent start for a live b: b would lose its IPs to hold-down.
	send(time.Now(), 500*time.Millisecond)
	if now, _ := aliveSince(); !now.Equal(since) {
		t.Fatalf("forged heartbeats changed b's start from %s to %s", since, now)
	}
	// b dies; forged heartbeats must not keep it alive.
	killB()
	go send(since, 2*time.Second)
	deadline = time.Now().Add(time.Second)
	for _, ok := aliveSince(); ok; _, ok = aliveSince() {
		if time.Now().After(deadline) {
			t.Fatal("a still counts b alive a second after it died, forged heartbeats arriving")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Replays and stale heartbeats, as if from b's own address: the
	// protocol drops them before they count.
	l := &Liveness{self: "a", peers: peers, seen: map[string]peerSeen{}, kick: make(chan struct{}, 1), timeout: DefaultTimeout}
	now := time.Now()
	hb := heartbeat{node: "b", started: now.Add(-time.Minute).UnixNano(), seq: 7, sent: now.UnixNano()}
	l.heard(hb, lo(b), now)
	for _, tc := range []struct {
		what string
		hb   heartbeat
	}{
		{"a replay", hb},
		{"an older number", heartbeat{node: "b", started: hb.started, seq: 6, sent: now.UnixNano()}},
		{"a stale send time", heartbeat{node: "b", started: hb.started, seq: 8, sent: now.Add(-time.Hour).UnixNano()}},
		{"an earlier life", heartbeat{node: "b", started: hb.started - 1, seq: 100, sent: now.UnixNano()}},
	} {
		l.heard(tc.hb, lo(b), now.Add(time.Millisecond))
		if s := l.seen["b"]; s.seq != 7 || !s.last.Equal(now) {
			t.Fatalf("%s was taken: %+v", tc.what, s)
		}
	}
	// Each refusal is counted by reason, and a stale send time names the
	// node and how far off it was, never silently.
	counts, skewed := l.Rejected(now.Add(time.Millisecond))
	if counts["replay"] != 3 || counts["clock"] != 1 || !slices.Equal(skewed, []string{"b (1h0m0s)"}) {
		t.Fatalf("rejections %v, skewed %v", counts, skewed)
	}
	l.heard(heartbeat{node: "b", started: hb.started, seq: 8, sent: now.UnixNano()}, lo(b), now.Add(time.Millisecond))
	if s := l.seen["b"]; s.seq != 8 {
		t.Fatalf("the next heartbeat was refused: %+v", s)
	}
	if _, skewed := l.Rejected(now); len(skewed) != 0 {
		t.Fatalf("b still shown skewed after a heartbeat in time: %v", skewed)
	}
	l.heard(heartbeat{node: "b", started: hb.started, seq: 9, sent: now.UnixNano()}, netip.MustParseAddrPort("127.0.0.1:1"), now.Add(time.Millisecond))
	if counts, _ := l.Rejected(now); counts["source"] != 1 {
		t.Fatalf("a heartbeat from elsewhere was not counted: %v", counts)
	}
}

// The heartbeat parser refuses whatever it is given that is not a
// heartbeat signed with an accepted key, without panicking.
func FuzzOpenHeartbeat(f *testing.F) {
	good := heartbeat{node: "node-1", started: 1, revived: 2, seq: 3, sent: 4}
	f.Add(good.seal(testKeys.Sign))
	f.Add([]byte("CLB1 node-1 1 0"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := openHeartbeat(b, testKeys.Accept)
		if ok && !strings.HasPrefix(string(b), h.text()+" ") {
			t.Fatalf("accepted %q as %+v", b, h)
		}
	})
}

// Keys: the first signs, all are accepted; bad files are refused.
func TestParseL2Keys(t *testing.T) {
	k1, k2 := NewKey(), NewKey()
	keys, err := ParseL2Keys([]byte(k1 + "\n" + k2 + "\n"))
	if err != nil || len(keys.Accept) != 2 {
		t.Fatalf("%+v %v", keys, err)
	}
	hb := heartbeat{node: "n", started: 1, seq: 1, sent: 1}
	for i, k := range keys.Accept {
		if _, ok := openHeartbeat(hb.seal(k), keys.Accept); !ok {
			t.Errorf("key %d not accepted", i)
		}
	}
	for _, bad := range []string{"", "zz", "0011", k1 + "\nnot-hex"} {
		if _, err := ParseL2Keys([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A peer's clock that runs ahead or behind does not move its hold-down:
// "alive since" is when its heartbeat arrived less the uptime it carries,
// on the receiver's own clock, not the peer's start time.
func TestAliveSinceIgnoresClockSkew(t *testing.T) {
	peers := map[string]netip.AddrPort{"b": netip.MustParseAddrPort("127.0.0.1:7947")}
	now := time.Now()
	for _, skew := range []time.Duration{10 * time.Second, -10 * time.Second} {
		l := &Liveness{self: "a", started: now.Add(-time.Hour), peers: peers, seen: map[string]peerSeen{}, kick: make(chan struct{}, 1), timeout: DefaultTimeout}
		theirs := now.Add(skew)
		l.heard(heartbeat{node: "b", started: theirs.Add(-2 * time.Second).UnixNano(), uptime: int64(2 * time.Second), seq: 1, sent: theirs.UnixNano()}, peers["b"], now)
		var since time.Time
		for _, m := range l.Members(now) {
			if m.Node == "b" {
				since = m.AliveSince
			}
		}
		if d := since.Sub(now.Add(-2 * time.Second)); d < -time.Millisecond || d > time.Millisecond {
			t.Fatalf("clock %s off: b alive since %s, want 2 s before now (%s)", skew, since, now.Add(-2*time.Second))
		}
		// A later heartbeat of the same life does not move it.
		l.heard(heartbeat{node: "b", started: theirs.Add(-2 * time.Second).UnixNano(), uptime: int64(3 * time.Second), seq: 2, sent: theirs.Add(time.Second).UnixNano()}, peers["b"], now.Add(1100*time.Millisecond))
		if s := l.seen["b"].aliveSince; !s.Equal(since) {
			t.Fatalf("alive since moved from %s to %s within one life", since, s)
		}
	}
}
