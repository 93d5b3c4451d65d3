package controller

import (
	"errors"
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/calico-lb/calico-lb/workload/allocator"
)

// adoptAll restores the term's allocator from the Services' status.
func (t *term) adoptAll() (adopted, outside int) {
	all, _ := t.c.services.List(labels.Everything())
	adopted, t.outside = adoptExisting(t.alloc, all, t.active.LoadBalancerClass, func(sk allocator.ServiceKey, ips []netip.Addr, err error) {
		// Held by an older Service: this one is allocated afresh.
		t.c.log.Warn("cannot adopt", "service", sk, "ips", ips, "error", err)
	})
	return adopted, len(t.outside)
}

// adoptExisting adopts the addresses in the status of every Service of the
// class, oldest Service first so that the oldest holder of a contested IP
// keeps it. It returns how many it adopted and the Services whose
// addresses lie outside every pool; clash reports the others it refused.
func adoptExisting(alloc *allocator.Allocator, all []*corev1.Service, class string, clash func(allocator.ServiceKey, []netip.Addr, error)) (int, map[allocator.ServiceKey][]netip.Addr) {
	all = slices.Clone(all)
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i].CreationTimestamp, all[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return all[i].Namespace+"/"+all[i].Name < all[j].Namespace+"/"+all[j].Name
	})
	alloc.Grow(len(all))
	adopted, outside := 0, map[allocator.ServiceKey][]netip.Addr{}
	for _, svc := range all {
		ips := IngressOf(svc)
		if len(ips) == 0 || !Managed(svc, class) {
			continue
		}
		req, err := RequestFor(svc)
		if err != nil {
			// Keep its IPs anyway: the request is what is wrong, not the holding.
			req.Request = allocator.Request{Service: req.Service, Labels: svc.Labels, Families: familiesOf(ips)}
		}
		_, err = alloc.Adopt(&req.Request, ips)
		var ae *allocator.Error
		switch {
		case err == nil:
			adopted++
		case errors.As(err, &ae) && ae.Reason == allocator.ReasonOutsidePools:
			outside[req.Service] = ips
		case clash != nil:
			clash(req.Service, ips, err)
		}
	}
	return adopted, outside
}

func familiesOf(ips []netip.Addr) []allocator.Family {
	var out []allocator.Family
	for _, ip := range ips {
		out = append(out, allocator.FamilyOf(ip))
	}
	return out
}
