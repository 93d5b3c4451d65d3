package allocator

import (
	"net/netip"
	"slices"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// Release frees everything the Service holds. It reports whether it held anything.
func (a *Allocator) Release(svc ServiceKey) bool {
	return a.st.release(svc)
}

func (st *state) release(svc ServiceKey) bool {
	slot, ok := st.index.del(svc, st.svcs)
	if !ok {
		return false
	}
	st.releaseEntry(slot)
	return true
}

// releaseEntry frees the addresses of a slot that is no longer indexed.
func (st *state) releaseEntry(slot int32) {
	e := &st.svcs[slot]
	for i, ip := range e.ips {
		if ip.IsValid() {
			st.releaseIP(e.svc, e.rngs[i], ip, e.offs[i])
		}
	}
	st.freeSlot(slot)
}

// releaseIP removes svc from the holders of ip and frees it when nobody is left.
func (st *state) releaseIP(svc ServiceKey, r *prange, ip netip.Addr, off iprange.U128) {
	owner, held := st.ownerAt(r, ip, off)
	if !held {
		return
	}
	if g := st.group(owner); g != nil {
		if i := slices.Index(g.services, svc); i >= 0 {
			g.services = slices.Delete(g.services, i, i+1)
		}
		dropPorts(g, svc)
		if len(g.services) > 0 {
			return
		}
		st.dropGroup(g)
	}
	if len(st.offTrie) > 0 && st.isOffTrie(ip) {
		delete(st.offTrie, ip)
	} else {
		r.t.clear(off)
	}
	r.pool.inUse[fi(FamilyOf(ip))]--
}
