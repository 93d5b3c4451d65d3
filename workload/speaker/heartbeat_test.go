package speaker

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
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
		hb := heartbeat{v: 3, node: "b", started: started.UnixNano(), seq: 1 << 40, sent: now.UnixNano(), nonce: "0123456789abcdef", echo: noEcho}
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
	l := newLiveness("a", time.Now(), testKeys, DefaultHeartbeat, DefaultTimeout)
	l.peers = peers
	now := time.Now()
	v3 := func(seq uint64, echo string) heartbeat {
		return heartbeat{v: 3, node: "b", started: now.Add(-time.Minute).UnixNano(), seq: seq, sent: now.UnixNano(), nonce: "0123456789abcdef", echo: echo}
	}
	hb := v3(7, l.nonce)
	l.heard(hb, lo(b), now)
	earlier := v3(100, l.nonce)
	earlier.started--
	v2 := v3(8, "")
	v2.v, v2.started = 2, v3(0, "").started-2
	for _, tc := range []struct {
		what string
		hb   heartbeat
	}{
		{"a replay", hb},
		{"an older number", v3(6, l.nonce)},
		{"an earlier life", earlier},
		{"no answer to our challenge", v3(8, "fedcba9876543210")},
	} {
		l.heard(tc.hb, lo(b), now.Add(time.Millisecond))
		if s := l.seen["b"]; s.seq != 7 || !s.last.Equal(now) {
			t.Fatalf("%s was taken: %+v", tc.what, s)
		}
	}
	// Each refusal is counted by reason.
	counts, _, _ := l.Rejected(now.Add(time.Millisecond))
	if counts["replay"] != 3 || counts["stale"] != 1 {
		t.Fatalf("rejections %v", counts)
	}
	l.heard(v3(9, l.nonce), lo(b), now.Add(time.Millisecond))
	if s := l.seen["b"]; s.seq != 9 {
		t.Fatalf("the next heartbeat was refused: %+v", s)
	}
	l.heard(v3(10, l.nonce), netip.MustParseAddrPort("127.0.0.1:1"), now.Add(time.Millisecond))
	if counts, _, _ := l.Rejected(now); counts["source"] != 1 {
		t.Fatalf("a heartbeat from elsewhere was not counted: %v", counts)
	}
}

// A node whose clock is an hour off is neither dead to the others nor
// owner of everything: version 3 heartbeats are judged by the challenge
// they echo, not by their send time, which is only shown. Before version
// 3 such a node's heartbeats were refused, each side counted the other
// dead and both answered for the same IPs. A speaker from before version 3
// (a rolling upgrade) is still judged by its send time, and bgp-status
// says why it counts as dead.
func TestHeartbeatsNeedNoClockAgreement(t *testing.T) {
	now := time.Now()
	peers := map[string]netip.AddrPort{"b": netip.MustParseAddrPort("127.0.0.1:7947")}
	for _, off := range []time.Duration{time.Hour, -time.Hour} {
		l := newLiveness("a", now.Add(-time.Minute), testKeys, DefaultHeartbeat, DefaultTimeout)
		l.peers = peers
		theirs := now.Add(off)
		l.heard(heartbeat{v: 3, node: "b", started: theirs.Add(-time.Minute).UnixNano(), uptime: int64(time.Minute), seq: 1, sent: theirs.UnixNano(), nonce: "0123456789abcdef", echo: l.nonce}, peers["b"], now)
		if !alive(l, "b", now) {
			t.Fatalf("clock %s off: b counted dead", off)
		}
		counts, skewed, refused := l.Rejected(now)
		if len(counts) != 0 || len(skewed) != 1 || len(refused) != 0 {
			t.Fatalf("clock %s off: rejected %v, skewed %v, refused %v; want b shown skewed, nothing refused", off, counts, skewed, refused)
		}
		// A speaker from before version 3 with that clock is refused,
		// counted, and named.
		old := newLiveness("a", now.Add(-time.Minute), testKeys, DefaultHeartbeat, DefaultTimeout)
		old.peers = peers
		old.heard(heartbeat{v: 2, node: "b", started: theirs.Add(-time.Minute).UnixNano(), seq: 1, sent: theirs.UnixNano()}, peers["b"], now)
		counts, _, refused = old.Rejected(now)
		if alive(old, "b", now) || counts["clock"] != 1 || len(refused) != 1 || !strings.HasPrefix(refused[0], "b (") {
			t.Fatalf("a version 2 heartbeat %s off: alive %v, rejected %v, refused %v", off, alive(old, "b", now), counts, refused)
		}
	}
}

// A heartbeat held back and delivered later counts only while the
// challenge it echoes is one of the receiver's last two: at most two
// rotations, where a send time allowed 30 s.
func TestHeldBackHeartbeatsGoStale(t *testing.T) {
	now := time.Now()
	peers := map[string]netip.AddrPort{"b": netip.MustParseAddrPort("127.0.0.1:7947")}
	l := newLiveness("a", now, testKeys, DefaultHeartbeat, DefaultTimeout)
	l.peers = peers
	held := l.nonce
	hb := func(seq uint64, echo string) heartbeat {
		return heartbeat{v: 3, node: "b", started: now.UnixNano(), seq: seq, sent: now.UnixNano(), nonce: "0123456789abcdef", echo: echo}
	}
	l.heard(hb(1, held), peers["b"], now)
	for i := range 2 {
		l.prevNonce, l.nonce = l.nonce, newNonce() // as beat rotates it
		at := now.Add(time.Duration(i+1) * nonceRotation)
		l.heard(hb(uint64(i+2), held), peers["b"], at)
		if taken := l.seen["b"].seq == uint64(i+2); taken != (i == 0) {
			t.Fatalf("a heartbeat echoing a challenge %d rotation(s) old: taken %v", i+1, taken)
		}
	}
	if counts, _, _ := l.Rejected(now); counts["stale"] != 1 {
		t.Fatalf("rejections %v, want one stale", counts)
	}
}

// During a rolling upgrade a speaker sends version 2 beside version 3 to
// a peer it has not heard speak version 3, and only version 3 once it
// has; the version 2 copy of a heartbeat it already took is dropped
// without counting as a replay.
func TestHeartbeatsAcrossAnUpgrade(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := StartLiveness(ctx, "a", loopback, testKeys, DefaultHeartbeat, DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	old, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldAt := old.LocalAddr().(*net.UDPAddr).AddrPort()
	a.SetPeers(map[string]netip.AddrPort{"a": lo(a), "b": oldAt})
	versions := func(n int) map[int]int {
		got := map[int]int{}
		buf := make([]byte, 512)
		for range n {
			_ = old.SetReadDeadline(time.Now().Add(time.Second))
			k, _, err := old.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			h, ok := openHeartbeat(buf[:k], testKeys.Accept)
			if !ok {
				t.Fatalf("a sent %q", buf[:k])
			}
			got[h.v]++
		}
		return got
	}
	if got := versions(6); got[2] == 0 || got[3] == 0 {
		t.Fatalf("to a peer not heard yet a sent versions %v, want 2 and 3", got)
	}
	// An old speaker's heartbeats: taken, judged by their time.
	started := time.Now().Add(-time.Minute)
	send := func(h heartbeat) {
		h.node, h.started = "b", started.UnixNano()
		if _, err := old.WriteToUDPAddrPort(h.seal(testKeys.Sign), lo(a)); err != nil {
			t.Fatal(err)
		}
	}
	send(heartbeat{v: 2, seq: 1, sent: time.Now().UnixNano()})
	waitAlive(t, a, "b")
	// b upgrades in place (same life, for the test): a's next heartbeats
	// carry b's challenge and no version 2 copy.
	var nonce string
	buf := make([]byte, 512)
	_ = old.SetReadDeadline(time.Now().Add(time.Second))
	for nonce == "" {
		k, _, err := old.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if h, _ := openHeartbeat(buf[:k], testKeys.Accept); h.v == 3 {
			nonce = h.nonce
		}
	}
	const bNonce = "00112233aabbccdd"
	send(heartbeat{v: 3, seq: 2, sent: time.Now().UnixNano(), nonce: bNonce, echo: nonce})
	send(heartbeat{v: 2, seq: 2, sent: time.Now().UnixNano()})
	time.Sleep(50 * time.Millisecond)
	for range 20 { // drain what a sent before it heard version 3
		_ = old.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		if _, _, err := old.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
	}
	for range 4 {
		_ = old.SetReadDeadline(time.Now().Add(time.Second))
		k, _, err := old.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if h, _ := openHeartbeat(buf[:k], testKeys.Accept); h.v != 3 || h.echo != bNonce {
			t.Fatalf("after b spoke version 3, a sent version %d echoing %q", h.v, h.echo)
		}
	}
	if counts, _, _ := a.Rejected(time.Now()); len(counts) != 0 {
		t.Fatalf("the upgrade cost refusals: %v", counts)
	}
}

func alive(l *Liveness, node string, now time.Time) bool {
	for _, m := range l.Members(now) {
		if m.Node == node {
			return true
		}
	}
	return false
}

func waitAlive(t *testing.T, l *Liveness, node string) {
	t.Helper()
	for end := time.Now().Add(2 * time.Second); !alive(l, node, time.Now()); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s never counted %s alive", l.self, node)
		}
	}
}

// The heartbeat parser refuses whatever it is given that is not a
// heartbeat signed with an accepted key, without panicking.
func FuzzOpenHeartbeat(f *testing.F) {
	good := heartbeat{v: 3, node: "node-1", started: 1, revived: 2, seq: 3, sent: 4, nonce: "0123456789abcdef", echo: noEcho}
	f.Add(good.seal(testKeys.Sign))
	good.v = 2
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
	hb := heartbeat{v: 3, node: "n", started: 1, seq: 1, sent: 1, nonce: "0123456789abcdef", echo: noEcho}
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
		l := newLiveness("a", now.Add(-time.Hour), testKeys, DefaultHeartbeat, DefaultTimeout)
		l.peers = peers
		theirs := now.Add(skew)
		l.heard(heartbeat{v: 3, node: "b", started: theirs.Add(-2 * time.Second).UnixNano(), uptime: int64(2 * time.Second), seq: 1, sent: theirs.UnixNano(), nonce: "0123456789abcdef", echo: l.nonce}, peers["b"], now)
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
		l.heard(heartbeat{v: 3, node: "b", started: theirs.Add(-2 * time.Second).UnixNano(), uptime: int64(3 * time.Second), seq: 2, sent: theirs.Add(time.Second).UnixNano(), nonce: "0123456789abcdef", echo: l.nonce}, peers["b"], now.Add(1100*time.Millisecond))
		if s := l.seen["b"].aliveSince; !s.Equal(since) {
			t.Fatalf("alive since moved from %s to %s within one life", since, s)
		}
	}
}

// A flood from anything that is not a peer's heartbeat address costs a
// lookup, not an HMAC: it is refused for its source before authentication
// (a pod cannot send from a node's address). From a peer's address the
// HMAC then refuses a forgery.
func TestStrangersAreRefusedBeforeTheHMAC(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := StartLiveness(ctx, "a", loopback, testKeys, time.Hour, DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	forged := heartbeat{v: 3, node: "c", started: 1, seq: 1, sent: time.Now().UnixNano(), nonce: "0123456789abcdef", echo: noEcho}.seal(mustKeys("ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100").Sign)
	send := func(n int) {
		for range n {
			if _, err := stranger.WriteToUDPAddrPort(forged, lo(a)); err != nil {
				t.Fatal(err)
			}
		}
	}
	counted := func(want map[string]uint64) {
		t.Helper()
		var got map[string]uint64
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if got, _, _ = a.Rejected(time.Now()); maps.Equal(got, want) {
				return
			}
		}
		t.Fatalf("refused %v, want %v", got, want)
	}
	send(50)
	counted(map[string]uint64{"source": 50})
	// Now the same address is a peer's: the HMAC refuses the forgery.
	a.SetPeers(map[string]netip.AddrPort{"a": lo(a), "c": stranger.LocalAddr().(*net.UDPAddr).AddrPort()})
	send(50)
	counted(map[string]uint64{"source": 50, "unauthentic": 50})
}
