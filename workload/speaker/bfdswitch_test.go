package speaker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/calico-lb/calico-lb/tests/netns"
	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/failovertest/speakerhook"
)

// fakeGoBGP records the calls the speaker makes into GoBGP, in order;
// each method's hook, when set, decides its outcome.
type fakeGoBGP struct {
	mu      sync.Mutex
	calls   []string
	onAdd   func(*api.Peer) error
	onDel   func(netip.Addr) error
	onUpd   func(*api.Peer) error
	onPaths func() error
	onStop  func()
}

func (f *fakeGoBGP) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeGoBGP) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeGoBGP) AddPeer(_ context.Context, p *api.Peer) error {
	if f.onAdd != nil {
		if err := f.onAdd(p); err != nil {
			f.record("add " + p.Conf.NeighborAddress + " failed")
			return err
		}
	}
	f.record("add " + p.Conf.NeighborAddress + " hold " + itoa(p.Timers.Config.HoldTime))
	return nil
}

func (f *fakeGoBGP) DeletePeer(_ context.Context, a netip.Addr) error {
	if f.onDel != nil {
		if err := f.onDel(a); err != nil {
			return err
		}
	}
	f.record("delete " + a.String())
	return nil
}

func (f *fakeGoBGP) UpdatePeer(_ context.Context, p *api.Peer) error {
	if f.onUpd != nil {
		if err := f.onUpd(p); err != nil {
			return err
		}
	}
	f.record("bfd " + p.Conf.NeighborAddress + " " + map[bool]string{true: "on", false: "off"}[p.Bfd != nil && p.Bfd.Enabled] + " hold " + itoa(p.Timers.Config.HoldTime))
	return nil
}

func (f *fakeGoBGP) EnablePeer(_ context.Context, a netip.Addr) error {
	f.record("enable " + a.String())
	return nil
}

func (f *fakeGoBGP) AddPaths(paths []*apiutil.Path) error {
	if f.onPaths != nil {
		if err := f.onPaths(); err != nil {
			return err
		}
	}
	f.record("announce " + itoa(uint64(len(paths))))
	return nil
}

func (f *fakeGoBGP) DeletePaths(paths []*apiutil.Path) error {
	f.record("withdraw " + itoa(uint64(len(paths))))
	return nil
}

func (f *fakeGoBGP) Stop() {
	if f.onStop != nil {
		f.onStop()
	}
	f.record("stop")
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func sessionEvent(b *BGP, addr netip.Addr, s bgp.FSMState) {
	b.onPeer(&apiutil.WatchEventMessage_PeerEvent{Type: apiutil.PEER_EVENT_STATE,
		Peer: apiutil.Peer{State: apiutil.PeerState{NeighborAddress: addr, SessionState: s}}}, time.Now())
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	if _, err := netns.WaitFor(context.Background(), limit, cond); err != nil {
		t.Fatalf("after %s: %s", limit, what)
	}
}

func bfdPeer(addr netip.Addr, hold int) Peer {
	return Peer{Peer: config.Peer{Address: addr, ASNumber: 64500, HoldTime: hold, Keepalive: hold / 3, BFD: true, BFDInterval: 100, BFDMultiplier: 3}}
}

// BFD switches reach GoBGP in the order the session's states called for
// them, so that after any run of quick flaps BFD ends on exactly when the
// session ends Established. GoBGP here is a recorder whose UpdatePeer
// takes a random while, as the real one does when its loop is busy.
func TestBFDSwitchesInOrder(t *testing.T) {
	addr := netip.MustParseAddr("10.211.1.1")
	rng := rand.New(rand.NewPCG(1, 2))   // the recorder's delays, under mu
	flips := rand.New(rand.NewPCG(3, 4)) // the test's flaps
	var mu sync.Mutex
	var applied []bool
	f := &fakeGoBGP{onUpd: func(p *api.Peer) error {
		mu.Lock()
		d := time.Duration(rng.IntN(3000)) * time.Microsecond
		mu.Unlock()
		time.Sleep(d)
		mu.Lock()
		applied = append(applied, p.Bfd != nil && p.Bfd.Enabled)
		mu.Unlock()
		return nil
	}}
	b := newBGP(slog.New(slog.DiscardHandler), f)
	defer b.Stop(context.Background())
	b.SetPeers([]Peer{bfdPeer(addr, 9)}, nil)
	waitFor(t, 5*time.Second, "peer added", func() bool { return len(f.log()) == 1 })
	for round := range 200 {
		// Established -> Idle -> (Established), back to back.
		sessionEvent(b, addr, bgp.BGP_FSM_ESTABLISHED)
		sessionEvent(b, addr, bgp.BGP_FSM_IDLE)
		up := flips.IntN(2) == 0
		if up {
			sessionEvent(b, addr, bgp.BGP_FSM_ESTABLISHED)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			b.mu.Lock()
			on := b.peers[addr].bfdOn
			b.mu.Unlock()
			mu.Lock()
			last := len(applied) > 0 && applied[len(applied)-1]
			n := len(applied)
			mu.Unlock()
			if on == up && (n == 0 || last == up) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: session up=%v, but BFD on=%v (last told GoBGP: %v)", round, up, on, last)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Never two switches the same way in a row: each one GoBGP gets
	// changes something.
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(applied); i++ {
		if applied[i] == applied[i-1] {
			t.Fatalf("switch %d repeats %v: %v", i, applied[i], applied)
		}
	}
	t.Logf("200 flaps, %d switches told to GoBGP", len(applied))
}

// A BFD switch in flight while the peer is reconfigured cannot land after
// the new config: the switch carries the old settings and would undo it.
func TestBFDSwitchCannotOverwriteAReconfiguredPeer(t *testing.T) {
	addr := netip.MustParseAddr("10.211.1.1")
	release := make(chan struct{})
	inUpdate := make(chan struct{}, 1)
	f := &fakeGoBGP{}
	f.onUpd = func(*api.Peer) error {
		select {
		case inUpdate <- struct{}{}:
		default:
		}
		<-release
		return nil
	}
	b := newBGP(slog.New(slog.DiscardHandler), f)
	defer b.Stop(context.Background())
	b.SetPeers([]Peer{bfdPeer(addr, 9)}, nil)
	waitFor(t, 5*time.Second, "peer added", func() bool { return len(f.log()) == 1 })
	sessionEvent(b, addr, bgp.BGP_FSM_ESTABLISHED)
	<-inUpdate // the switch to on, with hold 9, is in GoBGP
	moved := bfdPeer(addr, 30)
	moved.Multihop = 2 // more than timers: GoBGP re-adds it
	b.SetPeers([]Peer{moved}, nil)
	close(release)
	waitFor(t, 5*time.Second, "re-added with hold 30", func() bool {
		l := f.log()
		return len(l) > 0 && l[len(l)-1] == "add 10.211.1.1 hold 30"
	})
	sessionEvent(b, addr, bgp.BGP_FSM_ESTABLISHED)
	waitFor(t, 5*time.Second, "BFD on for the new config", func() bool {
		l := f.log()
		return l[len(l)-1] == "bfd 10.211.1.1 on hold 30"
	})
	want := []string{"add 10.211.1.1 hold 9", "bfd 10.211.1.1 on hold 9", "delete 10.211.1.1", "add 10.211.1.1 hold 30", "bfd 10.211.1.1 on hold 30"}
	if got := f.log(); strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("calls into GoBGP:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A change of a peer's timers alone is one UpdatePeer, which GoBGP takes
// without resetting the session (the new timers are offered at its next
// OPEN): the routes stay up. Anything more re-adds the peer.
func TestTimersChangeKeepsTheSession(t *testing.T) {
	addr := netip.MustParseAddr("10.211.1.1")
	f := &fakeGoBGP{}
	b := newBGP(slog.New(slog.DiscardHandler), f)
	defer b.Stop(context.Background())
	b.SetPeers([]Peer{bfdPeer(addr, 9)}, nil)
	waitFor(t, 5*time.Second, "peer added", func() bool { return len(f.log()) == 1 })
	sessionEvent(b, addr, bgp.BGP_FSM_ESTABLISHED)
	waitFor(t, 5*time.Second, "BFD on", func() bool { return len(f.log()) == 2 })
	b.SetPeers([]Peer{bfdPeer(addr, 30)}, nil)
	waitFor(t, 5*time.Second, "the new timers told", func() bool { return len(f.log()) == 3 })
	time.Sleep(100 * time.Millisecond)
	want := []string{"add 10.211.1.1 hold 9", "bfd 10.211.1.1 on hold 9", "bfd 10.211.1.1 on hold 30"}
	if got := f.log(); strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("calls into GoBGP:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st := b.Status(); len(st) != 1 || st[0].State != "established" {
		t.Fatalf("status after the timers changed: %+v", st)
	}
}

// A peer change GoBGP refuses is retried with backoff until it works, and
// until then the peer's problem says why.
func TestFailedPeerChangeIsRetried(t *testing.T) {
	addr := netip.MustParseAddr("10.211.1.1")
	var mu sync.Mutex
	fails := 2
	f := &fakeGoBGP{onAdd: func(*api.Peer) error {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return errors.New("can't create a peer: already exists")
		}
		return nil
	}}
	b := newBGP(slog.New(slog.DiscardHandler), f)
	defer b.Stop(context.Background())
	start := time.Now()
	b.SetPeers([]Peer{bfdPeer(addr, 9)}, nil)
	waitFor(t, 2*time.Second, "the failure shown", func() bool {
		st := b.Status()
		return len(st) == 1 && strings.Contains(st[0].Problem, "add peer 10.211.1.1: can't create a peer: already exists; trying again in")
	})
	if !slices.Contains(f.log(), "add 10.211.1.1 failed") {
		t.Fatalf("no refused AddPeer recorded: %v", f.log())
	}
	// Retried after 1 s, then 2 s: no unrelated event needed.
	waitFor(t, 6*time.Second, "added after retries", func() bool {
		l := f.log()
		return len(l) > 0 && l[len(l)-1] == "add 10.211.1.1 hold 9"
	})
	took := time.Since(start)
	if took < 2900*time.Millisecond {
		t.Fatalf("added %s after the first try: no backoff between the retries", took)
	}
	if st := b.Status(); st[0].Problem != "" {
		t.Fatalf("problem still shown after it worked: %q", st[0].Problem)
	}
	if n := strings.Count(strings.Join(f.log(), "\n"), "failed"); n != 2 {
		t.Fatalf("%d failed attempts, want 2: %v", n, f.log())
	}
}

// Stopping withdraws through GoBGP's one Stop and keeps to its bound when
// GoBGP does not return.
func TestBGPStopIsBounded(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	f := &fakeGoBGP{onStop: func() { <-hang }}
	b := newBGP(slog.New(slog.DiscardHandler), f)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	b.Stop(ctx)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Stop took %s with a 200 ms bound", took)
	}
}

// errorRecorder keeps the Error records a logger gets.
type errorRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (e *errorRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (e *errorRecorder) Handle(_ context.Context, r slog.Record) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.msgs = append(e.msgs, r.Message)
	return nil
}
func (e *errorRecorder) WithAttrs([]slog.Attr) slog.Handler { return e }
func (e *errorRecorder) WithGroup(string) slog.Handler      { return e }

// A real GoBGP stops once: stopping it twice logged "failed to stop BGP
// server" at Error on every mode, AS or router-ID change.
func TestBGPStopsGoBGPOnce(t *testing.T) {
	rec := &errorRecorder{}
	b, err := StartBGP(context.Background(), 64512, netip.MustParseAddr("127.0.0.1"), slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	b.Stop(context.Background())
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.msgs) > 0 {
		t.Fatalf("stopping logged errors: %q", rec.msgs)
	}
}

// One unreadable password file does not drop the sessions: those without
// a password are unaffected, those with one keep the settings they had,
// and the status says what could not be read.
func TestUnreadablePasswordFileKeepsSessions(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "bgp-passwords")
	if err := os.WriteFile(pwFile, []byte("spine: s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := config.DefaultOptions()
	o.PeeringMode, o.BGPPasswords = "spine", "secret:d1fsp2l2bn4c7fjf6lb0"
	o.SpinePeers = "- {address: 127.0.0.2, as-number: 64500, password-key: spine}\n- {address: 127.0.0.3, as-number: 64500}\n"
	cfg, _, err := config.FromOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BGP.PasswordFile = pwFile
	node := Node{Name: "n1", Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	d := &bgpDriver{log: slog.New(slog.DiscardHandler), updates: prometheus.NewCounter(prometheus.CounterOpts{Name: "test_updates"}), observer: speakerhook.NewJournal()}
	defer d.stop(context.Background())
	w := world{cfg: cfg, node: node, files: OSFiles{}}
	d.sync(context.Background(), w)
	peers := func() []string {
		var out []string
		for _, p := range d.view().peers {
			out = append(out, p.Address)
		}
		return out
	}
	waitFor(t, 5*time.Second, "both peers configured", func() bool { return len(peers()) == 2 })
	if err := os.Remove(pwFile); err != nil { // the kubelet swapping the Secret's files, or a broken mount
		t.Fatal(err)
	}
	d.sync(context.Background(), w)
	time.Sleep(100 * time.Millisecond)
	if got := peers(); len(got) != 2 {
		t.Fatalf("after the password file went: peers %v, want both kept", got)
	}
	if v := d.view(); !strings.Contains(v.peerErr, "bgp-passwords") || !strings.Contains(v.peerErr, "127.0.0.2") {
		t.Fatalf("status error %q does not say the file and the peer", v.peerErr)
	}
}
