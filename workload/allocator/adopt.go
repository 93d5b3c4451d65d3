package allocator

import "net/netip"

// allocateExplicit serves a request for specific addresses: all of them or
// none.
func (st *state) allocateExplicit(req *Request) (int32, error) {
	var rngs [2]*prange
	var groups [2]*shareGroup
	for i, ip := range req.IPs {
		r := st.rangeOf(ip)
		if r == nil {
			return -1, errorf(ReasonOutsidePools, "%s is not in any pool (pools: %s); request an address inside a pool or add it to one", ip, st.poolRanges())
		}
		p := r.pool
		if req.Pool != "" && p.Name != req.Pool {
			return -1, errorf(ReasonInvalidRequest, "%s is in pool %q, but the Service asks for pool %q; drop one of the two requests", ip, p.Name, req.Pool)
		}
		if ok, why := p.admits(req.Service.Namespace, req.Labels); !ok {
			return -1, errorf(ReasonNotAdmitted, "%s: %s", ip, why)
		}
		if owner, held := st.ownerOf(r, ip); held {
			g := st.group(owner)
			if !g.accepts(req) {
				return -1, st.inUse(ip, owner, req)
			}
			groups[i] = g
		} else if x, excluded := r.exclusion(ip); excluded {
			return -1, x.refuse(ip)
		}
		rngs[i] = r
	}
	slot := st.newSlot(req.Service, req)
	for i, ip := range req.IPs {
		st.hold(slot, ip, rngs[i], groups[i], req)
	}
	st.svcs[slot].orderPrimaryFirst(req.Families[0])
	return slot, nil
}

// hold records that slot holds ip, joining g if it is shared already.
// The address must be free or joinable.
func (st *state) hold(slot int32, ip netip.Addr, r *prange, g *shareGroup, req *Request) {
	e := &st.svcs[slot]
	i := e.len()
	off := r.off(ip)
	e.ips[i], e.rngs[i], e.offs[i] = ip, r, off
	if g != nil {
		g.join(req)
		return
	}
	owner := slot
	if req.SharingKey != "" {
		owner = groupOwner(st.newGroup(ip, r.pool, req).id)
	}
	if r.t.isForbidden(off) {
		// Excluded (the trie forbids nothing else inside the range).
		x, _ := r.exclusion(ip)
		st.offTrie[ip] = owner
		e.issues |= x.issue
	} else {
		r.t.set(off, owner)
	}
	r.pool.inUse[fi(FamilyOf(ip))]++
}

// restore puts back an assignment that was released a moment ago under the
// same lock; nothing can have taken its addresses in between.
func (st *state) restore(e svcEntry) int32 {
	req := e.request()
	slot, err := st.adopt(&req, e.ips[:e.len()])
	if err != nil {
		panic("allocator: restoring a just-released assignment failed: " + err.Error())
	}
	return slot
}

// Adopt records an assignment that already exists (a Service's status at
// start-up or on leadership change) without moving it. The addresses must
// lie in pools and must not clash with what was adopted before; an address
// that is merely no longer ideal (a buggy IP, a pool that no longer admits
// the Service) is kept and flagged in Assignment.Issues.
func (a *Allocator) Adopt(req *Request, ips []netip.Addr) (Assignment, error) {
	slot, err := a.st.adopt(req, ips)
	asg := a.st.assignment(slot)
	return asg, err
}

func (st *state) adopt(req *Request, ips []netip.Addr) (int32, error) {
	if len(ips) == 0 || len(ips) > 2 || (len(ips) == 2 && FamilyOf(ips[0]) == FamilyOf(ips[1])) {
		return -1, errorf(ReasonInvalidRequest, "%s: cannot adopt %s: a Service holds one or two addresses of different families", req.Service, joinAddrs(ips))
	}
	pos, h, found := st.index.lookup(req.Service, st.svcs)
	if found {
		cur := st.svcs[st.index.slots[pos].slot]
		if sameAddrs(cur.ips, ips) {
			return st.index.slots[pos].slot, nil
		}
		st.release(req.Service)
		next, err := st.adopt(req, ips)
		if err != nil {
			return st.restore(cur), err
		}
		return next, nil
	}
	var rngs [2]*prange
	var groups [2]*shareGroup
	for i, ip := range ips {
		r := st.rangeOf(ip)
		if r == nil {
			return -1, errorf(ReasonOutsidePools, "%s holds %s, which is not in any pool", req.Service, ip)
		}
		if owner, held := st.ownerOf(r, ip); held {
			// An address shared already stays shared: adoption restores
			// what the Services hold, even across namespaces in a pool
			// that no longer allows it (new joiners are then refused).
			g := st.group(owner)
			if !g.compatible(req) {
				return -1, st.inUse(ip, owner, req)
			}
			groups[i] = g
		}
		rngs[i] = r
	}
	slot := st.newSlot(req.Service, req)
	e := &st.svcs[slot]
	for i, ip := range ips {
		if g := groups[i]; g != nil && g.idx.ns != scope(g.idx.pool, req.Service) {
			e.issues |= IssueSharedAcrossNamespaces
		}
		st.hold(slot, ip, rngs[i], groups[i], req)
		if !rngs[i].pool.admitsReq(req) {
			e.issues |= IssueNotAdmitted
		}
	}
	if len(req.Families) > 0 {
		e.orderPrimaryFirst(req.Families[0])
	}
	// Nothing changed the index since the lookup: insert where it said.
	st.index.insertAt(pos, h, slot)
	return slot, nil
}
