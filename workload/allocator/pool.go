package allocator

import (
	"cmp"
	"math/big"
	"net/netip"
	"slices"
	"strings"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

type pool struct {
	Pool
	ranges   [2][]*prange // per family, in config order
	capacity [2]*big.Int  // addresses that may be handed out, per family
	inUse    [2]int       // addresses held, per family
	// cur is the index in ranges of the range fresh addresses come from,
	// per family: next-fit goes through a pool's ranges in order, as if
	// they were one, before it wraps to the first.
	cur [2]int
}

type prange struct {
	r    iprange.Range
	base iprange.U128 // r.First as an integer, cached: conversions were a quarter of a cycle
	v4   bool
	pool *pool
	t    *trie
}

// off returns the offset of ip in the range.
func (r *prange) off(ip netip.Addr) iprange.U128 { return iprange.FromAddr(ip).Sub(r.base) }

// at returns the address at offset off.
func (r *prange) at(off iprange.U128) netip.Addr { return r.base.Add(off).ToAddr(r.v4) }

// sortPools orders pools for automatic allocation: explicit priorities
// (lower first), then pools without one; among equals, pools restricted to
// some namespaces or Services come before general ones (a dedicated pool
// should win for the Services it names), then by name, so the order never
// depends on map iteration.
func sortPools(ps []*pool) {
	rank := func(p *pool) int {
		if p.Priority <= 0 {
			return int(^uint(0) >> 1)
		}
		return p.Priority
	}
	slices.SortFunc(ps, func(a, b *pool) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		if a.restricted() != b.restricted() {
			if a.restricted() {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// next says which range of family f the next fresh address comes from,
// or nil when the pool has none: the current range while it has a free
// address ahead of its cursor, else the next range with a free address,
// which is then entered from its start (enter). Only when every other
// range is full does a range start again behind its own cursor, so an
// address released a moment ago waits while any other range has room. It
// only reads: asking (scoring pools, explaining a refusal) moves nothing.
func (p *pool) next(f Family) (r *prange, i int, enter bool) {
	rs := p.ranges[fi(f)]
	switch len(rs) {
	case 0:
		return nil, 0, false
	case 1:
		if rs[0].t.exhausted() {
			return nil, 0, false
		}
		return rs[0], 0, false
	}
	c := p.cur[fi(f)]
	if rs[c].t.ahead() {
		return rs[c], c, false
	}
	for k := 1; k <= len(rs); k++ {
		i := (c + k) % len(rs)
		if r := rs[i]; !r.t.exhausted() {
			return r, i, true
		}
	}
	return nil, 0, false
}

// enter makes range i of family f the current one, from its start: what
// an allocation from next's answer does when next said enter.
func (p *pool) enter(f Family, i int) {
	p.cur[fi(f)] = i
	p.ranges[fi(f)][i].t.seek(iprange.U128{})
}

// candidates lists the pools a request may allocate from, in order.
func (st *state) candidates(req *Request, out []*pool) ([]*pool, error) {
	if req.Pool != "" {
		p := st.byName[req.Pool]
		if p == nil {
			return nil, errorf(ReasonUnknownPool, "pool %q does not exist; pools are: %s", req.Pool, st.poolNames())
		}
		if !p.admitsReq(req) {
			_, why := p.admits(req.Service.Namespace, req.Labels)
			return nil, errorf(ReasonNotAdmitted, "%s", why)
		}
		return append(out, p), nil
	}
	for _, p := range st.pools {
		if p.AutoAssign && p.admitsReq(req) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, st.noPool(req)
	}
	return out, nil
}

func (p *pool) admitsReq(req *Request) bool {
	if len(p.Namespaces) > 0 && !slices.Contains(p.Namespaces, req.Service.Namespace) {
		return false
	}
	return p.Selector == nil || p.Selector.Matches(req.Labels)
}
