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
	}, func(svc *corev1.Service, asg allocator.Assignment) {
		if asg.Issues&allocator.IssueSharedAcrossNamespaces != 0 {
			// Kept as it was (moving it would cut its clients off), but
			// never silently: another tenant's Service holds its address.
			t.c.log.Warn("adopted a share across namespaces", "service", svc.Namespace+"/"+svc.Name, "ips", asg.List())
			t.c.events.post(svc, corev1.EventTypeWarning, "SharedAcrossNamespaces", "",
				"%s is shared with a Service of another namespace, which its pool does not allow (a share from before sharing was held to one namespace); it is kept so that no client is cut off: run the reallocate action for this Service to give it its own address",
				joinIPs(asg.List()))
		}
	})
	return adopted, len(t.outside)
}

// adoptExisting adopts the addresses in the status of every Service of the
// class, oldest Service first so that the oldest holder of a contested IP
// keeps it. It returns how many it adopted and the Services whose
// addresses lie outside every pool; clash reports the others it refused,
// and kept (if not nil) each Service adopted with an issue.
func adoptExisting(alloc *allocator.Allocator, all []*corev1.Service, class string, clash func(allocator.ServiceKey, []netip.Addr, error),
	kept func(*corev1.Service, allocator.Assignment)) (int, map[allocator.ServiceKey][]netip.Addr) {
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
		asg, err := alloc.Adopt(&req.Request, ips)
		var ae *allocator.Error
		switch {
		case err == nil:
			adopted++
			if asg.Issues != 0 && kept != nil {
				kept(svc, asg)
			}
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
