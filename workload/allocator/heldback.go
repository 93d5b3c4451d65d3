package allocator

import (
	"net/netip"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// While a pool change is held back, the Services it would move are listed
// for the operator, and applying it moves exactly those. A Service that
// gets an address in the meantime must not join that set unseen: it takes
// an address the new pools keep when one is free (allocateNew), and the
// controller lists it, by PendingLoss, when none is.

// holdBack records the pools of a change that SetPools held back.
func (st *state) holdBack(pools []Pool) {
	st.heldBack, _ = build(pools) // SetPools built them already: no error
}

// DropPending forgets a held-back change (the operator reverted the pools).
func (a *Allocator) DropPending() { a.st.heldBack = nil }

// PendingLoss returns the addresses of the Service that the held-back pool
// change would take away: none when nothing is held back.
func (a *Allocator) PendingLoss(svc ServiceKey) []netip.Addr {
	st := a.st
	if st.heldBack == nil {
		return nil
	}
	slot, ok := st.index.get(svc, st.svcs)
	if !ok {
		return nil
	}
	var out []netip.Addr
	for _, ip := range st.svcs[slot].ips {
		if ip.IsValid() && st.heldBack.rangeOf(ip) == nil {
			out = append(out, ip)
		}
	}
	return out
}

// free says which range of pool p the next fresh address of family f
// would come from, or nil: within the held-back change's pools while
// allocateNew prefers them. It only reads; claim is the allocation's.
func (st *state) free(p *pool, f Family) *prange {
	r, _ := st.pick(p, f)
	return r
}

// pick is free with what an allocation from it must do first: enter the
// range (pool.enter) at index i, or nothing when i is -1.
func (st *state) pick(p *pool, f Family) (r *prange, i int) {
	if st.within != nil {
		return st.freeWithinPool(p, f), -1
	}
	r, i, enter := p.next(f)
	if !enter {
		i = -1
	}
	return r, i
}

// claim is free for an allocation: the pool moves to the range it picks.
func (st *state) claim(p *pool, f Family) *prange {
	r, i := st.pick(p, f)
	if i >= 0 {
		p.enter(f, i)
	}
	return r
}

// freeWithinPool is the first range of p with a free address inside the
// held-back change's pools.
func (st *state) freeWithinPool(p *pool, f Family) *prange {
	for _, r := range p.ranges[fi(f)] {
		if _, ok := st.freeWithin(r, r.t.cursor); ok {
			return r
		}
	}
	return nil
}

// freeWithin returns the first free offset of r that a range of st.within
// also holds, at or after from, or else the first one before it.
func (st *state) freeWithin(r *prange, from iprange.U128) (iprange.U128, bool) {
	if r.t.exhausted() {
		return iprange.U128{}, false
	}
	var wrap iprange.U128
	found := false
	for _, w := range st.within.ranges[fi(FamilyOf(r.r.First))] {
		if !w.r.Overlaps(r.r) {
			continue
		}
		lo, hi := r.off(maxAddr(w.r.First, r.r.First)), r.off(minAddr(w.r.Last, r.r.Last))
		if from.Cmp(hi) <= 0 {
			start := lo
			if from.Cmp(lo) > 0 {
				start = from
			}
			if off, ok := r.t.firstFree(start, hi); ok {
				return off, true
			}
		}
		if !found && from.Cmp(lo) > 0 {
			if off, ok := r.t.firstFree(lo, hi); ok && off.Cmp(from) < 0 {
				wrap, found = off, true
			}
		}
	}
	return wrap, found
}

// takeWithin takes r's next free offset that st.within holds; free said
// there is one. The position moves on only when the address is ahead of
// it: an address the change keeps, behind the position, must not pull it
// back, or after a revert next-fit would hand out addresses released
// moments before while never-used ones are free.
func (st *state) takeWithin(r *prange, owner int32) iprange.U128 {
	off, ok := st.freeWithin(r, r.t.cursor)
	if !ok {
		panic("allocator: takeWithin called without a free address") // free said yes just before
	}
	r.t.set(off, owner)
	if off.Cmp(r.t.cursor) >= 0 {
		r.t.advance(off)
	}
	return off
}

func maxAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return b
	}
	return a
}

func minAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return a
	}
	return b
}
