package allocator

import (
	"math/big"
	"net/netip"
	"slices"
	"strings"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// Change describes what new pools would do to the current assignments.
type Change struct {
	// Orphans hold addresses that would be in no pool at all. Such a change
	// is held back unless forced.
	Orphans []Orphan
	// Flagged assignments stay where they are but would not be made under
	// the new pools (Issues says why); verify reports them.
	Flagged []Held
}

// Orphan is a Service and the addresses it would lose.
type Orphan struct {
	Service ServiceKey
	IPs     []netip.Addr
}

func (o Orphan) String() string { return o.Service.String() + " (" + joinAddrs(o.IPs) + ")" }

// Summary names the orphaned Services, for status lines and events.
func (c Change) Summary() string {
	s := make([]string, len(c.Orphans))
	for i, o := range c.Orphans {
		s[i] = o.String()
	}
	return strings.Join(s, ", ")
}

// CheckPools reports what SetPools(pools) would do, changing nothing.
func (a *Allocator) CheckPools(pools []Pool) (Change, error) {
	_, ch, err := a.st.rebuild(pools)
	return ch, err
}

// SetPools replaces the pools. Assignments that still lie in a pool keep
// their addresses (a pool may be renamed, split or grown under them). If
// some address would lie in no pool, the change is held back with
// ErrHeldBack, and the old pools stay in force, unless force is set: then
// those addresses are dropped and the Services that lost them are listed in
// Change.Orphans, for the caller to allocate them again.
func (a *Allocator) SetPools(pools []Pool, force bool) (Change, error) {
	next, ch, err := a.st.rebuild(pools)
	if err != nil {
		return ch, err
	}
	if len(ch.Orphans) > 0 && !force {
		a.st.holdBack(pools)
		return ch, ErrHeldBack
	}
	a.st = next
	return ch, nil
}

// rebuild adopts every current assignment into a fresh state for pools.
func (st *state) rebuild(pools []Pool) (*state, Change, error) {
	next, err := build(pools)
	if err != nil {
		return nil, Change{}, err
	}
	(&Allocator{st: next}).Grow(st.index.len())
	next.carryPositions(st)
	var ch Change
	// Adopt in a fixed order so that the outcome (and any error) does not
	// depend on map iteration.
	keys := make([]ServiceKey, 0, st.index.len())
	st.index.each(func(slot int32) { keys = append(keys, st.svcs[slot].svc) })
	slices.SortFunc(keys, compareKeys)
	for _, k := range keys {
		slot, _ := st.index.get(k, st.svcs)
		e := &st.svcs[slot]
		req := e.request()
		var keep, lost []netip.Addr
		for _, ip := range e.ips {
			if !ip.IsValid() {
				continue
			}
			if next.rangeOf(ip) == nil {
				lost = append(lost, ip)
			} else {
				keep = append(keep, ip)
			}
		}
		if len(lost) > 0 {
			ch.Orphans = append(ch.Orphans, Orphan{Service: k, IPs: lost})
		}
		if len(keep) == 0 {
			continue
		}
		req.Families = req.Families[:0]
		for _, ip := range keep {
			req.Families = append(req.Families, FamilyOf(ip))
		}
		slot, err := next.adopt(&req, keep)
		if err != nil {
			// Sharing rules do not depend on pools, so this cannot happen.
			return nil, ch, err
		}
		if e := &next.svcs[slot]; e.issues != 0 {
			ch.Flagged = append(ch.Flagged, e.held())
		}
	}
	return next, ch, nil
}

func compareKeys(a, b ServiceKey) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// Grow makes room for n more Services, so that adopting a known number of
// them (the controller lists all Services before it adopts their addresses)
// does not reallocate over and over.
func (a *Allocator) Grow(n int) {
	st := a.st
	st.svcs = slices.Grow(st.svcs, n)
	st.index.reserve(st.index.len() + n)
}

// Get returns the Service's assignment.
func (a *Allocator) Get(svc ServiceKey) (Assignment, bool) {
	slot, ok := a.st.index.get(svc, a.st.svcs)
	if !ok {
		return Assignment{}, false
	}
	return a.st.svcs[slot].assignment(), true
}

// Holders returns the Services holding ip.
func (a *Allocator) Holders(ip netip.Addr) []ServiceKey {
	r := a.st.rangeOf(ip)
	if r == nil {
		return nil
	}
	owner, held := a.st.ownerOf(r, ip)
	if !held {
		return nil
	}
	return slices.Clone(a.st.holders(owner))
}

// Assignments returns every assignment, sorted by Service.
func (a *Allocator) Assignments() []Held {
	out := make([]Held, 0, a.st.index.len())
	a.st.index.each(func(slot int32) { out = append(out, a.st.svcs[slot].held()) })
	slices.SortFunc(out, func(x, y Held) int { return compareKeys(x.Service, y.Service) })
	return out
}

// PoolUsage is a pool's capacity and use, per family.
type PoolUsage struct {
	Name       string
	Ranges     []iprange.Range
	AutoAssign bool
	// Capacity counts the addresses that may be handed out (without .0 and
	// .255 when the pool avoids them). An IPv6 /64 holds 2^64, so it is a
	// big.Int; CapacityFloat is for metrics.
	CapacityV4, CapacityV6 *big.Int
	InUseV4, InUseV6       int
}

// Capacity is the total over both families.
func (u PoolUsage) Capacity() *big.Int { return new(big.Int).Add(u.CapacityV4, u.CapacityV6) }

// CapacityFloat is Capacity as a float64, for Prometheus gauges.
func (u PoolUsage) CapacityFloat() float64 {
	f, _ := new(big.Float).SetInt(u.Capacity()).Float64()
	return f
}

// InUse is the number of addresses held over both families.
func (u PoolUsage) InUse() int { return u.InUseV4 + u.InUseV6 }

// Usage returns every pool's usage in allocation order.
func (a *Allocator) Usage() []PoolUsage {
	out := make([]PoolUsage, len(a.st.pools))
	for i, p := range a.st.pools {
		out[i] = PoolUsage{
			Name:       p.Name,
			Ranges:     slices.Clone(p.Ranges),
			AutoAssign: p.AutoAssign,
			CapacityV4: new(big.Int).Set(p.capacity[0]),
			CapacityV6: new(big.Int).Set(p.capacity[1]),
			InUseV4:    p.inUse[0],
			InUseV6:    p.inUse[1],
		}
	}
	return out
}

// PoolOf returns the name of the pool holding ip, or "".
func (a *Allocator) PoolOf(ip netip.Addr) string {
	if r := a.st.rangeOf(ip); r != nil {
		return r.pool.Name
	}
	return ""
}
