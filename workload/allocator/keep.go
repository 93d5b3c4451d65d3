package allocator

import (
	"net/netip"
	"slices"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// keep decides whether the current assignment still answers req, updating
// the sharing details in place when that moves nothing.
func (st *state) keep(slot int32, req *Request) bool {
	cur := &st.svcs[slot]
	if len(req.IPs) > 0 && !sameAddrs(cur.ips, req.IPs) {
		return false
	}
	st.dropUnwantedFamily(slot, req)
	for i, ip := range cur.ips {
		if !ip.IsValid() {
			continue
		}
		if req.Pool != "" && cur.rngs[i].pool.Name != req.Pool {
			return false
		}
		// The Service's labels may have changed so that its pool no longer
		// admits it: move it (if that fails it keeps the address, flagged).
		if !cur.rngs[i].pool.admitsReq(req) {
			return false
		}
		if !slices.Contains(req.Families, FamilyOf(ip)) {
			return false
		}
	}
	if req.Policy == SingleStack && (cur.len() != 1 || FamilyOf(cur.ips[0]) != req.Families[0]) {
		return false
	}
	// Sharing: the Service may change its key or ports only if that keeps
	// every shared address compatible with the other holders, except that
	// the address's first holder keeps it when it takes a port a later
	// joiner has: the joiner moves (evict), never the first holder.
	var takeBack []*shareGroup
	for i, ip := range cur.ips {
		if !ip.IsValid() {
			continue
		}
		owner, _ := st.ownerOf(cur.rngs[i], ip)
		g := st.group(owner)
		if g == nil || len(g.services) == 1 {
			continue
		}
		if g.idx.key != req.SharingKey || g.idx.backend != req.BackendKey {
			return false
		}
		if !portsFree(g, req.Ports, req.Service) {
			if g.services[0] != req.Service {
				return false
			}
			takeBack = append(takeBack, g)
		}
	}
	for _, g := range takeBack {
		st.evictPortHolders(g, req)
	}
	st.resetSharing(slot, req)
	// Every address is admitted again (checked above), and the primary
	// family may have changed (spec.ipFamilies reordered).
	cur.issues &^= IssueNotAdmitted
	cur.orderPrimaryFirst(req.Families[0])
	if req.Policy != SingleStack && len(req.IPs) == 0 && cur.len() < len(req.Families) {
		return st.addMissingFamily(slot, req) || req.Policy != RequireDualStack
	}
	return true
}

// dropUnwantedFamily releases the address of a family the Service no
// longer asks for (dual-stack turned single-stack) when it keeps one it
// does: the remaining family keeps its address, as Kubernetes keeps the
// primary ClusterIP, instead of the Service being renumbered.
func (st *state) dropUnwantedFamily(slot int32, req *Request) {
	cur := &st.svcs[slot]
	if len(req.IPs) > 0 || cur.len() != 2 {
		return
	}
	wanted := [2]bool{}
	for i, ip := range cur.ips {
		wanted[i] = slices.Contains(req.Families, FamilyOf(ip))
	}
	if wanted[0] == wanted[1] {
		return // both wanted, or neither: nothing to keep alone
	}
	drop := 0
	if wanted[0] {
		drop = 1
	}
	st.releaseIP(cur.svc, cur.rngs[drop], cur.ips[drop], cur.offs[drop])
	keep := 1 - drop
	cur.ips[0], cur.rngs[0], cur.offs[0] = cur.ips[keep], cur.rngs[keep], cur.offs[keep]
	cur.ips[1], cur.rngs[1], cur.offs[1] = netip.Addr{}, nil, iprange.U128{}
}

// addMissingFamily gives a dual-stack Service the family it lacks, from the
// pool of the address it has.
func (st *state) addMissingFamily(slot int32, req *Request) bool {
	cur := &st.svcs[slot]
	p := cur.rngs[0].pool
	for _, f := range req.Families {
		if f == FamilyOf(cur.ips[0]) {
			continue
		}
		if ok, _ := st.canServe(p, f, req, nil); !ok {
			return false
		}
		st.take(p, f, req, slot, nil)
	}
	cur.orderPrimaryFirst(req.Families[0])
	return true
}
