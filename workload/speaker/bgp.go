package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	lbapi "github.com/calico-lb/calico-lb/workload/api"
	"github.com/calico-lb/calico-lb/workload/config"
)

// Peer is one BGP neighbour as the speaker dials it.
type Peer struct {
	config.Peer
	LocalAS  uint32
	Password string // TCP MD5, read from the password file; never logged
}

// PeerStatus is one session, for /v1/bgp and metrics.
type PeerStatus = lbapi.PeerStatus

// gobgp is the part of GoBGP's server the speaker drives. One goroutine
// (BGP.run) makes every call, so calls never race each other; tests put a
// recorder here.
type gobgp interface {
	AddPeer(ctx context.Context, p *api.Peer) error
	DeletePeer(ctx context.Context, addr netip.Addr) error
	UpdatePeer(ctx context.Context, p *api.Peer) error
	EnablePeer(ctx context.Context, addr netip.Addr) error
	AddPaths(paths []*apiutil.Path) error
	DeletePaths(paths []*apiutil.Path) error
	// Stop sends every peer a Cease and stops the server, once.
	Stop()
}

// BGP keeps an embedded GoBGP speaker's peers and routes equal to what it
// is given, changing only what changed: a reload that leaves a peer alone
// leaves its session up.
//
// What is wanted and what GoBGP has been told are kept apart: SetPeers
// and SetRoutes record the wanted state and return; one goroutine (run)
// brings GoBGP in line, one call at a time, and retries a call that
// failed with backoff, showing why in the peer's problem until it works.
//
// BFD is switched on for a peer only once its session is Established, and
// off again whenever the session leaves Established. The first avoids the
// flap FRR 8.4 causes when a BFD session exists before BGP comes up (it
// re-keys the BFD session at Established and sends a Down); the second
// avoids a GoBGP v4.8.0 bug where a BFD expiry while BGP is down queues a
// NOTIFICATION that kills the next session the moment it comes up. The
// switches come from the same goroutine, always for the peer's config in
// GoBGP and the latest wanted state, so a switch can neither overtake a
// reconfiguration nor land in reverse order.
type BGP struct {
	srv        gobgp
	log        *slog.Logger
	limitRetry time.Duration
	kick       chan struct{}
	stopped    context.Context // done once Stop is called
	stop       context.CancelFunc
	done       chan struct{} // closed when run returns

	mu           sync.Mutex
	peers        map[netip.Addr]*peerState
	routes       map[netip.Prefix]Route // wanted
	paths        map[netip.Prefix]*apiutil.Path
	applied      map[netip.Prefix]Route // what GoBGP announces
	routeProblem string
	routeRetry   retry
	observer     Observer
}

type peerState struct {
	want    Peer
	gone    bool  // no longer wanted: deleted from GoBGP, then forgotten
	applied *Peer // what GoBGP has; nil: not added
	state   bgp.FSMState
	since   time.Time
	bfdWant bool // what the session's state calls for
	bfdOn   bool // what GoBGP has been told
	// limited: GoBGP closed the session because the peer sent more than
	// MaxPrefixes routes; it is enabled again at enableAt.
	limited  bool
	enableAt time.Time
	problem  string // why the last call for this peer failed; "" once one works
	retry    retry
}

// retry spaces out the attempts after failures: 1 s, 2 s, 4 s … 30 s.
type retry struct {
	failures int
	at       time.Time
}

func (r *retry) failed(now time.Time) time.Duration {
	r.failures++
	d := min(time.Second<<min(r.failures-1, 5), 30*time.Second)
	r.at = now.Add(d)
	return d
}

func (r *retry) ok()                              { *r = retry{} }
func (r *retry) due(now time.Time) bool           { return !now.Before(r.at) }
func (r *retry) wait(now time.Time) time.Duration { return r.at.Sub(now) }

// LimitRetry is how long a session closed over its prefix limit stays
// closed before the speaker dials again: a router that still sends too
// much is closed again at once, one that was fixed comes back by itself.
const LimitRetry = time.Minute

// StartBGP starts a speaker with AS asn and the router ID routerID. It
// never listens on port 179: Calico's BIRD holds that port on the node.
func StartBGP(ctx context.Context, asn uint32, routerID netip.Addr, log *slog.Logger) (*BGP, error) {
	lvl := new(slog.LevelVar)
	lvl.Set(slog.LevelWarn)
	s := server.NewBgpServer(server.LoggerOption(log.With("component", "gobgp"), lvl))
	go s.Serve()
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: asn, RouterId: routerID.String(), ListenPort: -1}}); err != nil {
		s.Stop()
		return nil, fmt.Errorf("start BGP (AS %d, router ID %s): %w", asn, routerID, err)
	}
	// The speakers announce and never route: every path a peer sends is
	// rejected on import (a neighbor-set condition, which a path of our
	// own never matches: a default REJECT would drop those too), so a
	// spine that sends a full table, or a hostile peer, cannot fill the
	// speakers' RIB.
	if err := rejectReceived(ctx, s); err != nil {
		s.Stop()
		return nil, fmt.Errorf("reject received routes: %w", err)
	}
	b := newBGP(log, &gobgpServer{s: s})
	if err := s.WatchEvent(ctx, server.WatchEventMessageCallbacks{OnPeerUpdate: b.onPeer}, server.WatchPeer()); err != nil {
		b.Stop(ctx)
		return nil, err
	}
	return b, nil
}

// newBGP makes the bookkeeping of a speaker on srv and starts the
// goroutine that drives it.
func newBGP(log *slog.Logger, srv gobgp) *BGP {
	b := &BGP{srv: srv, log: log, kick: make(chan struct{}, 1), limitRetry: LimitRetry, done: make(chan struct{}),
		peers: map[netip.Addr]*peerState{}, routes: map[netip.Prefix]Route{}, paths: map[netip.Prefix]*apiutil.Path{},
		applied: map[netip.Prefix]Route{}, observer: noTest{}}
	b.stopped, b.stop = context.WithCancel(context.Background())
	go b.run()
	return b
}

// SetObserver has o hear the speaker's session and BFD changes and its
// announcements.
func (b *BGP) SetObserver(o Observer) {
	b.mu.Lock()
	b.observer = observer(o)
	b.mu.Unlock()
}

// SetPeers makes peers the wanted peers: new ones are added, gone ones
// deleted, changed ones re-added; the rest keep their sessions. A peer in
// keep keeps what was wanted for it before (its password could not be
// read: an established session is not dropped for that). It returns at
// once; GoBGP follows.
func (b *BGP) SetPeers(peers []Peer, keep []netip.Addr) {
	b.mu.Lock()
	want := map[netip.Addr]Peer{}
	for _, p := range peers {
		want[p.Address] = p
	}
	for addr, st := range b.peers {
		p, ok := want[addr]
		switch {
		case ok:
			st.want, st.gone = p, false
		case slices.Contains(keep, addr) && !st.gone:
		default:
			st.gone = true
		}
	}
	for addr, p := range want {
		if b.peers[addr] == nil {
			b.peers[addr] = &peerState{want: p, state: bgp.BGP_FSM_IDLE, since: time.Now()}
		}
	}
	b.mu.Unlock()
	b.wake()
}

// SetRoutes makes routes the wanted announcements. A route GoBGP cannot
// carry is refused before anything changes; otherwise it returns at once
// and GoBGP follows.
func (b *BGP) SetRoutes(routes []Route) error {
	want := make(map[netip.Prefix]Route, len(routes))
	paths := make(map[netip.Prefix]*apiutil.Path, len(routes))
	for _, r := range routes {
		p, err := path(r)
		if err != nil {
			return fmt.Errorf("route %s: %w", r.Prefix, err)
		}
		want[r.Prefix], paths[r.Prefix] = r, p
	}
	b.mu.Lock()
	b.routes, b.paths = want, paths
	b.mu.Unlock()
	b.wake()
	return nil
}

func (b *BGP) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *BGP) onPeer(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	addr := ev.Peer.State.NeighborAddress
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peers[addr]
	if p == nil || p.applied == nil {
		return
	}
	if ev.Peer.State.AdminState == api.PeerState_ADMIN_STATE_PFX_CT && !p.limited {
		p.limited, p.enableAt = true, time.Now().Add(b.limitRetry)
		b.log.Warn("BGP peer sent more routes than its max-prefixes: session closed; the speakers need none, so filter the routes the router sends them (or raise max-prefixes)",
			"peer", addr, "max-prefixes", p.applied.maxPrefixes(), "retry-in", b.limitRetry)
		b.wake()
	}
	if p.state == ev.Peer.State.SessionState {
		return
	}
	p.state, p.since = ev.Peer.State.SessionState, time.Now()
	b.log.Info("BGP session", "peer", addr, "state", stateName(p.state), "reason", ev.Peer.State.DisconnectMessage)
	detail := stateName(p.state)
	if why := ev.Peer.State.DisconnectMessage; why != "" && p.state != bgp.BGP_FSM_ESTABLISHED {
		detail += " (" + why + ")"
	}
	b.observer.Event("session", addr.String(), detail)
	if want := p.applied.BFD && p.state == bgp.BGP_FSM_ESTABLISHED; want != p.bfdWant {
		// GoBGP's loop is calling us: the run goroutine switches.
		p.bfdWant = want
		b.wake()
	}
}

func stateName(s bgp.FSMState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "BGP_FSM_"))
}

// Status lists the sessions, each with what stands in its way.
func (b *BGP) Status() []PeerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []PeerStatus
	for addr, p := range b.peers {
		if p.gone {
			continue
		}
		n := 0
		for pfx := range b.applied {
			if pfx.Addr().Is4() == addr.Is4() {
				n++
			}
		}
		ps := PeerStatus{Address: addr.String(), ASN: p.want.ASNumber, State: stateName(p.state), Since: p.since, BFD: p.bfdOn, Routes: n}
		switch {
		case p.limited:
			ps.Problem = fmt.Sprintf("closed: the peer sent more than max-prefixes %d routes; the speakers need none, so filter them on the router (or raise max-prefixes); dialling again %s after it closed", p.want.maxPrefixes(), b.limitRetry)
		case p.problem != "":
			ps.Problem = p.problem
		case b.routeProblem != "":
			ps.Problem = b.routeProblem
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// Stop withdraws every route at once (a Cease NOTIFICATION to each peer,
// which drops the routes learnt from this speaker) and stops the speaker.
// It returns when that is done or ctx ends, whichever is first: a peer that
// no longer answers must not hold up a shutdown past its bound.
func (b *BGP) Stop(ctx context.Context) {
	b.stop()
	select {
	case <-b.done:
	case <-ctx.Done():
		b.log.Warn("BGP stop: the last call into GoBGP has not returned; stopping anyway")
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		b.srv.Stop()
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		b.log.Warn("BGP stop: GoBGP's teardown outlasted the shutdown bound; going on without it", "error", ctx.Err())
	}
}

// gobgpServer is GoBGP's server behind the gobgp interface.
type gobgpServer struct{ s *server.BgpServer }

func (g *gobgpServer) AddPeer(ctx context.Context, p *api.Peer) error {
	return g.s.AddPeer(ctx, &api.AddPeerRequest{Peer: p})
}

func (g *gobgpServer) DeletePeer(ctx context.Context, a netip.Addr) error {
	return g.s.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()})
}

func (g *gobgpServer) UpdatePeer(ctx context.Context, p *api.Peer) error {
	_, err := g.s.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: p})
	return err
}

func (g *gobgpServer) EnablePeer(ctx context.Context, a netip.Addr) error {
	return g.s.EnablePeer(ctx, &api.EnablePeerRequest{Address: a.String()})
}

func (g *gobgpServer) AddPaths(paths []*apiutil.Path) error {
	_, err := g.s.AddPath(apiutil.AddPathRequest{Paths: paths})
	return err
}

func (g *gobgpServer) DeletePaths(paths []*apiutil.Path) error {
	return g.s.DeletePath(apiutil.DeletePathRequest{Paths: paths})
}

// Stop calls GoBGP's Stop alone: it runs StopBgp itself (the Cease to
// every peer) and then stops BFD; calling StopBgp first made Stop's own
// call fail and log an Error on every mode, AS or router-ID change.
func (g *gobgpServer) Stop() { g.s.Stop() }
