package speaker

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

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
		l, err := StartLiveness(ctx, name, 0, DefaultHeartbeat, DefaultTimeout)
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
