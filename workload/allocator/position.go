package allocator

import (
	"slices"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// Next-fit hands a released address out again only after its pool has gone
// round, so that stale DNS records and firewall rules do not reach a new
// Service at once. That needs the position to outlive the state it lives
// in: a reload builds a new state, and a restart or a new leader starts
// from the Services alone.

// carryPositions gives each range of st the position it had in old, where
// the range is still there (it may have been renamed, moved to another pool
// or grown around the position), and keeps each pool in the range it was
// filling.
func (st *state) carryPositions(old *state) {
	for f := range old.ranges {
		// Ranges a pool is filling go last, so that where two old ranges
		// land in one new range, the position being used wins.
		rs := slices.Clone(old.ranges[f])
		slices.SortStableFunc(rs, func(a, b *prange) int {
			return boolCmp(a.isCurrent(f), b.isCurrent(f))
		})
		for _, or := range rs {
			pos := or.at(or.t.cursor)
			nr := st.rangeOf(pos)
			if nr == nil {
				continue
			}
			nr.t.seek(nr.off(pos))
			nr.t.wrapped = or.t.wrapped && nr.r == or.r
			if or.isCurrent(f) {
				nr.pool.cur[f] = slices.Index(nr.pool.ranges[f], nr)
			}
		}
	}
}

// isCurrent reports whether r is the range its pool takes fresh addresses
// of family index f from.
func (r *prange) isCurrent(f int) bool {
	p := r.pool
	return len(p.ranges[f]) > 0 && p.ranges[f][p.cur[f]] == r
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// ResumeAfterHighest puts every range's position just past the highest
// address in use in it, and each pool in the last of its ranges that holds
// anything. A controller calls it once it has adopted the Services'
// addresses after a start or on winning leadership: the position is not
// stored anywhere but in the Services themselves, so that there is nothing
// to write on each allocation and nothing that can disagree with them, and
// since next-fit hands addresses out in rising order, the highest one in
// use is where the last controller stopped (until a range has wrapped:
// then the new one starts after the highest address in use, which may
// come sooner than the old one would have).
func (a *Allocator) ResumeAfterHighest() {
	st := a.st
	high := map[*prange]iprange.U128{}
	st.index.each(func(slot int32) {
		e := &st.svcs[slot]
		for i, r := range e.rngs {
			if r == nil {
				continue
			}
			if h, ok := high[r]; !ok || e.offs[i].Cmp(h) > 0 {
				high[r] = e.offs[i]
			}
		}
	})
	for _, p := range st.pools {
		for f, rs := range p.ranges {
			for i, r := range rs {
				h, ok := high[r]
				if !ok {
					continue
				}
				p.cur[f] = i
				if h == r.t.span {
					r.t.seek(iprange.U128{})
					r.t.wrapped = true
				} else {
					r.t.seek(h.AddSmall(1))
				}
			}
		}
	}
}
