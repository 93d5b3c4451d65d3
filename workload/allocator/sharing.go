package allocator

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
)

// SharingMisses says why a request with a sharing key that holds asg
// joined none of the addresses already shared under its key: for each
// such address of a family asg took a fresh address of, which of its ports
// another Service holds, or that the backends differ. Services of other
// namespaces are not named. Empty when the request has no key, or joined.
func (a *Allocator) SharingMisses(req *Request, asg Assignment) []string {
	st := a.st
	if req.SharingKey == "" {
		return nil
	}
	var out []string
	for i, ip := range asg.IPs {
		if !ip.IsValid() {
			continue
		}
		f := FamilyOf(ip)
		// The address's own group is found directly; only a Service that
		// took a fresh address needs the scan of every group below.
		if st.joined(shareIdx{pool: asg.pools[i], ns: scope(asg.pools[i], req.Service), key: req.SharingKey, backend: req.BackendKey, fam: f}, ip) {
			continue
		}
		var others []*shareGroup
		for idx, groups := range st.shared {
			if idx.key != req.SharingKey || idx.fam != f {
				continue
			}
			for _, g := range groups {
				if g.ip != ip {
					others = append(others, g)
				}
			}
		}
		sort.Slice(others, func(i, j int) bool { return others[i].ip.Less(others[j].ip) })
		for _, g := range others {
			out = append(out, st.whyNotJoined(g, req))
		}
	}
	return out
}

// joined reports whether the group of idx on ip has other members.
func (st *state) joined(idx shareIdx, ip netip.Addr) bool {
	for _, g := range st.shared[idx] {
		if g.ip == ip {
			return len(g.services) > 1
		}
	}
	return false
}

func (st *state) whyNotJoined(g *shareGroup, req *Request) string {
	name := func(s ServiceKey) string {
		if s.Namespace == req.Service.Namespace {
			return s.String()
		}
		return "a Service in another namespace"
	}
	if g.idx.backend != req.BackendKey {
		return fmt.Sprintf("%s: its Services select other pods (with externalTrafficPolicy Local, Services share an address only with the same selector)", g.ip)
	}
	if req.Pool != "" && req.Pool != g.idx.pool.Name {
		return fmt.Sprintf("%s: it is in pool %q, and this Service requests pool %q", g.ip, g.idx.pool.Name, req.Pool)
	}
	if ok, why := g.idx.pool.admits(req.Service.Namespace, req.Labels); !ok {
		return fmt.Sprintf("%s: %s", g.ip, why)
	}
	for _, p := range req.Ports {
		if holder, taken := g.ports[p]; taken && holder != req.Service {
			return fmt.Sprintf("%s: port %s/%d is taken there by %s", g.ip, p.Protocol, p.Port, name(holder))
		}
	}
	return fmt.Sprintf("%s: not available to this Service", g.ip)
}

// An owner code is a svcs slot (>= 0) for an address held by one Service,
// or -(group id)-1 for a shared address.
func groupOwner(id int32) int32 { return -id - 1 }

// sharing is what a keyed Service needs to share: the key, the backend key
// and its ports (ports matter only when sharing).
type sharing struct {
	key, backend string
	ports        []Port
}

type shareIdx struct {
	pool         *pool
	ns           string // the namespace the key belongs to ("" in a pool shared across namespaces)
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

func newSharing(req *Request) *sharing {
	if req.SharingKey == "" {
		return nil
	}
	return &sharing{key: req.SharingKey, backend: req.BackendKey, ports: slices.Clone(req.Ports)}
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

// joinable returns a shared address of pool p and family f that req can
// join: same key and backend, disjoint ports.
func (st *state) joinable(p *pool, f Family, req *Request, avoid *[2]netip.Addr) *shareGroup {
	if req.SharingKey == "" {
		return nil
	}
	for _, g := range st.shared[shareIdx{pool: p, ns: scope(p, req.Service), key: req.SharingKey, backend: req.BackendKey, fam: f}] {
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

// newGroup opens a sharing group on ip with req as its first member.
func (st *state) newGroup(ip netip.Addr, p *pool, req *Request) *shareGroup {
	g := &shareGroup{
		ip:    ip,
		idx:   shareIdx{pool: p, ns: scope(p, req.Service), key: req.SharingKey, backend: req.BackendKey, fam: FamilyOf(ip)},
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

// evictPortHolders releases the later joiners of g that hold a port req
// (g's first holder) now wants, and records them for TakeEvicted: they get
// new addresses on their next pass.
func (st *state) evictPortHolders(g *shareGroup, req *Request) {
	for _, p := range req.Ports {
		if holder, taken := g.ports[p]; taken && holder != req.Service {
			st.release(holder)
			st.evicted = append(st.evicted, holder)
		}
	}
}

// TakeEvicted returns the Services that lost an address to its first
// holder since the last call (see keep), for the caller to allocate anew.
func (a *Allocator) TakeEvicted() []ServiceKey {
	out := a.st.evicted
	a.st.evicted = nil
	return out
}

// scope is the namespace a sharing key of svc belongs to in pool p: its
// own, unless the pool shares across namespaces.
func scope(p *pool, svc ServiceKey) string {
	if p.SharedAcrossNamespaces {
		return ""
	}
	return svc.Namespace
}

// accepts reports whether req may join the group (nil: an unshared address).
func (g *shareGroup) accepts(req *Request) bool {
	return g.compatible(req) && g.idx.ns == scope(g.idx.pool, req.Service)
}

// compatible reports whether req could share g's address, whichever
// namespace it is in: the same key and backend, and disjoint ports.
// Adoption asks only this (a share that exists stays); new joiners must
// also be in g's scope (accepts).
func (g *shareGroup) compatible(req *Request) bool {
	return g != nil && g.idx.key == req.SharingKey && g.idx.backend == req.BackendKey && portsFree(g, req.Ports, req.Service)
}
