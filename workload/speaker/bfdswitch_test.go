package speaker

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/calico-lb/calico-lb/workload/config"
)

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
	update := func(_ context.Context, r *api.UpdatePeerRequest) error {
		mu.Lock()
		d := time.Duration(rng.IntN(3000)) * time.Microsecond
		mu.Unlock()
		time.Sleep(d)
		mu.Lock()
		applied = append(applied, r.Peer.Bfd != nil && r.Peer.Bfd.Enabled)
		mu.Unlock()
		return nil
	}
	b := newBGP(slog.New(slog.DiscardHandler), update)
	defer b.stop()
	b.peers[addr] = &peerState{cfg: Peer{Peer: config.Peer{Address: addr, BFD: true, BFDInterval: 100, BFDMultiplier: 3}}, state: bgp.BGP_FSM_IDLE}
	event := func(s bgp.FSMState) {
		b.onPeer(&apiutil.WatchEventMessage_PeerEvent{Type: apiutil.PEER_EVENT_STATE,
			Peer: apiutil.Peer{State: apiutil.PeerState{NeighborAddress: addr, SessionState: s}}}, time.Now())
	}
	for round := range 200 {
		// Established -> Idle -> (Established), back to back.
		event(bgp.BGP_FSM_ESTABLISHED)
		event(bgp.BGP_FSM_IDLE)
		up := flips.IntN(2) == 0
		if up {
			event(bgp.BGP_FSM_ESTABLISHED)
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
