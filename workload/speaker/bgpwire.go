package speaker

import (
	"context"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/calico-lb/calico-lb/workload/config"
)

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
