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
//   - No needless flapping: a speaker that started more than holdDown after
//     the oldest live one (it restarted, or its node came back) takes IPs
//     only once it has been up for holdDown, so a crash-looping speaker
//     cannot drag ownership along; speakers that start together (a new
//     cluster) are all eligible at once, and an IP with no other candidate
//     is taken at once. Start times come from the speakers themselves, so
//     every speaker sees the same ones and decides the same owners.
//
// It returns the IPs self owns, sorted.
func L2Owners(cfg *config.Config, self string, members []Member, nodes map[string]Node, services []*corev1.Service, endpoints EndpointsOf, now time.Time, holdDown time.Duration) []netip.Addr {
	if cfg.Mode != config.ModeL2 {
		return nil
	}
	var eligible []Member
	for _, m := range members {
		n, ok := nodes[m.Node]
		if !ok {
			continue
		}
		if Selected(cfg, n) {
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
	return out
}

// Eligible reports whether member m may own IPs, given the oldest start
// among the live members: it started within holdDown of the oldest, or it
// has been up for holdDown.
func Eligible(m Member, oldest, now time.Time, holdDown time.Duration) bool {
	return m.AliveSince.Sub(oldest) <= holdDown || now.Sub(m.AliveSince) >= holdDown
}

// NextEligible is when the next member that is not eligible yet becomes
// so (zero if none is waiting), so the speaker can decide again right then.
func NextEligible(members []Member, now time.Time, holdDown time.Duration) time.Time {
	oldest := oldestStart(members)
	var next time.Time
	for _, m := range members {
		if !Eligible(m, oldest, now, holdDown) {
			if at := m.AliveSince.Add(holdDown); next.IsZero() || at.Before(next) {
				next = at
			}
		}
	}
	return next
}

func oldestStart(members []Member) time.Time {
	var oldest time.Time
	for _, m := range members {
		if oldest.IsZero() || m.AliveSince.Before(oldest) {
			oldest = m.AliveSince
		}
	}
	return oldest
}

// Owner is the owner of ip among candidates: the highest rendezvous hash
// among the eligible ones (see Eligible), or among all of them when none is.
func Owner(ip netip.Addr, candidates []Member, now time.Time, holdDown time.Duration) string {
	best, bestScore := "", uint64(0)
	oldest := oldestStart(candidates)
	anyEligible := false
	for _, m := range candidates {
		if Eligible(m, oldest, now, holdDown) {
			anyEligible = true
			break
		}
	}
	for _, m := range candidates {
		if anyEligible && !Eligible(m, oldest, now, holdDown) {
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
