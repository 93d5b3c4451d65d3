package allocator

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

func benchKey(i int) ServiceKey {
	return ServiceKey{Namespace: "bench", Name: fmt.Sprintf("svc-%d", i)}
}

// BenchmarkAllocate allocates one IP and releases it, with `used` addresses
// already held: the cost must not grow with use.
func BenchmarkAllocate(b *testing.B) {
	cases := []struct {
		name  string
		cidr  string
		fam   Family
		used  int
		avoid bool
	}{
		{"v4-16/used=0", "10.10.0.0/16", IPv4, 0, true},
		{"v4-16/used=1000", "10.10.0.0/16", IPv4, 1000, true},
		{"v4-16/used=10000", "10.10.0.0/16", IPv4, 10000, true},
		{"v4-16/used=60000", "10.10.0.0/16", IPv4, 60000, true},
		{"v6-64/used=100000", "fd00:10::/64", IPv6, 100000, false},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			a, err := New([]Pool{{Name: "bench", Ranges: []iprange.Range{iprange.MustParse(tc.cidr)}, AutoAssign: true, AvoidBuggyIPs: tc.avoid}})
			if err != nil {
				b.Fatal(err)
			}
			for i := range tc.used {
				if _, err := a.Allocate(&Request{Service: benchKey(i), Families: []Family{tc.fam}}); err != nil {
					b.Fatal(err)
				}
			}
			req := Request{Service: ServiceKey{Namespace: "bench", Name: "probe"}, Families: []Family{tc.fam}, Ports: []Port{{"TCP", 80}}}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := a.Allocate(&req); err != nil {
					b.Fatal(err)
				}
				a.Release(req.Service)
			}
			b.StopTimer()
			if u := a.Usage()[0].InUse(); u != tc.used {
				b.Fatalf("in use after the loop: %d, want %d", u, tc.used)
			}
		})
	}
}

// BenchmarkRestore adopts 50,000 existing assignments into empty pools, as
// the controller does at start-up and on leadership change.
func BenchmarkRestore(b *testing.B) {
	const n = 50000
	pools := []Pool{{Name: "restore", Ranges: []iprange.Range{iprange.MustParse("10.20.0.0/16")}, AutoAssign: true, AvoidBuggyIPs: true}}
	src, err := New(pools)
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]Request, n)
	ips := make([][]netip.Addr, n)
	for i := range reqs {
		reqs[i] = Request{Service: benchKey(i), Families: []Family{IPv4}, Ports: []Port{{"TCP", 443}}}
		asg, err := src.Allocate(&reqs[i])
		if err != nil {
			b.Fatal(err)
		}
		ips[i] = asg.List()
	}
	b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a, err := New(pools)
			if err != nil {
				b.Fatal(err)
			}
			a.Grow(n) // as the controller does: it has listed the Services
			for i := range reqs {
				if _, err := a.Adopt(&reqs[i], ips[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
