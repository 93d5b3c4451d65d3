package allocator

import (
	"net/netip"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

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
