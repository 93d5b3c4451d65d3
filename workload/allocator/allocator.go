package allocator

import (
	"cmp"
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
// and deterministic without a lock on every call; a lock here would cost
// as much as the allocation itself.
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
	// heldBack holds the pools of a held-back change, while there is one
	// (an empty state: only its ranges are used).
	heldBack *state

	// offTrie holds the owners of addresses that are held but that the trie
	// forbids: .0/.255 addresses adopted after avoid-buggy-ips was turned on.
	offTrie map[netip.Addr]int32
}

// An owner code is a svcs slot (>= 0) for an address held by one Service,
// or -(group id)-1 for a shared address.
func groupOwner(id int32) int32 { return -id - 1 }

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

// svcEntry is one Service's assignment.
type svcEntry struct {
	svc    ServiceKey
	ips    [2]netip.Addr // primary family first; zero: none
	rngs   [2]*prange
	offs   [2]iprange.U128 // offset of each address in its range
	issues Issue
	labels map[string]string
	share  *sharing // nil unless the Service has a sharing key
}

// sharing is what a keyed Service needs to share: the key, the backend key
// and its ports (ports matter only when sharing).
type sharing struct {
	key, backend string
	ports        []Port
}

type shareIdx struct {
	pool         *pool
	key, backend string
	fam          Family
}

type shareGroup struct {
	id       int32
	ip       netip.Addr
	idx      shareIdx
	services []ServiceKey
	ports    map[Port]ServiceKey
}

// fi is the index of a family in per-family arrays.
func fi(f Family) int {
	if f == IPv6 {
		return 1
	}
	return 0
}

func (e *svcEntry) key() string {
	if e.share == nil {
		return ""
	}
	return e.share.key
}

func (e *svcEntry) backend() string {
	if e.share == nil {
		return ""
	}
	return e.share.backend
}

func (e *svcEntry) ports() []Port {
	if e.share == nil {
		return nil
	}
	return e.share.ports
}

func (e *svcEntry) len() int {
	switch {
	case !e.ips[0].IsValid():
		return 0
	case !e.ips[1].IsValid():
		return 1
	}
	return 2
}

// fill writes the entry's assignment into asg (in place: see Allocate).
func (e *svcEntry) fill(asg *Assignment) {
	asg.IPs, asg.Issues = e.ips, e.issues
	for i, r := range e.rngs {
		if r != nil {
			asg.pools[i] = r.pool
		}
	}
}

func (e *svcEntry) assignment() Assignment {
	var asg Assignment
	e.fill(&asg)
	return asg
}

func (e *svcEntry) held() Held { return Held{Service: e.svc, Assignment: e.assignment()} }

func (e *svcEntry) orderPrimaryFirst(primary Family) {
	if e.ips[1].IsValid() && FamilyOf(e.ips[1]) == primary {
		e.ips[0], e.ips[1] = e.ips[1], e.ips[0]
		e.rngs[0], e.rngs[1] = e.rngs[1], e.rngs[0]
		e.offs[0], e.offs[1] = e.offs[1], e.offs[0]
	}
}

// request rebuilds the sharing part of the request an entry was made for.
func (e *svcEntry) request() Request {
	r := Request{Service: e.svc, Labels: e.labels, SharingKey: e.key(), BackendKey: e.backend(), Ports: e.ports()}
	for _, ip := range e.ips {
		if ip.IsValid() {
			r.Families = append(r.Families, FamilyOf(ip))
		}
	}
	return r
}

func newSharing(req *Request) *sharing {
	if req.SharingKey == "" {
		return nil
	}
	return &sharing{key: req.SharingKey, backend: req.BackendKey, ports: slices.Clone(req.Ports)}
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

// holders names the Services behind an owner code.
func (st *state) holders(owner int32) []ServiceKey {
	if owner >= 0 {
		return []ServiceKey{st.svcs[owner].svc}
	}
	return st.groups[-owner-1].services
}

// group returns the sharing group behind an owner code, or nil.
func (st *state) group(owner int32) *shareGroup {
	if owner >= 0 {
		return nil
	}
	return st.groups[-owner-1]
}

// newSlot reserves a svcs slot for svc.
// Slots on the free list are already cleared by freeSlot, so only the
// fields set here need writing (the entry is large; whole-struct copies
// were a tenth of an allocation).
func (st *state) newSlot(svc ServiceKey, req *Request) int32 {
	var i int32
	if k := len(st.freeSvc); k > 0 {
		i = st.freeSvc[k-1]
		st.freeSvc = st.freeSvc[:k-1]
	} else {
		st.svcs = append(st.svcs, svcEntry{})
		i = int32(len(st.svcs) - 1)
	}
	e := &st.svcs[i]
	e.svc, e.labels = svc, req.Labels
	if req.SharingKey != "" {
		e.share = newSharing(req)
	}
	return i
}

// freeSlot clears what newSlot and hold expect to find clear, and drops
// the references the GC should be able to collect.
func (st *state) freeSlot(i int32) {
	e := &st.svcs[i]
	e.ips, e.rngs, e.issues, e.labels, e.share = [2]netip.Addr{}, [2]*prange{}, 0, nil, nil
	st.freeSvc = append(st.freeSvc, i)
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

// keep decides whether the current assignment still answers req, updating
// the sharing details in place when that moves nothing.
func (st *state) keep(slot int32, req *Request) bool {
	cur := &st.svcs[slot]
	if len(req.IPs) > 0 && !sameAddrs(cur.ips, req.IPs) {
		return false
	}
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
	// every shared address compatible with the other holders.
	for i, ip := range cur.ips {
		if !ip.IsValid() {
			continue
		}
		owner, _ := st.ownerOf(cur.rngs[i], ip)
		g := st.group(owner)
		if g == nil || len(g.services) == 1 {
			continue
		}
		if g.idx.key != req.SharingKey || g.idx.backend != req.BackendKey || !portsFree(g, req.Ports, req.Service) {
			return false
		}
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

// resetSharing brings the sharing records of a kept assignment in line with
// req (key, backend, ports, labels) without moving any address.
func (st *state) resetSharing(slot int32, req *Request) {
	cur := &st.svcs[slot]
	cur.labels = req.Labels
	if cur.key() == req.SharingKey && cur.backend() == req.BackendKey && slices.Equal(cur.ports(), req.Ports) {
		return
	}
	for i, ip := range cur.ips {
		if !ip.IsValid() {
			continue
		}
		r := cur.rngs[i]
		owner, _ := st.ownerOf(r, ip)
		if g := st.group(owner); g != nil {
			if len(g.services) > 1 {
				// Compatible (checked by keep): only the ports change.
				dropPorts(g, req.Service)
				addPorts(g, req.Ports, req.Service)
				continue
			}
			st.dropGroup(g)
		}
		// Sole holder: re-home the address under the new key.
		owner = slot
		if req.SharingKey != "" {
			owner = groupOwner(st.newGroup(ip, r.pool, req).id)
		}
		st.setOwnerOf(r, ip, owner)
	}
	cur.share = newSharing(req)
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
		r0 := st.free(p, req.Families[0])
		if r0 == nil {
			continue
		}
		var r1 *prange
		if want == 2 {
			if r1 = st.free(p, req.Families[1]); r1 == nil {
				continue
			}
		}
		slot := st.newSlot(req.Service, req)
		st.takeFresh(slot, r0, slot)
		if r1 != nil {
			st.takeFresh(slot, r1, slot)
		}
		return slot, true
	}
	return -1, false
}

// free returns the range of family f that the next fresh address comes
// from, or nil when the pool has none: the current range while it has a
// free address ahead of its cursor, else the next range with a free
// address, which is then entered from its start. Only when every other
// range is full does a range start again behind its own cursor, so an
// address released a moment ago waits while any other range has room.
func (p *pool) free(f Family) *prange {
	rs := p.ranges[fi(f)]
	switch len(rs) {
	case 0:
		return nil
	case 1:
		if rs[0].t.exhausted() {
			return nil
		}
		return rs[0]
	}
	c := p.cur[fi(f)]
	if rs[c].t.ahead() {
		return rs[c]
	}
	for k := 1; k <= len(rs); k++ {
		i := (c + k) % len(rs)
		if r := rs[i]; !r.t.exhausted() {
			p.cur[fi(f)] = i
			r.t.seek(iprange.U128{})
			return r
		}
	}
	return nil
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

// noPool explains why no pool serves a request automatically.
func (st *state) noPool(req *Request) error {
	if len(st.pools) == 0 {
		return errorf(ReasonNoPool, "no pools are configured; set the pools option")
	}
	var why []string
	for _, p := range st.pools {
		switch ok, reason := p.admits(req.Service.Namespace, req.Labels); {
		case !p.AutoAssign:
			why = append(why, fmt.Sprintf("pool %q has auto-assign off (request it with the calico-lb.io/address-pool annotation)", p.Name))
		case !ok:
			why = append(why, reason)
		}
	}
	return errorf(ReasonNoPool, "no pool serves %s automatically: %s", req.Service, strings.Join(why, "; "))
}

func (st *state) exhausted(cands []*pool, fams []Family, req *Request) error {
	var parts []string
	for _, p := range cands {
		for _, f := range fams {
			if len(p.ranges[fi(f)]) == 0 {
				parts = append(parts, fmt.Sprintf("pool %q has no %s addresses", p.Name, f))
			} else if ok, _ := st.canServe(p, f, req, nil); !ok {
				parts = append(parts, fmt.Sprintf("pool %q has no free %s address (%d of %s in use)", p.Name, f, p.inUse[fi(f)], p.capacity[fi(f)]))
			}
		}
	}
	what := fams[0].String() + " address"
	if len(fams) == 2 {
		what = "IPv4 and IPv6 addresses from one pool"
	}
	fix := "add addresses to the pool (juju config calico-lb pools=…) or delete Services that no longer need theirs"
	if others := st.withFree(cands, fams, req); len(others) > 0 {
		fix += fmt.Sprintf(", or request %s, which %s free addresses, with the calico-lb.io/address-pool annotation",
			strings.Join(others, " or "), map[bool]string{true: "has", false: "have"}[len(others) == 1])
	}
	return errorf(ReasonExhausted, "no %s for %s: %s; %s", what, req.Service, strings.Join(parts, "; "), fix)
}

// withFree names the pools besides cands that admit req and have a free
// address of every family in fams: where an exhausted request could go.
func (st *state) withFree(cands []*pool, fams []Family, req *Request) []string {
	var out []string
	for _, p := range st.pools {
		if slices.Contains(cands, p) {
			continue
		}
		if ok, _ := p.admits(req.Service.Namespace, req.Labels); !ok {
			continue
		}
		free := true
		for _, f := range fams {
			free = free && st.free(p, f) != nil
		}
		if free {
			out = append(out, fmt.Sprintf("pool %q", p.Name))
		}
	}
	return out
}

// canServe reports whether pool p can give family f to req, and the shared
// address it would join, if any (nil: a fresh address).
func (st *state) canServe(p *pool, f Family, req *Request, avoid *[2]netip.Addr) (bool, *shareGroup) {
	if g := st.joinable(p, f, req, avoid); g != nil {
		return true, g
	}
	return st.free(p, f) != nil, nil
}

// joinable returns a shared address of pool p and family f that req can
// join: same key and backend, disjoint ports.
func (st *state) joinable(p *pool, f Family, req *Request, avoid *[2]netip.Addr) *shareGroup {
	if req.SharingKey == "" {
		return nil
	}
	for _, g := range st.shared[shareIdx{pool: p, key: req.SharingKey, backend: req.BackendKey, fam: f}] {
		if avoid != nil && slices.Contains(avoid[:], g.ip) {
			continue
		}
		if st.within != nil && st.within.rangeOf(g.ip) == nil {
			continue // the held-back change would take it away
		}
		if portsFree(g, req.Ports, req.Service) {
			return g
		}
	}
	return nil
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
	r := st.free(p, f)
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

// newGroup opens a sharing group on ip with req as its first member.
func (st *state) newGroup(ip netip.Addr, p *pool, req *Request) *shareGroup {
	g := &shareGroup{
		ip:    ip,
		idx:   shareIdx{pool: p, key: req.SharingKey, backend: req.BackendKey, fam: FamilyOf(ip)},
		ports: make(map[Port]ServiceKey, len(req.Ports)),
	}
	if k := len(st.freeGrp); k > 0 {
		g.id = st.freeGrp[k-1]
		st.freeGrp = st.freeGrp[:k-1]
		st.groups[g.id] = g
	} else {
		g.id = int32(len(st.groups))
		st.groups = append(st.groups, g)
	}
	st.shared[g.idx] = append(st.shared[g.idx], g)
	g.join(req)
	return g
}

func (g *shareGroup) join(req *Request) {
	g.services = append(g.services, req.Service)
	addPorts(g, req.Ports, req.Service)
}

// dropGroup forgets a group; its address is then held by nobody or re-homed.
func (st *state) dropGroup(g *shareGroup) {
	list := st.shared[g.idx]
	if i := slices.Index(list, g); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(st.shared, g.idx)
	} else {
		st.shared[g.idx] = list
	}
	st.groups[g.id] = nil
	st.freeGrp = append(st.freeGrp, g.id)
}

func portsFree(g *shareGroup, ports []Port, self ServiceKey) bool {
	for _, p := range ports {
		if holder, taken := g.ports[p]; taken && holder != self {
			return false
		}
	}
	return true
}

func addPorts(g *shareGroup, ports []Port, svc ServiceKey) {
	for _, p := range ports {
		g.ports[p] = svc
	}
}

func dropPorts(g *shareGroup, svc ServiceKey) {
	for p, holder := range g.ports {
		if holder == svc {
			delete(g.ports, p)
		}
	}
}

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

// accepts reports whether req may join the group (nil: an unshared address).
func (g *shareGroup) accepts(req *Request) bool {
	return g != nil && g.idx.key == req.SharingKey && g.idx.backend == req.BackendKey && portsFree(g, req.Ports, req.Service)
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

// inUse explains why ip cannot be given to req.
func (st *state) inUse(ip netip.Addr, owner int32, req *Request) error {
	g := st.group(owner)
	if g == nil {
		return errorf(ReasonIPInUse, "%s is used by %s, which does not allow sharing; give both Services the same calico-lb.io/allow-shared-ip key", ip, st.svcs[owner].svc)
	}
	holders := make([]string, len(g.services))
	for i, s := range g.services {
		holders[i] = s.String()
	}
	switch {
	case req.SharingKey == "":
		return errorf(ReasonIPInUse, "%s is shared by %s with key %q; set calico-lb.io/allow-shared-ip: %q on this Service to join", ip, strings.Join(holders, ", "), g.idx.key, g.idx.key)
	case g.idx.key != req.SharingKey:
		return errorf(ReasonIPInUse, "%s is shared by %s with key %q, not %q", ip, strings.Join(holders, ", "), g.idx.key, req.SharingKey)
	case g.idx.backend != req.BackendKey:
		return errorf(ReasonIPInUse, "%s is shared by %s, whose externalTrafficPolicy or pod selector differs; Services sharing an IP with externalTrafficPolicy Local must select the same pods", ip, strings.Join(holders, ", "))
	}
	for _, p := range req.Ports {
		if holder, taken := g.ports[p]; taken && holder != req.Service {
			return errorf(ReasonIPInUse, "%s port %d/%s is already used by %s", ip, p.Port, p.Protocol, holder)
		}
	}
	return errorf(ReasonIPInUse, "%s is in use", ip)
}

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
	// The Service holds ip: its owner is in offTrie or else in the trie.
	owner, held := int32(0), false
	if len(st.offTrie) > 0 {
		owner, held = st.offTrie[ip]
	}
	if !held {
		owner, held = r.t.owner(off)
	}
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
			g := st.group(owner)
			if !g.accepts(req) {
				return -1, st.inUse(ip, owner, req)
			}
			groups[i] = g
		}
		rngs[i] = r
	}
	slot := st.newSlot(req.Service, req)
	e := &st.svcs[slot]
	for i, ip := range ips {
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

// validate checks the parts of a request that do not depend on pools.
func validate(req *Request) error {
	fams := req.Families
	if len(fams) == 0 || len(fams) > 2 || (len(fams) == 2 && fams[0] == fams[1]) {
		return errorf(ReasonInvalidRequest, "%s: spec.ipFamilies must list one family or both", req.Service)
	}
	if req.Policy == RequireDualStack && len(fams) != 2 {
		return errorf(ReasonInvalidRequest, "%s: ipFamilyPolicy RequireDualStack needs both IPv4 and IPv6 in spec.ipFamilies", req.Service)
	}
	if len(req.IPs) == 0 {
		return nil
	}
	if len(req.IPs) > 2 || (len(req.IPs) == 2 && FamilyOf(req.IPs[0]) == FamilyOf(req.IPs[1])) {
		return errorf(ReasonInvalidRequest, "%s requests %s; request at most one IPv4 and one IPv6 address", req.Service, joinAddrs(req.IPs))
	}
	for _, ip := range req.IPs {
		if !slices.Contains(fams, FamilyOf(ip)) {
			return errorf(ReasonFamilyMismatch, "%s requests %s, an %s address, but its spec.ipFamilies are %s; request an address of the Service's family", req.Service, ip, FamilyOf(ip), familyList(fams))
		}
	}
	switch {
	case req.Policy == SingleStack && len(req.IPs) > 1:
		return errorf(ReasonFamilyMismatch, "%s is SingleStack but requests two addresses; request one, or set ipFamilyPolicy to PreferDualStack or RequireDualStack", req.Service)
	case req.Policy == SingleStack && FamilyOf(req.IPs[0]) != fams[0]:
		return errorf(ReasonFamilyMismatch, "%s is SingleStack %s but requests %s", req.Service, fams[0], req.IPs[0])
	case req.Policy == RequireDualStack && len(req.IPs) != 2:
		return errorf(ReasonFamilyMismatch, "%s is RequireDualStack but requests only %s; request one IPv4 and one IPv6 address", req.Service, req.IPs[0])
	}
	return nil
}

func familyList(fs []Family) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.String()
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func joinAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

func sameAddrs(held [2]netip.Addr, ips []netip.Addr) bool {
	n := 0
	for _, ip := range held {
		if ip.IsValid() {
			n++
		}
	}
	if n != len(ips) {
		return false
	}
	for _, ip := range ips {
		if !slices.Contains(held[:], ip) {
			return false
		}
	}
	return true
}

func (st *state) poolNames() string {
	names := make([]string, 0, len(st.pools))
	for _, p := range st.pools {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}

func (st *state) poolRanges() string {
	var parts []string
	for _, p := range st.pools {
		rs := make([]string, len(p.Ranges))
		for i, r := range p.Ranges {
			rs[i] = r.String()
		}
		parts = append(parts, p.Name+" "+strings.Join(rs, " "))
	}
	if len(parts) == 0 {
		return "none configured"
	}
	return strings.Join(parts, "; ")
}
