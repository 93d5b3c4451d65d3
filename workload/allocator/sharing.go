package allocator

import (
	"fmt"
	"net/netip"
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
		if st.joined(shareIdx{pool: asg.pools[i], key: req.SharingKey, backend: req.BackendKey, fam: f}, ip) {
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
