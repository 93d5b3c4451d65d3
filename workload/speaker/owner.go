package speaker

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/calico-lb/calico-lb/workload/config"
	"github.com/calico-lb/calico-lb/workload/lbservice"
)

// Member is a speaker the liveness layer currently sees alive.
type Member struct {
	Node       string
	AliveSince time.Time // since when it has been seen alive without a gap
}

// L2Owners decides, for l2 mode, which IPs this node owns: for each IP,
// exactly one owner among the live eligible speakers, chosen by rendezvous
// hashing of (node, IP). Every speaker computes the same answer from the
// same inputs, without coordination.
//
//   - Per IP, not per Service: Services sharing an IP have one owner.
//   - Spread: each IP picks the node with the highest hash, so IPs spread
//     evenly, and when a node goes only its IPs move.
//   - Eligible: the node is selected (speaker-node-selector), and for
//     externalTrafficPolicy Local it has a ready endpoint of the Service.
//   - No needless flapping: a node that (re)appears takes IPs from another
//     live node only once it has been alive for holdDown, so a node that
//     flaps cannot drag ownership along; an IP with no other candidate is
//     taken at once.
//
// It returns the IPs self owns, sorted.
func L2Owners(cfg *config.Config, self string, members []Member, nodes map[string]Node, services []*corev1.Service, endpoints EndpointsOf, now time.Time, holdDown time.Duration) ([]netip.Addr, error) {
	if cfg.Mode != config.ModeL2 {
		return nil, nil
	}
	var eligible []Member
	for _, m := range members {
		n, ok := nodes[m.Node]
		if !ok {
			continue
		}
		sel, err := Selected(cfg, n)
		if err != nil {
			return nil, err
		}
		if sel {
			eligible = append(eligible, m)
		}
	}
	owned := map[netip.Addr]bool{}
	for _, svc := range services {
		if !lbservice.Managed(svc, cfg.LoadBalancerClass) {
			continue
		}
		cands := eligible
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			eps := endpoints(svc.Namespace, svc.Name)
			cands = nil
			for _, m := range eligible {
				if hasLocalEndpoint(eps, m.Node) {
					cands = append(cands, m)
				}
			}
		}
		for _, ip := range lbservice.IngressOf(svc) {
			if poolOf(cfg, ip) == nil {
				continue
			}
			if Owner(ip, cands, now, holdDown) == self {
				owned[ip] = true
			}
		}
	}
	out := make([]netip.Addr, 0, len(owned))
	for ip := range owned {
		out = append(out, ip)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out, nil
}

// Owner is the owner of ip among candidates: the highest rendezvous hash
// among the settled ones (alive for holdDown), or among all of them when
// none is settled.
func Owner(ip netip.Addr, candidates []Member, now time.Time, holdDown time.Duration) string {
	best, bestScore := "", uint64(0)
	settledOnly := false
	for _, m := range candidates {
		if now.Sub(m.AliveSince) >= holdDown {
			settledOnly = true
			break
		}
	}
	for _, m := range candidates {
		if settledOnly && now.Sub(m.AliveSince) < holdDown {
			continue
		}
		if s := score(m.Node, ip); best == "" || s > bestScore || (s == bestScore && m.Node < best) {
			best, bestScore = m.Node, s
		}
	}
	return best
}

func score(node string, ip netip.Addr) uint64 {
	h := sha256.New()
	h.Write([]byte(node))
	h.Write([]byte{'#'})
	b := ip.As16()
	h.Write(b[:])
	var sum [32]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}
