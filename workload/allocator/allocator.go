package allocator

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// Allocator is owned by one goroutine, like a Go map: it is not safe for
// concurrent use. The controller's allocation loop owns it and takes every
// allocation decision in order, while other goroutines do the slow API
// writes and read the snapshots it publishes. That keeps decisions serial
// and deterministic, and an allocation costs tens of nanoseconds, no more
// than taking a lock would.
type Allocator struct {
	st *state
}

// state is everything the allocator knows; SetPools builds a new one and
// swaps it in only when the change is accepted.
//
// Who holds an address is recorded in the trie leaf of the address (an
// owner code, see below), so the only per-Service map is index.
type state struct {
	pools  []*pool // in allocation order (sortPools)
	byName map[string]*pool
	ranges [2][]*prange // per family (fi), sorted by first address

	index   *svcIndex // Service -> slot in svcs
	svcs    []svcEntry
	freeSvc []int32

	groups  []*shareGroup // by group id
	freeGrp []int32
	shared  map[shareIdx][]*shareGroup

	// within, while set, limits fresh addresses to those that the pools of
	// a held-back change keep (see allocateNew).
	within *state
	// evicted lists Services that lost a shared address to its first
	// holder, until TakeEvicted.
	evicted []ServiceKey
	// heldBack holds the pools of a held-back change, while there is one
	// (an empty state: only its ranges are used).
	heldBack *state

	// offTrie holds the owners of addresses that are held but that the trie
	// forbids: .0/.255 addresses adopted after avoid-buggy-ips was turned on.
	offTrie map[netip.Addr]int32
}

// fi is the index of a family in per-family arrays.
func fi(f Family) int {
	if f == IPv6 {
		return 1
	}
	return 0
}

// ErrHeldBack is returned by SetPools when the change would take addresses
// that are in use out of every pool and force was not given.
var ErrHeldBack = errors.New("pool change held back: it would take addresses in use out of every pool")

// New returns an allocator serving pools.
func New(pools []Pool) (*Allocator, error) {
	st, err := build(pools)
	if err != nil {
		return nil, err
	}
	return &Allocator{st: st}, nil
}

func build(pools []Pool) (*state, error) {
	st := &state{
		byName:  make(map[string]*pool, len(pools)),
		index:   newSvcIndex(),
		shared:  map[shareIdx][]*shareGroup{},
		offTrie: map[netip.Addr]int32{},
	}
	var errs []string
	for _, in := range pools {
		if in.Name == "" {
			errs = append(errs, "a pool has no name")
			continue
		}
		if _, dup := st.byName[in.Name]; dup {
			errs = append(errs, fmt.Sprintf("pool %q is defined twice", in.Name))
			continue
		}
		if len(in.Ranges) == 0 {
			errs = append(errs, fmt.Sprintf("pool %q has no addresses", in.Name))
			continue
		}
		p := &pool{Pool: in, capacity: [2]*big.Int{new(big.Int), new(big.Int)}}
		p.Ranges = slices.Clone(in.Ranges)
		p.Namespaces = slices.Clone(in.Namespaces)
		for _, r := range p.Ranges {
			f := fi(FamilyOf(r.First))
			pr := &prange{r: r, base: iprange.FromAddr(r.First), v4: r.Is4(), pool: p, t: newTrie(r, p.AvoidBuggyIPs)}
			p.ranges[f] = append(p.ranges[f], pr)
			st.ranges[f] = append(st.ranges[f], pr)
			size := r.Size()
			if p.AvoidBuggyIPs {
				size.Sub(size, new(big.Int).SetUint64(r.AvoidedCount()))
			}
			p.capacity[f].Add(p.capacity[f], size)
		}
		st.byName[p.Name] = p
		st.pools = append(st.pools, p)
	}
	for f := range st.ranges {
		rs := st.ranges[f]
		slices.SortFunc(rs, func(a, b *prange) int { return a.r.First.Compare(b.r.First) })
		for i := 1; i < len(rs); i++ {
			if rs[i-1].r.Overlaps(rs[i].r) {
				errs = append(errs, fmt.Sprintf("pool %q range %s overlaps pool %q range %s", rs[i-1].pool.Name, rs[i-1].r, rs[i].pool.Name, rs[i].r))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	sortPools(st.pools)
	return st, nil
}

// rangeOf finds the range holding ip in O(log ranges).
func (st *state) rangeOf(ip netip.Addr) *prange {
	rs := st.ranges[fi(FamilyOf(ip))]
	i, _ := slices.BinarySearchFunc(rs, ip, func(r *prange, ip netip.Addr) int {
		if r.r.Last.Less(ip) {
			return -1
		}
		if ip.Less(r.r.First) {
			return 1
		}
		return 0
	})
	if i < len(rs) && rs[i].r.Contains(ip) {
		return rs[i]
	}
	return nil
}

// ownerOf returns the owner code of a held address.
func (st *state) ownerOf(r *prange, ip netip.Addr) (int32, bool) {
	return st.ownerAt(r, ip, r.off(ip))
}

// ownerAt is ownerOf for a caller that has the offset already.
func (st *state) ownerAt(r *prange, ip netip.Addr, off iprange.U128) (int32, bool) {
	if len(st.offTrie) > 0 {
		if o, ok := st.offTrie[ip]; ok {
			return o, true
		}
	}
	if r.t.isForbidden(off) {
		return 0, false
	}
	return r.t.owner(off)
}

// setOwnerOf changes the owner code of a held address.
func (st *state) setOwnerOf(r *prange, ip netip.Addr, owner int32) {
	if _, ok := st.offTrie[ip]; ok {
		st.offTrie[ip] = owner
		return
	}
	r.t.setOwner(r.off(ip), owner)
}

func (st *state) isOffTrie(ip netip.Addr) bool {
	_, ok := st.offTrie[ip]
	return ok
}

// Allocate gives the Service addresses that satisfy req. A Service that
// already holds a satisfying assignment keeps it (and gains a missing family
// when it can); one whose request changed gets new addresses, and keeps
// its old ones if the new request cannot be met.
func (a *Allocator) Allocate(req *Request) (asg Assignment, err error) {
	slot, err := a.st.allocate(req)
	if slot >= 0 {
		a.st.svcs[slot].fill(&asg)
	}
	return asg, err
}

// assignment returns the Assignment of a slot, or none for -1. Internal
// calls pass slots rather than Assignments, and the exported calls fill
// their result in place: copying the struct through every frame was a
// tenth of an allocation.
func (st *state) assignment(slot int32) Assignment {
	if slot < 0 {
		return Assignment{}
	}
	return st.svcs[slot].assignment()
}

func (st *state) allocate(req *Request) (int32, error) {
	if err := validate(req); err != nil {
		return -1, err
	}
	pos, h, ok := st.index.lookup(req.Service, st.svcs)
	if !ok {
		slot, err := st.allocateNew(req, nil)
		if err == nil {
			st.index.insertAt(pos, h, slot)
		}
		return slot, err
	}
	slot := st.index.slots[pos].slot
	old := st.svcs[slot] // before keep, which may update sharing details in place
	if st.keep(slot, req) {
		return slot, nil
	}
	st.release(req.Service)
	next, err := st.allocateNew(req, nil)
	if err != nil {
		// Keep what it had; the labels are the Service's current ones, so
		// the restored assignment is flagged if its pool no longer admits it.
		old.labels = req.Labels
		return st.restore(old), err
	}
	st.index.put(req.Service, next, st.svcs)
	return next, nil
}

// Reallocate moves a Service to new addresses (for example off a .0 address
// kept from before avoid-buggy-ips was set). Its current addresses stay held
// until the move succeeds, so it never gets them back.
func (a *Allocator) Reallocate(req *Request) (Assignment, error) {
	st := a.st
	if err := validate(req); err != nil {
		return Assignment{}, err
	}
	slot, ok := st.index.get(req.Service, st.svcs)
	if !ok {
		return Assignment{}, errorf(ReasonUnknownService, "%s holds no address to move", req.Service)
	}
	cur := st.svcs[slot]
	if len(req.IPs) > 0 {
		return cur.assignment(), errorf(ReasonExplicit, "%s requests %s explicitly; change its calico-lb.io/loadBalancerIPs annotation or spec.loadBalancerIP instead", req.Service, joinAddrs(req.IPs))
	}
	// Take the new addresses while the old ones are still held, then drop
	// the old ones.
	st.index.del(req.Service, st.svcs)
	next, err := st.allocateNew(req, &cur.ips)
	if err != nil {
		st.index.put(req.Service, slot, st.svcs)
		return cur.assignment(), err
	}
	st.releaseEntry(slot)
	st.index.put(req.Service, next, st.svcs)
	return st.assignment(next), nil
}

// allocateNew finds addresses for a Service that holds none and returns its
// new slot, which the caller indexes. avoid, when set, lists addresses it
// must not get (its current ones, on Reallocate).
func (st *state) allocateNew(req *Request, avoid *[2]netip.Addr) (int32, error) {
	if len(req.IPs) > 0 {
		return st.allocateExplicit(req)
	}
	if st.heldBack != nil {
		// A pool change is held back: an address it would keep first, so
		// that the Services it would move are the ones the operator was
		// shown. Failing that, any address (PendingLoss then lists it).
		st.within = st.heldBack
		slot, err := st.allocateAuto(req, avoid)
		st.within = nil
		if err == nil {
			return slot, nil
		}
	}
	return st.allocateAuto(req, avoid)
}

// allocateAuto is allocateNew for a Service that names no address.
func (st *state) allocateAuto(req *Request, avoid *[2]netip.Addr) (int32, error) {
	if req.SharingKey == "" && req.Pool == "" {
		// Fast path (most Services): nothing to share, so the best pool is
		// the first admitting one with every wanted family free.
		if slot, ok := st.allocateSimple(req); ok {
			return slot, nil
		}
	}
	var buf [8]*pool
	cands, err := st.candidates(req, buf[:0])
	if err != nil {
		return -1, err
	}
	fams := req.Families[:1]
	if req.Policy != SingleStack {
		fams = req.Families
	}
	// Prefer a pool that serves every wanted family, and among those the one
	// where the most families join an existing shared address; ties go to
	// the earlier pool.
	best, bestShared := -1, -1
	for i, p := range cands {
		shared, ok := 0, true
		for _, f := range fams {
			can, g := st.canServe(p, f, req, avoid)
			if !can {
				ok = false
				break
			}
			if g != nil {
				shared++
			}
		}
		if ok && shared > bestShared {
			best, bestShared = i, shared
		}
	}
	if best < 0 && req.Policy == PreferDualStack && len(fams) > 1 {
		// No pool has both families: settle for the primary one.
		fams = fams[:1]
		for i, p := range cands {
			can, g := st.canServe(p, fams[0], req, avoid)
			if can && (best < 0 || (g != nil && bestShared < 1)) {
				best, bestShared = i, 0
				if g != nil {
					bestShared = 1
				}
			}
		}
	}
	if best < 0 {
		return -1, st.exhausted(cands, fams, req)
	}
	p := cands[best]
	slot := st.newSlot(req.Service, req)
	for _, f := range fams {
		st.take(p, f, req, slot, avoid)
	}
	return slot, nil
}

// allocateSimple serves a request without sharing key or pool in one pass
// over the pools. It reports false when no pool has every wanted family,
// leaving fallbacks and error messages to the general path.
func (st *state) allocateSimple(req *Request) (int32, bool) {
	want := 1
	if req.Policy != SingleStack {
		want = len(req.Families)
	}
	for _, p := range st.pools {
		if !p.AutoAssign || !p.admitsReq(req) {
			continue
		}
		// Both families first, moving nothing: a pool that lacks one is
		// passed over as it was.
		r0, i0 := st.pick(p, req.Families[0])
		if r0 == nil {
			continue
		}
		var r1 *prange
		i1 := -1
		if want == 2 {
			if r1, i1 = st.pick(p, req.Families[1]); r1 == nil {
				continue
			}
		}
		if i0 >= 0 {
			p.enter(req.Families[0], i0)
		}
		slot := st.newSlot(req.Service, req)
		st.takeFresh(slot, r0, slot)
		if r1 != nil {
			if i1 >= 0 {
				p.enter(req.Families[1], i1)
			}
			st.takeFresh(slot, r1, slot)
		}
		return slot, true
	}
	return -1, false
}

// takeFresh gives slot the next free address of r, recorded under owner.
func (st *state) takeFresh(slot int32, r *prange, owner int32) netip.Addr {
	var off iprange.U128
	if st.within != nil {
		off = st.takeWithin(r, owner)
	} else {
		off, _ = r.t.take(owner)
	}
	ip := r.at(off)
	r.pool.inUse[fi(FamilyOf(ip))]++
	e := &st.svcs[slot]
	i := e.len()
	e.ips[i], e.rngs[i], e.offs[i] = ip, r, off
	return ip
}

// canServe reports whether pool p can give family f to req, and the shared
// address it would join, if any (nil: a fresh address).
func (st *state) canServe(p *pool, f Family, req *Request, avoid *[2]netip.Addr) (bool, *shareGroup) {
	if g := st.joinable(p, f, req, avoid); g != nil {
		return true, g
	}
	return st.free(p, f) != nil, nil
}

// take gives slot an address of family f from p (shared or fresh);
// canServe must have said yes.
func (st *state) take(p *pool, f Family, req *Request, slot int32, avoid *[2]netip.Addr) {
	e := &st.svcs[slot]
	i := e.len()
	if g := st.joinable(p, f, req, avoid); g != nil {
		g.join(req)
		r := st.rangeOf(g.ip)
		e.ips[i], e.rngs[i], e.offs[i] = g.ip, r, r.off(g.ip)
		return
	}
	r := st.claim(p, f)
	if r == nil {
		panic("allocator: take called without a free address") // canServe said yes just before
	}
	if req.SharingKey == "" {
		st.takeFresh(slot, r, slot)
		return
	}
	// A keyed Service opens a group others may join.
	ip := st.takeFresh(slot, r, 0)
	r.t.setOwner(e.offs[i], groupOwner(st.newGroup(ip, p, req).id))
}
