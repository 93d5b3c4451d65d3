package speaker

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// loopback is where the tests' speakers listen: any free port.
var loopback = netip.MustParseAddrPort("127.0.0.1:0")

// testKeys is the tests' heartbeat key.
var testKeys = mustKeys("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")

func mustKeys(lines string) L2Keys {
	k, err := ParseL2Keys([]byte(lines))
	if err != nil {
		panic(err)
	}
	return k
}

func names(ms []Member) string {
	s := ""
	for _, m := range ms {
		s += m.Node + " "
	}
	return s
}

func TestLiveness(t *testing.T) {
	start := func(name string) (*Liveness, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		l, err := StartLiveness(ctx, name, loopback, testKeys, DefaultHeartbeat, DefaultTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cancel)
		return l, cancel
	}
	ls := map[string]*Liveness{}
	cancels := map[string]context.CancelFunc{}
	for _, n := range []string{"n1", "n2", "n3"} {
		ls[n], cancels[n] = start(n)
	}
	wire := func() {
		peers := map[string]netip.AddrPort{}
		for n, l := range ls {
			peers[n] = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(l.Port()))
		}
		for _, l := range ls {
			l.SetPeers(peers)
		}
	}
	wire()
	waitMembers := func(l *Liveness, want string, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < limit {
			if names(l.Members(time.Now())) == want {
				return time.Since(start)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("members %q, want %q", names(l.Members(time.Now())), want)
		return 0
	}
	waitMembers(ls["n1"], "n1 n2 n3 ", 2*time.Second)
	// n3 dies: the others notice within the timeout (plus one heartbeat).
	cancels["n3"]()
	took := waitMembers(ls["n1"], "n1 n2 ", 2*time.Second)
	waitMembers(ls["n2"], "n1 n2 ", time.Second)
	t.Logf("dead speaker noticed after %s (timeout %s)", took.Round(time.Millisecond), DefaultTimeout)
	if took > DefaultTimeout+3*DefaultHeartbeat {
		t.Fatalf("detection took %s", took)
	}
	// n3 comes back (a new process, new port): alive again, since now.
	back := time.Now()
	ls["n3"], cancels["n3"] = start("n3")
	wire()
	waitMembers(ls["n1"], "n1 n2 n3 ", 2*time.Second)
	for _, m := range ls["n1"].Members(time.Now()) {
		if m.Node == "n3" && m.AliveSince.Before(back) {
			t.Fatalf("returning n3 keeps its old alive-since %v", m.AliveSince)
		}
	}
	if s := ls["n1"].String(); s == "" {
		t.Fatal("empty description")
	}
}

// A speaker claims nothing until it has heard every peer, or listened for
// a whole timeout when some peer is silent.
func TestLivenessSettled(t *testing.T) {
	a, b := startPair(t)
	if ok, _ := a.Settled(time.Now()); !ok {
		t.Fatal("a speaker without peers is not settled")
	}
	// c is never started: a waits the whole timeout.
	a.SetPeers(map[string]netip.AddrPort{"a": lo(a), "b": lo(b), "c": netip.MustParseAddrPort("127.0.0.1:9")})
	b.SetPeers(map[string]netip.AddrPort{"a": lo(a), "b": lo(b)})
	ok, until := a.Settled(time.Now())
	if ok || until.Sub(a.started) != DefaultTimeout {
		t.Fatalf("settled %v until %v, want not settled until start+%s", ok, until, DefaultTimeout)
	}
	if ok, _ := a.Settled(until); !ok {
		t.Fatal("not settled after a whole timeout")
	}
	// b hears a within one round trip, long before the timeout.
	start := time.Now()
	for ok, _ := b.Settled(time.Now()); !ok; ok, _ = b.Settled(time.Now()) {
		if time.Since(start) > DefaultTimeout {
			t.Fatal("b did not hear a before the timeout")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("b settled after %s", time.Since(start).Round(time.Millisecond))
}

// A one-sided flap: a stops hearing b (b's heartbeats to a are lost) and
// gives b up, while b keeps hearing a and never notices. When a hears b
// again, b learns that it was given up, so that it can announce its IPs
// again.
func TestLivenessGivenUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := StartLiveness(ctx, "a", loopback, testKeys, DefaultHeartbeat, DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(loopback))
	if err != nil {
		t.Fatal(err)
	}
	// b's heartbeats to a can be lost, as a one-way network fault loses them.
	bconn := &lossyConn{UDPConn: udp, to: lo(a)}
	b := startLiveness(ctx, "b", bconn, testKeys, DefaultHeartbeat, DefaultTimeout)
	both := map[string]netip.AddrPort{"a": lo(a), "b": lo(b)}
	a.SetPeers(both)
	b.SetPeers(both)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for start := time.Now(); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Since(start) > 2*time.Second {
				t.Fatal(what)
			}
		}
	}
	waitFor("a never saw b", func() bool { return names(a.Members(time.Now())) == "a b " })
	waitFor("b never saw a", func() bool { return names(b.Members(time.Now())) == "a b " })
	if b.TakeGivenUp() {
		t.Fatal("b given up before anything happened")
	}
	// b's heartbeats to a are lost.
	bconn.cut.Store(true)
	waitFor("a did not give b up", func() bool { return names(a.Members(time.Now())) == "a " })
	if names(b.Members(time.Now())) != "a b " {
		t.Fatal("b lost a, but a's heartbeats were never cut")
	}
	bconn.cut.Store(false)
	waitFor("b was not told it had been given up", b.TakeGivenUp)
	if b.TakeGivenUp() {
		t.Fatal("TakeGivenUp did not clear")
	}
}

// startPair starts speakers a and b on loopback for one test.
func startPair(t *testing.T) (a, b *Liveness) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var err error
	if a, err = StartLiveness(ctx, "a", loopback, testKeys, DefaultHeartbeat, DefaultTimeout); err != nil {
		t.Fatal(err)
	}
	if b, err = StartLiveness(ctx, "b", loopback, testKeys, DefaultHeartbeat, DefaultTimeout); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// lo is where l listens, on loopback.
func lo(l *Liveness) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(l.Port()))
}

// lossyConn drops what is sent to to while cut is set.
type lossyConn struct {
	*net.UDPConn
	to  netip.AddrPort
	cut atomic.Bool
}

func (c *lossyConn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if c.cut.Load() && addr == c.to {
		return len(b), nil
	}
	return c.UDPConn.WriteToUDPAddrPort(b, addr)
}
