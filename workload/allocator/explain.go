package allocator

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

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

// inUse explains why ip cannot be given to req.
func (st *state) inUse(ip netip.Addr, owner int32, req *Request) error {
	g := st.group(owner)
	// Another tenant's Services, and their sharing key, are not this
	// Service's business: name neither.
	for _, h := range st.holders(owner) {
		if h.Namespace != req.Service.Namespace && (g == nil || !g.idx.pool.SharedAcrossNamespaces) {
			return errorf(ReasonIPInUse, "%s is in use by a Service of another namespace; request another address", ip)
		}
	}
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
