package speaker

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
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

// BGP keeps an embedded GoBGP speaker's peers and routes equal to what it
// is given, changing only what changed: a reload that leaves a peer alone
// leaves its session up.
//
// BFD is switched on for a peer only once its session is Established, and
// off again whenever the session leaves Established. The first avoids the
// flap FRR 8.4 causes when a BFD session exists before BGP comes up (it
// re-keys the BFD session at Established and sends a Down); the second
// avoids a GoBGP v4.8.0 bug where a BFD expiry while BGP is down queues a
// NOTIFICATION that kills the next session the moment it comes up.
//
// The switches are applied by one goroutine (switchBFD), in order, always
// to the latest wanted state: applied from a goroutine each, two quick
// state changes could land in reverse and leave BFD on while the session
// is down, the very case the switching exists to prevent.
type BGP struct {
	s   *server.BgpServer
	log *slog.Logger
	// updatePeer is s.UpdatePeer (a test of the switching replaces it).
	updatePeer func(context.Context, *api.UpdatePeerRequest) error
	// enablePeer is s.EnablePeer: it lets a peer closed over its prefix
	// limit dial again, limitRetry after it was closed.
	enablePeer func(context.Context, netip.Addr) error
	limitRetry time.Duration
	bfdKick    chan struct{}
	stopped    context.Context // done once Stop is called
	stop       context.CancelFunc

	mu      sync.Mutex
	peers   map[netip.Addr]*peerState
	routes  map[netip.Prefix]Route
	journal *Journal // nil: none kept
}

// SetJournal has the speaker record its session and BFD changes and its
// announcements in j.
func (b *BGP) SetJournal(j *Journal) {
	b.mu.Lock()
	b.journal = j
	b.mu.Unlock()
}

type peerState struct {
	cfg     Peer
	state   bgp.FSMState
	since   time.Time
	bfdWant bool // what the session's state calls for
	bfdOn   bool // what GoBGP has been told
	// limited: GoBGP closed the session because the peer sent more than
	// MaxPrefixes routes; it stays closed until limitRetry has passed.
	limited bool
}

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
	b := newBGP(log, func(ctx context.Context, r *api.UpdatePeerRequest) error {
		_, err := s.UpdatePeer(ctx, r)
		return err
	})
	b.s = s
	b.enablePeer = func(ctx context.Context, a netip.Addr) error {
		return s.EnablePeer(ctx, &api.EnablePeerRequest{Address: a.String()})
	}
	if err := s.WatchEvent(ctx, server.WatchEventMessageCallbacks{OnPeerUpdate: b.onPeer}, server.WatchPeer()); err != nil {
		b.stop()
		s.Stop()
		return nil, err
	}
	return b, nil
}

// newBGP makes the bookkeeping of a speaker and starts its BFD switcher.
func newBGP(log *slog.Logger, updatePeer func(context.Context, *api.UpdatePeerRequest) error) *BGP {
	b := &BGP{log: log, updatePeer: updatePeer, bfdKick: make(chan struct{}, 1), limitRetry: LimitRetry,
		peers: map[netip.Addr]*peerState{}, routes: map[netip.Prefix]Route{}}
	b.stopped, b.stop = context.WithCancel(context.Background())
	go b.switchBFD()
	return b
}

func (b *BGP) onPeer(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	addr := ev.Peer.State.NeighborAddress
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.peers[addr]
	if p == nil {
		return
	}
	if ev.Peer.State.AdminState == api.PeerState_ADMIN_STATE_PFX_CT && !p.limited {
		p.limited = true
		b.log.Warn("BGP peer sent more routes than its max-prefixes: session closed; the speakers need none, so filter the routes the router sends them (or raise max-prefixes)",
			"peer", addr, "max-prefixes", p.cfg.maxPrefixes(), "retry-in", b.limitRetry)
		time.AfterFunc(b.limitRetry, func() { b.retryLimited(addr, p) })
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
	b.journal.Record("session", addr.String(), detail)
	if want := p.cfg.BFD && p.state == bgp.BGP_FSM_ESTABLISHED; want != p.bfdWant {
		// UpdatePeer blocks on the server loop that is calling us: the
		// switcher does it.
		p.bfdWant = want
		b.kickBFD()
	}
}

// retryLimited lets a peer closed over its prefix limit dial again, unless
// it was reconfigured (a new session) or removed meanwhile.
func (b *BGP) retryLimited(addr netip.Addr, p *peerState) {
	b.mu.Lock()
	still := b.peers[addr] == p && p.limited
	p.limited = false
	b.mu.Unlock()
	if !still || b.stopped.Err() != nil {
		return
	}
	if err := b.enablePeer(b.stopped, addr); err != nil && b.stopped.Err() == nil {
		b.log.Warn("re-enable BGP peer after its prefix limit", "peer", addr, "error", err)
	}
}

func (b *BGP) kickBFD() {
	select {
	case b.bfdKick <- struct{}{}:
	default:
	}
}

// switchBFD brings each peer's BFD in line with what its session's state
// calls for, one UpdatePeer at a time (it changes BFD only; BGP stays up),
// until Stop.
func (b *BGP) switchBFD() {
	for {
		select {
		case <-b.stopped.Done():
			return
		case <-b.bfdKick:
		}
		for {
			addr, cfg, on, ok := b.nextBFDSwitch()
			if !ok {
				break
			}
			err := b.updatePeer(b.stopped, &api.UpdatePeerRequest{Peer: apiPeer(cfg, on)})
			b.mu.Lock()
			if p := b.peers[addr]; p != nil && reflect.DeepEqual(p.cfg, cfg) && err == nil {
				p.bfdOn = on
				b.journal.Record("bfd", addr.String(), map[bool]string{true: "on", false: "off"}[on])
			}
			b.mu.Unlock()
			if err != nil {
				if b.stopped.Err() == nil {
					b.log.Warn("switch BFD; trying again in a second", "peer", addr, "on", on, "error", err)
					time.AfterFunc(time.Second, b.kickBFD)
				}
				break
			}
		}
	}
}

// nextBFDSwitch returns a peer whose BFD is not as its session calls for
// (the lowest address first), with its config and the wanted state.
func (b *BGP) nextBFDSwitch() (netip.Addr, Peer, bool, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var best *peerState
	for _, p := range b.peers {
		if p.bfdWant != p.bfdOn && (best == nil || p.cfg.Address.Less(best.cfg.Address)) {
			best = p
		}
	}
	if best == nil {
		return netip.Addr{}, Peer{}, false, false
	}
	return best.cfg.Address, best.cfg, best.bfdWant, true
}

func stateName(s bgp.FSMState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "BGP_FSM_"))
}

// apiPeer is the GoBGP form of a peer.
func apiPeer(p Peer, bfd bool) *api.Peer {
	hold, keep := uint64(p.HoldTime), uint64(p.Keepalive)
	out := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASNumber, LocalAsn: p.LocalAS, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:           1, // GoBGP's default is 120 s
			IdleHoldTimeAfterReset: 2, // GoBGP's default idles 30 s after a reset, BFD-triggered ones too
			HoldTime:               hold,
			KeepaliveInterval:      keep,
		}},
		AfiSafis: []*api.AfiSafi{{
			Config: &api.AfiSafiConfig{Family: familyOf(p.Address), Enabled: true},
			// Counted before the import policy rejects them: what the
			// limit bounds is the memory GoBGP keeps them in.
			PrefixLimits: &api.PrefixLimit{Family: familyOf(p.Address), MaxPrefixes: uint32(p.maxPrefixes()), ShutdownThresholdPct: 80},
		}},
	}
	if p.Multihop > 1 {
		out.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.Multihop)}
	}
	if p.SourceAddress.IsValid() {
		out.Transport = &api.Transport{LocalAddress: p.SourceAddress.String()}
	}
	if bfd {
		us := uint32(p.BFDInterval) * 1000 // GoBGP takes microseconds
		out.Bfd = &api.BfdPeerConfig{Enabled: true, DesiredMinimumTxInterval: us, RequiredMinimumReceive: us, DetectionMultiplier: uint32(p.BFDMultiplier)}
	}
	return out
}

// maxPrefixes is the peer's limit in force: MaxPrefixes, or the default
// for a Peer not read from a file.
func (p Peer) maxPrefixes() int {
	if p.MaxPrefixes == 0 {
		return config.DefaultMaxPrefixes
	}
	return p.MaxPrefixes
}

func familyOf(a netip.Addr) *api.Family {
	if a.Is4() {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

// SetPeers makes the speaker's peers exactly peers: new ones are added,
// gone ones deleted, changed ones re-added; the rest keep their sessions.
func (b *BGP) SetPeers(ctx context.Context, peers []Peer) error {
	b.mu.Lock()
	want := map[netip.Addr]Peer{}
	for _, p := range peers {
		want[p.Address] = p
	}
	var add, del []Peer
	for addr, st := range b.peers {
		if p, keep := want[addr]; !keep || !reflect.DeepEqual(p, st.cfg) {
			del = append(del, st.cfg)
		}
	}
	for addr, p := range want {
		if st, have := b.peers[addr]; !have || !reflect.DeepEqual(p, st.cfg) {
			add = append(add, p)
		}
	}
	for _, p := range del {
		delete(b.peers, p.Address)
	}
	for _, p := range add {
		b.peers[p.Address] = &peerState{cfg: p, state: bgp.BGP_FSM_IDLE, since: time.Now()}
	}
	b.mu.Unlock()
	var errs []string
	for _, p := range del {
		if err := b.s.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
			errs = append(errs, fmt.Sprintf("delete peer %s: %v", p.Address, err))
		}
	}
	for _, p := range add {
		b.log.Info("BGP peer", "peer", p.Address, "as", p.ASNumber, "hold", p.HoldTime, "bfd", p.BFD, "md5", p.Password != "", "multihop", p.Multihop)
		if err := b.s.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, false)}); err != nil {
			errs = append(errs, fmt.Sprintf("add peer %s: %v", p.Address, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// SetRoutes makes the announced routes exactly routes. One goroutine
// calls it; the lock is not held across the calls into GoBGP, whose loop
// may be calling onPeer, which takes it.
func (b *BGP) SetRoutes(routes []Route) error {
	b.mu.Lock()
	have := b.routes
	b.mu.Unlock()
	want := map[netip.Prefix]Route{}
	for _, r := range routes {
		want[r.Prefix] = r
	}
	var add, del []*apiutil.Path
	var added, withdrawn []netip.Prefix // for the journal
	for pfx, r := range have {
		if w, keep := want[pfx]; !keep || !sameRoute(w, r) {
			p, err := path(r)
			if err != nil {
				return err
			}
			if !keep {
				del = append(del, p)
				withdrawn = append(withdrawn, pfx)
			}
		}
	}
	for pfx, r := range want {
		if old, had := have[pfx]; !had || !sameRoute(old, r) {
			p, err := path(r)
			if err != nil {
				return err
			}
			add = append(add, p) // a changed route replaces the old one
			added = append(added, pfx)
		}
	}
	if len(del) > 0 {
		if err := b.s.DeletePath(apiutil.DeletePathRequest{Paths: del}); err != nil {
			return fmt.Errorf("withdraw: %w", err)
		}
	}
	if len(add) > 0 {
		if _, err := b.s.AddPath(apiutil.AddPathRequest{Paths: add}); err != nil {
			return fmt.Errorf("announce: %w", err)
		}
	}
	b.mu.Lock()
	b.routes = want
	j := b.journal
	b.mu.Unlock()
	j.Routes(added, withdrawn)
	return nil
}

func sameRoute(a, b Route) bool {
	return a.Prefix == b.Prefix && a.NextHop == b.NextHop && a.LocalPref == b.LocalPref && slices.Equal(a.Communities, b.Communities)
}

// path is the GoBGP form of a route.
func path(r Route) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(r.Prefix)
	if err != nil {
		return nil, err
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0)}
	family := bgp.RF_IPv4_UC
	if r.Prefix.Addr().Is4() {
		nh, err := bgp.NewPathAttributeNextHop(r.NextHop)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	} else {
		family = bgp.RF_IPv6_UC
		mp, err := bgp.NewPathAttributeMpReachNLRI(family, []bgp.PathNLRI{{NLRI: nlri}}, r.NextHop)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, mp)
	}
	var std []uint32
	var large []*bgp.LargeCommunity
	for _, c := range r.Communities {
		if v, ok := c.Standard(); ok {
			std = append(std, v)
		} else if p, ok := c.Large(); ok {
			large = append(large, bgp.NewLargeCommunity(p[0], p[1], p[2]))
		}
	}
	if len(std) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(std))
	}
	if len(large) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(large))
	}
	if r.LocalPref != 0 {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(r.LocalPref))
	}
	return &apiutil.Path{Family: family, Nlri: nlri, Attrs: attrs}, nil
}

// Status lists the sessions.
func (b *BGP) Status() []PeerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []PeerStatus
	for addr, p := range b.peers {
		n := 0
		for pfx := range b.routes {
			if pfx.Addr().Is4() == addr.Is4() {
				n++
			}
		}
		ps := PeerStatus{Address: addr.String(), ASN: p.cfg.ASNumber, State: stateName(p.state), Since: p.since, BFD: p.bfdOn, Routes: n}
		if p.limited {
			ps.Problem = fmt.Sprintf("closed: the peer sent more than max-prefixes %d routes; the speakers need none, so filter them on the router (or raise max-prefixes); dialling again %s after it closed", p.cfg.maxPrefixes(), b.limitRetry)
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// Stop withdraws every route at once (a Cease NOTIFICATION to each peer,
// which drops the routes learnt from this speaker) and stops the speaker.
func (b *BGP) Stop(ctx context.Context) {
	b.stop()
	_ = b.s.StopBgp(ctx, &api.StopBgpRequest{})
	b.s.Stop()
}

// rejectReceived installs the global import policy that drops every path
// learnt from a peer.
func rejectReceived(ctx context.Context, s *server.BgpServer) error {
	if err := s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
		DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: "any-peer", List: []string{"0.0.0.0/0", "::/0"}}}); err != nil {
		return err
	}
	if err := s.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: "reject-received", Statements: []*api.Statement{{
		Name:       "from-any-peer",
		Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: "any-peer"}},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT},
	}}}}); err != nil {
		return err
	}
	return s.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies: []*api.Policy{{Name: "reject-received"}}, DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT}})
}
