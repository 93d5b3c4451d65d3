package allocator

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// labelSel is a test Selector: every key=value pair must be present.
type labelSel map[string]string

func (s labelSel) Matches(l map[string]string) bool {
	for k, v := range s {
		if l[k] != v {
			return false
		}
	}
	return true
}

func (s labelSel) String() string {
	var parts []string
	for k, v := range s {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func rngs(ss ...string) []iprange.Range {
	out := make([]iprange.Range, len(ss))
	for i, s := range ss {
		out[i] = iprange.MustParse(s)
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func svc(ns, name string) ServiceKey { return ServiceKey{Namespace: ns, Name: name} }

func v4req(ns, name string) *Request {
	return &Request{Service: svc(ns, name), Families: []Family{IPv4}, Ports: []Port{{"TCP", 80}}}
}

func mustNew(t *testing.T, pools ...Pool) *Allocator {
	t.Helper()
	a, err := New(pools)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustAlloc(t *testing.T, a *Allocator, req *Request) Assignment {
	t.Helper()
	asg, err := a.Allocate(req)
	if err != nil {
		t.Fatalf("Allocate(%s): %v", req.Service, err)
	}
	return asg
}

// wantErr checks that err is an *Error of reason r whose message contains all of subs.
func wantErr(t *testing.T, err error, r Reason, subs ...string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v, want reason %s", err, r)
	}
	if e.Reason != r {
		t.Fatalf("reason = %s (%v), want %s", e.Reason, err, r)
	}
	for _, s := range subs {
		if !strings.Contains(e.Msg, s) {
			t.Fatalf("error %q does not mention %q", e.Msg, s)
		}
	}
}

func TestNewRejectsBadPools(t *testing.T) {
	tests := []struct {
		pools []Pool
		err   string
	}{
		{[]Pool{{Name: "a", Ranges: rngs("10.0.0.0/24")}, {Name: "b", Ranges: rngs("10.0.0.128/25")}}, `pool "a" range 10.0.0.0/24 overlaps pool "b" range 10.0.0.128/25`},
		{[]Pool{{Name: "a", Ranges: rngs("10.0.0.0/24", "10.0.0.5-10.0.0.9")}}, "overlaps"},
		{[]Pool{{Name: "a", Ranges: rngs("10.0.0.0/24")}, {Name: "a", Ranges: rngs("10.0.1.0/24")}}, `pool "a" is defined twice`},
		{[]Pool{{Name: "a"}}, `pool "a" has no addresses`},
		{[]Pool{{Ranges: rngs("10.0.0.0/24")}}, "no name"},
	}
	for _, tc := range tests {
		_, err := New(tc.pools)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("New(%v) error = %v, want %q", tc.pools, err, tc.err)
		}
	}
	// v4 and v6 never overlap each other.
	mustNew(t, Pool{Name: "a", Ranges: rngs("0.0.0.0/0")}, Pool{Name: "b", Ranges: rngs("::/0")})
}

func TestAvoidBuggyIPs(t *testing.T) {
	a := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.0/22"), AutoAssign: true, AvoidBuggyIPs: true})
	u := a.Usage()[0]
	if u.CapacityV4.Int64() != 1024-8 {
		t.Fatalf("capacity of a /22 avoiding buggy IPs = %s, want 1016", u.CapacityV4)
	}
	seen := map[netip.Addr]bool{}
	for i := 0; ; i++ {
		asg, err := a.Allocate(v4req("ns", fmt.Sprint("s", i)))
		if err != nil {
			wantErr(t, err, ReasonExhausted, `pool "p"`, "1016 of 1016 in use")
			break
		}
		ip := asg.IPs[0]
		if iprange.IsBuggy(ip) {
			t.Fatalf("handed out %s with avoid-buggy-ips", ip)
		}
		if seen[ip] {
			t.Fatalf("%s handed out twice", ip)
		}
		seen[ip] = true
	}
	if len(seen) != 1016 {
		t.Fatalf("handed out %d addresses, want 1016", len(seen))
	}
	// An explicit request for a buggy address is refused with the fix.
	b := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.0/24"), AutoAssign: true, AvoidBuggyIPs: true})
	r := v4req("ns", "x")
	r.IPs = addrs("10.0.0.255")
	_, err := b.Allocate(r)
	wantErr(t, err, ReasonBuggyIP, "10.0.0.255", "avoid-buggy-ips: false")
	// Without avoid-buggy-ips, .0 is a normal address.
	c := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.0/24"), AutoAssign: true})
	if got := mustAlloc(t, c, v4req("ns", "x")).IPs[0]; got != netip.MustParseAddr("10.0.0.0") {
		t.Fatalf("first address without avoid-buggy-ips = %s, want 10.0.0.0", got)
	}
}

func TestAvoidSubnetRouterAnycast(t *testing.T) {
	v6req := func(name string) *Request {
		return &Request{Service: svc("ns", name), Families: []Family{IPv6}}
	}
	a := mustNew(t, Pool{Name: "p", Ranges: rngs("fd00:208::/126", "fd00:209::/127"), AutoAssign: true, AvoidBuggyIPs: true})
	if got := a.Usage()[0].CapacityV6.Int64(); got != 3+2 {
		t.Fatalf("capacity = %d, want 5: a /126 without its anycast address and a whole /127", got)
	}
	var got []string
	for i := 0; ; i++ {
		asg, err := a.Allocate(v6req(fmt.Sprint("s", i)))
		if err != nil {
			wantErr(t, err, ReasonExhausted, "5 of 5 in use")
			break
		}
		got = append(got, asg.IPs[0].String())
	}
	if want := "fd00:208::1 fd00:208::2 fd00:208::3 fd00:209:: fd00:209::1"; strings.Join(got, " ") != want {
		t.Fatalf("handed out %s, want %s", got, want)
	}
	// Asked for explicitly: refused with the reason and the fix.
	b := mustNew(t, Pool{Name: "p", Ranges: rngs("fd00:208::/120"), AutoAssign: true, AvoidBuggyIPs: true})
	r := v6req("x")
	r.IPs = addrs("fd00:208::")
	_, err := b.Allocate(r)
	wantErr(t, err, ReasonBuggyIP, "Subnet-Router anycast", "avoid-buggy-ips: false")
	// Adopted (the pool turned avoid-buggy-ips on later): kept, flagged.
	r.Families = []Family{IPv6}
	asg, err := b.Adopt(r, addrs("fd00:208::"))
	if err != nil || asg.Issues&IssueBuggyIP == 0 {
		t.Fatalf("adopting fd00:208:: = %+v, %v; want kept and flagged", asg, err)
	}
	// Without avoid-buggy-ips it is an address like any other.
	c := mustNew(t, Pool{Name: "p", Ranges: rngs("fd00:208::/120"), AutoAssign: true})
	if got := mustAlloc(t, c, v6req("x")).IPs[0]; got != netip.MustParseAddr("fd00:208::") {
		t.Fatalf("first address without avoid-buggy-ips = %s, want fd00:208::", got)
	}
}

func TestCapacityDoesNotOverflow(t *testing.T) {
	a := mustNew(t,
		Pool{Name: "v6", Ranges: rngs("fd00::/48", "fd01::/64"), AutoAssign: true},
		Pool{Name: "all", Ranges: rngs("2000::/3"), AutoAssign: true},
	)
	for _, u := range a.Usage() {
		switch u.Name {
		case "v6":
			want := "1208944266358702884257792" // 2^80 + 2^64
			if u.CapacityV6.String() != want || u.Capacity().String() != want {
				t.Errorf("v6 capacity = %s, want %s", u.CapacityV6, want)
			}
		case "all":
			if u.CapacityV6.String() != "42535295865117307932921825928971026432" { // 2^125
				t.Errorf("2000::/3 capacity = %s", u.CapacityV6)
			}
			if u.CapacityFloat() < 4e37 {
				t.Errorf("CapacityFloat = %g", u.CapacityFloat())
			}
		}
	}
	// Allocation in a /48 works, and explicit addresses far into it too.
	r := &Request{Service: svc("ns", "far"), Families: []Family{IPv6}, IPs: addrs("fd00:0:0:ffff::1")}
	if got := mustAlloc(t, a, r).IPs[0]; got != r.IPs[0] {
		t.Fatalf("got %s", got)
	}
	r2 := &Request{Service: svc("ns", "auto"), Families: []Family{IPv6}, Pool: "v6"}
	if got := mustAlloc(t, a, r2).IPs[0]; got != netip.MustParseAddr("fd00::") {
		t.Fatalf("first address of the /48 = %s", got)
	}
}

func TestRangesAndNextFit(t *testing.T) {
	a := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.10-10.0.0.12", "10.0.1.0/31"), AutoAssign: true})
	var got []string
	for i := range 5 {
		got = append(got, mustAlloc(t, a, v4req("ns", fmt.Sprint(i))).IPs[0].String())
	}
	want := "10.0.0.10 10.0.0.11 10.0.0.12 10.0.1.0 10.0.1.1"
	if strings.Join(got, " ") != want {
		t.Fatalf("order = %v, want %s", got, want)
	}
	_, err := a.Allocate(v4req("ns", "full"))
	wantErr(t, err, ReasonExhausted, "5 of 5 in use")
	// A released address is not the next one handed out while others are free.
	b := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.0/29"), AutoAssign: true})
	first := mustAlloc(t, b, v4req("ns", "a")).IPs[0]
	b.Release(svc("ns", "a"))
	if again := mustAlloc(t, b, v4req("ns", "b")).IPs[0]; again == first {
		t.Fatalf("released %s was handed out again at once", first)
	}
}

func TestAutoAssignOff(t *testing.T) {
	a := mustNew(t,
		Pool{Name: "public", Ranges: rngs("203.0.113.0/28")},
		Pool{Name: "private", Ranges: rngs("10.0.0.0/30"), AutoAssign: true},
	)
	if asg := mustAlloc(t, a, v4req("ns", "a")); asg.Pool() != "private" {
		t.Fatalf("automatic allocation used pool %s", asg.Pool())
	}
	r := v4req("ns", "b")
	r.Pool = "public"
	if asg := mustAlloc(t, a, r); asg.Pool() != "public" || asg.IPs[0] != netip.MustParseAddr("203.0.113.0") {
		t.Fatalf("requested pool: %v", asg)
	}
	r = v4req("ns", "c")
	r.IPs = addrs("203.0.113.9")
	if asg := mustAlloc(t, a, r); asg.IPs[0] != r.IPs[0] {
		t.Fatalf("explicit IP in an auto-assign-off pool: %v", asg)
	}
	// Only the auto-assign-off pool left with room: automatic allocation fails and says why.
	for i := range 3 {
		mustAlloc(t, a, v4req("ns", fmt.Sprint("fill", i)))
	}
	_, err := a.Allocate(v4req("ns", "d"))
	wantErr(t, err, ReasonExhausted, `pool "private"`)
	only := mustNew(t, Pool{Name: "public", Ranges: rngs("203.0.113.0/28")})
	_, err = only.Allocate(v4req("ns", "e"))
	wantErr(t, err, ReasonNoPool, `pool "public" has auto-assign off`, "calico-lb.io/address-pool")
}

func TestRestrictionsAndPriority(t *testing.T) {
	a := mustNew(t,
		Pool{Name: "general", Ranges: rngs("10.0.0.0/24"), AutoAssign: true},
		Pool{Name: "prod", Ranges: rngs("10.1.0.0/24"), AutoAssign: true, Namespaces: []string{"prod"}},
		Pool{Name: "web", Ranges: rngs("10.2.0.0/24"), AutoAssign: true, Selector: labelSel{"tier": "web"}},
		Pool{Name: "prodweb", Ranges: rngs("10.3.0.0/24"), AutoAssign: true, Namespaces: []string{"prod"}, Selector: labelSel{"tier": "web"}},
		Pool{Name: "first", Ranges: rngs("10.4.0.0/24"), AutoAssign: true, Priority: 1, Namespaces: []string{"vip"}},
		Pool{Name: "second", Ranges: rngs("10.5.0.0/24"), AutoAssign: true, Priority: 2, Namespaces: []string{"vip"}},
	)
	tests := []struct {
		ns     string
		labels map[string]string
		pool   string
	}{
		{"default", nil, "general"},
		{"prod", nil, "prod"},                                // restricted pools win ties over general ones
		{"default", map[string]string{"tier": "web"}, "web"}, // selector match
		{"prod", map[string]string{"tier": "web"}, "prod"},   // equal rank: name order ("prod" < "prodweb")
		{"vip", nil, "first"},                                // explicit priority beats unset
		{"dev", map[string]string{"tier": "db"}, "general"},  // no restricted pool admits
	}
	for i, tc := range tests {
		r := v4req(tc.ns, fmt.Sprint("s", i))
		r.Labels = tc.labels
		if got := mustAlloc(t, a, r).Pool(); got != tc.pool {
			t.Errorf("%s %v: pool %s, want %s", tc.ns, tc.labels, got, tc.pool)
		}
	}
	// A requested pool that does not admit the Service is refused with the reason.
	r := v4req("default", "x")
	r.Pool = "prod"
	_, err := a.Allocate(r)
	wantErr(t, err, ReasonNotAdmitted, `pool "prod" serves only namespaces prod, not "default"`)
	r.Pool = "web"
	_, err = a.Allocate(r)
	wantErr(t, err, ReasonNotAdmitted, `serves only Services matching "tier=web"`)
	r.Pool = "nope"
	_, err = a.Allocate(r)
	wantErr(t, err, ReasonUnknownPool, `pool "nope" does not exist`, "first, general")
	// An explicit IP in a pool that does not admit the Service is refused.
	r = v4req("default", "y")
	r.IPs = addrs("10.1.0.7")
	_, err = a.Allocate(r)
	wantErr(t, err, ReasonNotAdmitted, "10.1.0.7")
	// An explicit IP must agree with an explicit pool.
	r = v4req("prod", "z")
	r.IPs, r.Pool = addrs("10.0.0.9"), "prod"
	_, err = a.Allocate(r)
	wantErr(t, err, ReasonInvalidRequest, `10.0.0.9 is in pool "general"`, `asks for pool "prod"`)
}

func TestPriorityOrderIsDeterministic(t *testing.T) {
	// The same pools in any order give the same choice.
	p := []Pool{
		{Name: "b", Ranges: rngs("10.0.1.0/24"), AutoAssign: true, Priority: 5},
		{Name: "a", Ranges: rngs("10.0.0.0/24"), AutoAssign: true, Priority: 5},
		{Name: "c", Ranges: rngs("10.0.2.0/24"), AutoAssign: true},
	}
	for perm := range 6 {
		ps := slices.Clone(p)
		ps[0], ps[perm%3] = ps[perm%3], ps[0]
		if perm >= 3 {
			slices.Reverse(ps)
		}
		if got := mustAlloc(t, mustNew(t, ps...), v4req("ns", "s")).Pool(); got != "a" {
			t.Fatalf("order %v: pool %s, want a", ps, got)
		}
	}
}

func TestExplicitIPs(t *testing.T) {
	a := mustNew(t,
		Pool{Name: "v4", Ranges: rngs("10.0.0.0/24"), AutoAssign: true},
		Pool{Name: "v6", Ranges: rngs("fd00::/120"), AutoAssign: true},
	)
	r := v4req("ns", "a")
	r.IPs = addrs("10.0.0.50")
	if got := mustAlloc(t, a, r).IPs[0]; got != r.IPs[0] {
		t.Fatalf("got %s", got)
	}
	// Taken by a Service that does not share.
	r2 := v4req("ns", "b")
	r2.IPs = addrs("10.0.0.50")
	_, err := a.Allocate(r2)
	wantErr(t, err, ReasonIPInUse, "10.0.0.50 is used by ns/a", "allow-shared-ip")
	// Outside every pool.
	r2.IPs = addrs("192.0.2.1")
	_, err = a.Allocate(r2)
	wantErr(t, err, ReasonOutsidePools, "192.0.2.1 is not in any pool", "v4 10.0.0.0/24")
	// Wrong family.
	r2.IPs = addrs("fd00::5")
	_, err = a.Allocate(r2)
	wantErr(t, err, ReasonFamilyMismatch, "fd00::5", "[IPv4]")
	// Two of one family.
	r2.IPs = addrs("10.0.0.1", "10.0.0.2")
	_, err = a.Allocate(r2)
	wantErr(t, err, ReasonInvalidRequest, "at most one IPv4 and one IPv6")
	// SingleStack with two families of addresses.
	r3 := &Request{Service: svc("ns", "c"), Families: []Family{IPv4, IPv6}, IPs: addrs("10.0.0.3", "fd00::3")}
	_, err = a.Allocate(r3)
	wantErr(t, err, ReasonFamilyMismatch, "SingleStack but requests two")
	// Dual-stack explicit: both, primary family first, and all-or-nothing.
	r3.Policy = RequireDualStack
	r3.IPs = addrs("fd00::3", "10.0.0.3")
	asg := mustAlloc(t, a, r3)
	if asg.IPs[0] != netip.MustParseAddr("10.0.0.3") || asg.IPs[1] != netip.MustParseAddr("fd00::3") || asg.Pools() != [2]string{"v4", "v6"} {
		t.Fatalf("dual explicit: %v", asg)
	}
	r4 := &Request{Service: svc("ns", "d"), Families: []Family{IPv4, IPv6}, Policy: RequireDualStack, IPs: addrs("10.0.0.4", "fd00::3")}
	_, err = a.Allocate(r4)
	wantErr(t, err, ReasonIPInUse, "fd00::3")
	if a.Holders(netip.MustParseAddr("10.0.0.4")) != nil {
		t.Fatal("a failed all-or-nothing request kept 10.0.0.4")
	}
	r4.IPs = addrs("10.0.0.4")
	_, err = a.Allocate(r4)
	wantErr(t, err, ReasonFamilyMismatch, "RequireDualStack but requests only")
}

func TestSharing(t *testing.T) {
	pool := Pool{Name: "p", Ranges: rngs("10.0.0.0/24"), AutoAssign: true}
	keyed := func(name, key, backend string, ports ...Port) *Request {
		return &Request{Service: svc("ns", name), Families: []Family{IPv4}, SharingKey: key, BackendKey: backend, Ports: ports}
	}
	tcp53, udp53, tcp80 := Port{"TCP", 53}, Port{"UDP", 53}, Port{"TCP", 80}
	tests := []struct {
		name    string
		first   *Request
		second  *Request
		shared  bool   // automatic allocation of second lands on first's IP
		explErr Reason // explicit request of first's IP by second ("" = allowed)
	}{
		{"same key, disjoint ports", keyed("a", "dns", "", tcp53), keyed("b", "dns", "", udp53), true, ""},
		{"same key, same port", keyed("a", "dns", "", tcp53), keyed("b", "dns", "", tcp53), false, ReasonIPInUse},
		{"different keys", keyed("a", "k1", "", tcp53), keyed("b", "k2", "", udp53), false, ReasonIPInUse},
		{"second has no key", keyed("a", "k1", "", tcp53), keyed("b", "", "", udp53), false, ReasonIPInUse},
		{"first has no key", keyed("a", "", "", tcp53), keyed("b", "k1", "", udp53), false, ReasonIPInUse},
		{"Local, same selector", keyed("a", "k", "app=dns", tcp53), keyed("b", "k", "app=dns", udp53), true, ""},
		{"Local, other selector", keyed("a", "k", "app=dns", tcp53), keyed("b", "k", "app=other", udp53), false, ReasonIPInUse},
		{"Local and Cluster", keyed("a", "k", "app=dns", tcp53), keyed("b", "k", "", udp53), false, ReasonIPInUse},
		{"same port, other protocol", keyed("a", "k", "", tcp80), keyed("b", "k", "", Port{"UDP", 80}), true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mustNew(t, pool)
			first := mustAlloc(t, a, tc.first)
			second := mustAlloc(t, a, tc.second)
			if (second.IPs[0] == first.IPs[0]) != tc.shared {
				t.Fatalf("first %s, second %s, want shared=%v", first.IPs[0], second.IPs[0], tc.shared)
			}
			b := mustNew(t, pool)
			first = mustAlloc(t, b, tc.first)
			req := *tc.second
			req.IPs = first.IPs[:1]
			_, err := b.Allocate(&req)
			if tc.explErr == "" {
				if err != nil {
					t.Fatalf("explicit join: %v", err)
				}
				if h := b.Holders(first.IPs[0]); len(h) != 2 {
					t.Fatalf("holders = %v", h)
				}
			} else {
				wantErr(t, err, tc.explErr, first.IPs[0].String())
			}
		})
	}
	// A keyed Service joins a compatible shared IP in preference to a fresh
	// one, even when it was allocated before other addresses.
	a := mustNew(t, pool)
	dns := mustAlloc(t, a, keyed("dns-tcp", "dns", "", tcp53)).IPs[0]
	mustAlloc(t, a, v4req("ns", "other"))
	if got := mustAlloc(t, a, keyed("dns-udp", "dns", "", udp53)).IPs[0]; got != dns {
		t.Fatalf("dns-udp got %s, want the shared %s", got, dns)
	}
	// Releasing one holder keeps the IP for the other; releasing both frees it.
	a.Release(svc("ns", "dns-tcp"))
	if h := a.Holders(dns); len(h) != 1 || h[0] != svc("ns", "dns-udp") {
		t.Fatalf("holders after one release = %v", h)
	}
	if got := mustAlloc(t, a, keyed("dns-tcp2", "dns", "", tcp53)).IPs[0]; got != dns {
		t.Fatalf("port freed by the release was not reusable: got %s", got)
	}
	a.Release(svc("ns", "dns-udp"))
	a.Release(svc("ns", "dns-tcp2"))
	if a.Holders(dns) != nil || a.Usage()[0].InUse() != 1 {
		t.Fatalf("after releasing all holders: holders %v, in use %d", a.Holders(dns), a.Usage()[0].InUse())
	}
}

func TestSharingKeyChange(t *testing.T) {
	a := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.0/24"), AutoAssign: true})
	r := &Request{Service: svc("ns", "a"), Families: []Family{IPv4}, SharingKey: "k1", Ports: []Port{{"TCP", 1}}}
	ip := mustAlloc(t, a, r).IPs[0]
	// A sole holder may change its key without moving.
	r.SharingKey = "k2"
	if got := mustAlloc(t, a, r).IPs[0]; got != ip {
		t.Fatalf("sole holder moved on key change: %s -> %s", ip, got)
	}
	other := &Request{Service: svc("ns", "b"), Families: []Family{IPv4}, SharingKey: "k2", Ports: []Port{{"TCP", 2}}}
	if got := mustAlloc(t, a, other).IPs[0]; got != ip {
		t.Fatalf("b did not join under the new key: %s", got)
	}
	// Now shared: changing the key must move the Service off the shared IP.
	r.SharingKey = "k3"
	if got := mustAlloc(t, a, r).IPs[0]; got == ip {
		t.Fatal("a kept a shared IP after changing its key")
	}
	if h := a.Holders(ip); len(h) != 1 || h[0] != other.Service {
		t.Fatalf("holders of %s = %v", ip, h)
	}
	// Port change that collides with a co-holder moves; one that does not, stays.
	c := &Request{Service: svc("ns", "c"), Families: []Family{IPv4}, SharingKey: "k2", Ports: []Port{{"TCP", 3}}}
	mustAlloc(t, a, c)
	c.Ports = []Port{{"TCP", 4}}
	if got := mustAlloc(t, a, c).IPs[0]; got != ip {
		t.Fatalf("compatible port change moved c to %s", got)
	}
	c.Ports = []Port{{"TCP", 2}}
	if got := mustAlloc(t, a, c).IPs[0]; got == ip {
		t.Fatal("c kept the IP with a port that b uses")
	}
}

func TestDualStack(t *testing.T) {
	dual := Pool{Name: "dual", Ranges: rngs("10.0.0.0/30", "fd00::/126"), AutoAssign: true}
	only4 := Pool{Name: "only4", Ranges: rngs("10.1.0.0/24"), AutoAssign: true}
	only6 := Pool{Name: "only6", Ranges: rngs("fd01::/120"), AutoAssign: true}
	req := func(name string, p FamilyPolicy, fams ...Family) *Request {
		return &Request{Service: svc("ns", name), Families: fams, Policy: p}
	}
	t.Run("SingleStack takes the primary family", func(t *testing.T) {
		a := mustNew(t, dual)
		asg := mustAlloc(t, a, req("s", SingleStack, IPv6))
		if asg.Len() != 1 || !asg.IPs[0].Is6() {
			t.Fatalf("%v", asg)
		}
	})
	t.Run("PreferDualStack gets both, primary first", func(t *testing.T) {
		a := mustNew(t, dual)
		asg := mustAlloc(t, a, req("s", PreferDualStack, IPv6, IPv4))
		if asg.Len() != 2 || !asg.IPs[0].Is6() || !asg.IPs[1].Is4() || asg.Pools() != [2]string{"dual", "dual"} {
			t.Fatalf("%v", asg)
		}
	})
	t.Run("both families come from one pool", func(t *testing.T) {
		a := mustNew(t, only4, only6)
		asg := mustAlloc(t, a, req("s", PreferDualStack, IPv4, IPv6))
		if asg.Len() != 1 || !asg.IPs[0].Is4() {
			t.Fatalf("PreferDualStack without a dual pool: %v", asg)
		}
		_, err := a.Allocate(req("r", RequireDualStack, IPv4, IPv6))
		wantErr(t, err, ReasonExhausted, "IPv4 and IPv6 addresses from one pool", `pool "only4" has no IPv6 addresses`)
	})
	t.Run("RequireDualStack", func(t *testing.T) {
		a := mustNew(t, only4, dual)
		asg := mustAlloc(t, a, req("s", RequireDualStack, IPv4, IPv6))
		if asg.Len() != 2 || asg.Pool() != "dual" {
			t.Fatalf("%v", asg)
		}
		_, err := a.Allocate(req("bad", RequireDualStack, IPv4))
		wantErr(t, err, ReasonInvalidRequest, "RequireDualStack needs both")
	})
	t.Run("PreferDualStack falls back, then completes later", func(t *testing.T) {
		a := mustNew(t, Pool{Name: "dual", Ranges: rngs("10.0.0.0/30", "fd00::/127"), AutoAssign: true})
		mustAlloc(t, a, &Request{Service: svc("ns", "v6a"), Families: []Family{IPv6}})
		mustAlloc(t, a, &Request{Service: svc("ns", "v6b"), Families: []Family{IPv6}})
		r := req("p", PreferDualStack, IPv4, IPv6)
		asg := mustAlloc(t, a, r)
		if asg.Len() != 1 || !asg.IPs[0].Is4() {
			t.Fatalf("with IPv6 exhausted: %v", asg)
		}
		v4 := asg.IPs[0]
		a.Release(svc("ns", "v6a"))
		asg = mustAlloc(t, a, r)
		if asg.Len() != 2 || asg.IPs[0] != v4 || !asg.IPs[1].Is6() {
			t.Fatalf("after IPv6 freed up: %v", asg)
		}
	})
	t.Run("dual-stack to single-stack keeps the remaining family's address", func(t *testing.T) {
		for _, keep := range []Family{IPv4, IPv6} {
			a := mustNew(t, Pool{Name: "dual", Ranges: rngs("10.0.0.0/28", "fd00::/124"), AutoAssign: true})
			before := mustAlloc(t, a, req("s", RequireDualStack, IPv4, IPv6))
			want := before.IPs[0]
			if FamilyOf(want) != keep {
				want = before.IPs[1]
			}
			after := mustAlloc(t, a, req("s", SingleStack, keep))
			if after.Len() != 1 || after.IPs[0] != want {
				t.Fatalf("%v -> single-stack %v: %v, want %s kept", before, keep, after, want)
			}
			// The dropped address is free again: no leak in the counts.
			otherFam := IPv4
			if keep == IPv4 {
				otherFam = IPv6
			}
			other := mustAlloc(t, a, req("o", SingleStack, otherFam))
			if u := a.Usage(); u[0].InUseV4+u[0].InUseV6 != 2 {
				t.Fatalf("in use after the drop and one more Service: %+v (other got %v)", u, other)
			}
		}
	})
	t.Run("RequireDualStack shares per family", func(t *testing.T) {
		a := mustNew(t, dual)
		r1 := req("a", RequireDualStack, IPv4, IPv6)
		r1.SharingKey, r1.Ports = "k", []Port{{"TCP", 1}}
		r2 := req("b", RequireDualStack, IPv4, IPv6)
		r2.SharingKey, r2.Ports = "k", []Port{{"TCP", 2}}
		if mustAlloc(t, a, r1) != mustAlloc(t, a, r2) {
			t.Fatal("dual-stack Services with one key did not share both addresses")
		}
	})
}

func TestAllocateIsIdempotentAndFollowsRequests(t *testing.T) {
	a := mustNew(t,
		Pool{Name: "a", Ranges: rngs("10.0.0.0/24"), AutoAssign: true},
		Pool{Name: "b", Ranges: rngs("10.1.0.0/24"), AutoAssign: true},
	)
	r := v4req("ns", "s")
	first := mustAlloc(t, a, r)
	for range 3 {
		if again := mustAlloc(t, a, r); again != first {
			t.Fatalf("repeat allocation changed %v -> %v", first, again)
		}
	}
	// A label change that the pool still admits keeps the address.
	r.Labels = map[string]string{"x": "y"}
	if again := mustAlloc(t, a, r); again != first {
		t.Fatal("label change moved the Service")
	}
	// A pool request moves it.
	r.Pool = "b"
	if moved := mustAlloc(t, a, r); moved.Pool() != "b" {
		t.Fatalf("pool request: %v", moved)
	}
	if a.Holders(first.IPs[0]) != nil {
		t.Fatal("old address still held after the move")
	}
	// An explicit IP request moves it; an unmeetable one keeps the old address.
	r.Pool, r.IPs = "", addrs("10.0.0.77")
	if moved := mustAlloc(t, a, r); moved.IPs[0] != r.IPs[0] {
		t.Fatalf("explicit request: %v", moved)
	}
	blocker := v4req("ns", "blocker")
	blocker.IPs = addrs("10.0.0.78")
	mustAlloc(t, a, blocker)
	r.IPs = addrs("10.0.0.78")
	kept, err := a.Allocate(r)
	wantErr(t, err, ReasonIPInUse, "10.0.0.78")
	if kept.IPs[0] != netip.MustParseAddr("10.0.0.77") {
		t.Fatalf("failed move returned %v, want the kept 10.0.0.77", kept)
	}
	if got, _ := a.Get(r.Service); got.IPs[0] != netip.MustParseAddr("10.0.0.77") {
		t.Fatalf("failed move lost the old address: %v", got)
	}
	// Family change moves it.
	r.IPs, r.Families = nil, []Family{IPv6}
	_, err = a.Allocate(r)
	wantErr(t, err, ReasonExhausted, "no IPv6 address for ns/s", `pool "a" has no IPv6 addresses`)
}

func TestLabelChangeOutOfPool(t *testing.T) {
	a := mustNew(t,
		Pool{Name: "web", Ranges: rngs("10.0.0.0/30"), AutoAssign: true, Selector: labelSel{"tier": "web"}},
		Pool{Name: "rest", Ranges: rngs("10.1.0.0/30"), AutoAssign: true, Namespaces: []string{"other"}},
	)
	r := v4req("ns", "s")
	r.Labels = map[string]string{"tier": "web"}
	ip := mustAlloc(t, a, r).IPs[0]
	// Relabelled so that no pool admits it: it keeps its address, flagged.
	r.Labels = map[string]string{"tier": "db"}
	kept, err := a.Allocate(r)
	wantErr(t, err, ReasonNoPool, `serves only Services matching "tier=web"`)
	if kept.IPs[0] != ip || kept.Issues != IssueNotAdmitted {
		t.Fatalf("kept %v", kept)
	}
	// Once a pool admits it, it moves there.
	b := mustNew(t,
		Pool{Name: "web", Ranges: rngs("10.0.0.0/30"), AutoAssign: true, Selector: labelSel{"tier": "web"}},
		Pool{Name: "rest", Ranges: rngs("10.1.0.0/30"), AutoAssign: true},
	)
	r.Labels = map[string]string{"tier": "web"}
	mustAlloc(t, b, r)
	r.Labels = map[string]string{"tier": "db"}
	if moved := mustAlloc(t, b, r); moved.Pool() != "rest" || moved.Issues != 0 {
		t.Fatalf("moved %v", moved)
	}
}

func TestReallocate(t *testing.T) {
	a := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.0/30"), AutoAssign: true})
	r := v4req("ns", "s")
	old := mustAlloc(t, a, r).IPs[0]
	moved, err := a.Reallocate(r)
	if err != nil || moved.IPs[0] == old {
		t.Fatalf("Reallocate: %v, %v (old %s)", moved, err, old)
	}
	if a.Holders(old) != nil || a.Usage()[0].InUse() != 1 {
		t.Fatal("old address not released")
	}
	// Exhausted pool: the Service keeps what it has.
	mustAlloc(t, a, v4req("ns", "x"))
	mustAlloc(t, a, v4req("ns", "y"))
	mustAlloc(t, a, v4req("ns", "z"))
	kept, err := a.Reallocate(r)
	wantErr(t, err, ReasonExhausted)
	if kept.IPs[0] != moved.IPs[0] {
		t.Fatalf("failed Reallocate returned %v", kept)
	}
	r.IPs = moved.IPs[:1]
	_, err = a.Reallocate(r)
	wantErr(t, err, ReasonExplicit, "explicitly")
	_, err = a.Reallocate(v4req("ns", "unknown"))
	wantErr(t, err, ReasonUnknownService)
}

func TestAdopt(t *testing.T) {
	a := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.0/24"), AutoAssign: true, AvoidBuggyIPs: true, Namespaces: []string{"prod"}})
	asg, err := a.Adopt(v4req("prod", "a"), addrs("10.0.0.9"))
	if err != nil || asg.IPs[0] != netip.MustParseAddr("10.0.0.9") || asg.Issues != 0 {
		t.Fatalf("Adopt: %v %v", asg, err)
	}
	// Adopting again is a no-op.
	if again, err := a.Adopt(v4req("prod", "a"), addrs("10.0.0.9")); err != nil || again != asg {
		t.Fatalf("re-adopt: %v %v", again, err)
	}
	// A clash with an adopted address is refused.
	_, err = a.Adopt(v4req("prod", "b"), addrs("10.0.0.9"))
	wantErr(t, err, ReasonIPInUse, "prod/a")
	_, err = a.Adopt(v4req("prod", "c"), addrs("192.0.2.1"))
	wantErr(t, err, ReasonOutsidePools, "192.0.2.1")
	// Kept but flagged: a buggy IP, and a pool that no longer admits the Service.
	flagged, err := a.Adopt(v4req("dev", "d"), addrs("10.0.0.255"))
	if err != nil || flagged.Issues != IssueBuggyIP|IssueNotAdmitted {
		t.Fatalf("flagged adopt: %v %v", flagged, err)
	}
	if !strings.Contains(flagged.Issues.String(), "buggy IP") {
		t.Fatalf("Issues.String() = %q", flagged.Issues)
	}
	// The adopted buggy address is held (not handed out), counts as in use,
	// and is freed normally.
	if u := a.Usage()[0]; u.InUseV4 != 2 {
		t.Fatalf("in use = %d", u.InUseV4)
	}
	r := v4req("prod", "e")
	r.IPs = addrs("10.0.0.255")
	_, err = a.Allocate(r)
	wantErr(t, err, ReasonIPInUse, "a Service of another namespace")
	if strings.Contains(err.Error(), "dev/d") {
		t.Fatalf("the error names another namespace's Service: %v", err)
	}
	a.Release(svc("dev", "d"))
	if u := a.Usage()[0]; u.InUseV4 != 1 {
		t.Fatalf("in use after release = %d", u.InUseV4)
	}
	// A Service re-adopted with other addresses moves its record.
	if moved, err := a.Adopt(v4req("prod", "a"), addrs("10.0.0.10")); err != nil || moved.IPs[0] != netip.MustParseAddr("10.0.0.10") || a.Holders(netip.MustParseAddr("10.0.0.9")) != nil {
		t.Fatalf("re-adopt elsewhere: %v %v", moved, err)
	}
	// Adopted addresses are never handed out to others.
	for i := range 200 {
		if got := mustAlloc(t, a, v4req("prod", fmt.Sprint("n", i))).IPs[0]; got == netip.MustParseAddr("10.0.0.10") {
			t.Fatal("adopted address handed out")
		}
	}
}

func TestSetPools(t *testing.T) {
	orig := []Pool{
		{Name: "a", Ranges: rngs("10.0.0.0/24"), AutoAssign: true},
		{Name: "b", Ranges: rngs("10.1.0.0/24"), AutoAssign: true},
	}
	a := mustNew(t, orig...)
	ra := v4req("ns", "in-a")
	rb := v4req("ns", "in-b")
	rb.Pool = "b"
	ipA := mustAlloc(t, a, ra).IPs[0]
	ipB := mustAlloc(t, a, rb).IPs[0]

	// Dropping pool b would orphan in-b: held back, old pools stay.
	shrink := []Pool{{Name: "a", Ranges: rngs("10.0.0.0/24"), AutoAssign: true}}
	ch, err := a.SetPools(shrink, false)
	if !errors.Is(err, ErrHeldBack) || len(ch.Orphans) != 1 || ch.Orphans[0].Service != rb.Service || ch.Orphans[0].IPs[0] != ipB {
		t.Fatalf("held back: %+v %v", ch, err)
	}
	if !strings.Contains(ch.Summary(), "ns/in-b ("+ipB.String()+")") {
		t.Fatalf("Summary = %q", ch.Summary())
	}
	if a.PoolOf(ipB) != "b" {
		t.Fatal("held-back change was applied")
	}
	// CheckPools says the same and changes nothing.
	if ch2, err := a.CheckPools(shrink); err != nil || len(ch2.Orphans) != 1 {
		t.Fatalf("CheckPools: %+v %v", ch2, err)
	}
	// Renaming and growing keeps every address.
	grown := []Pool{
		{Name: "renamed", Ranges: rngs("10.0.0.0/23"), AutoAssign: true},
		{Name: "b2", Ranges: rngs("10.1.0.0/25", "10.1.0.128/25"), AutoAssign: true},
	}
	if ch, err := a.SetPools(grown, false); err != nil || len(ch.Orphans) != 0 {
		t.Fatalf("grow: %+v %v", ch, err)
	}
	if got, _ := a.Get(ra.Service); got.IPs[0] != ipA || got.Pool() != "renamed" {
		t.Fatalf("after rename: %v", got)
	}
	if got, _ := a.Get(rb.Service); got.IPs[0] != ipB || got.Pool() != "b2" {
		t.Fatalf("after split: %v", got)
	}
	// Forced: the orphan loses its address and is reported; the other stays.
	ch, err = a.SetPools([]Pool{{Name: "renamed", Ranges: rngs("10.0.0.0/23"), AutoAssign: true}}, true)
	if err != nil || len(ch.Orphans) != 1 {
		t.Fatalf("forced: %+v %v", ch, err)
	}
	if _, held := a.Get(rb.Service); held {
		t.Fatal("orphan still holds an address")
	}
	if got, _ := a.Get(ra.Service); got.IPs[0] != ipA {
		t.Fatal("valid assignment moved")
	}
	// Turning on avoid-buggy-ips flags a held .0 but keeps it.
	c := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.0/24"), AutoAssign: true})
	zero := mustAlloc(t, c, v4req("ns", "zero")).IPs[0]
	ch, err = c.SetPools([]Pool{{Name: "p", Ranges: rngs("10.0.0.0/24"), AutoAssign: true, AvoidBuggyIPs: true}}, false)
	if err != nil || len(ch.Flagged) != 1 || ch.Flagged[0].Issues != IssueBuggyIP || ch.Flagged[0].IPs[0] != zero {
		t.Fatalf("avoid-buggy change: %+v %v", ch, err)
	}
	// Invalid new pools are an error and change nothing.
	if _, err := c.SetPools([]Pool{{Name: "x", Ranges: rngs("10.0.0.0/24")}, {Name: "y", Ranges: rngs("10.0.0.0/25")}}, true); err == nil {
		t.Fatal("overlapping pools accepted")
	}
	if c.PoolOf(zero) != "p" {
		t.Fatal("failed SetPools changed the pools")
	}
	// A partially orphaned dual-stack Service keeps its valid family.
	d := mustNew(t, Pool{Name: "d", Ranges: rngs("10.0.0.0/24", "fd00::/120"), AutoAssign: true})
	both := mustAlloc(t, d, &Request{Service: svc("ns", "dual"), Families: []Family{IPv4, IPv6}, Policy: PreferDualStack})
	ch, err = d.SetPools([]Pool{{Name: "d", Ranges: rngs("10.0.0.0/24"), AutoAssign: true}}, true)
	if err != nil || len(ch.Orphans) != 1 || ch.Orphans[0].IPs[0] != both.IPs[1] {
		t.Fatalf("partial orphan: %+v %v", ch, err)
	}
	if got, _ := d.Get(svc("ns", "dual")); got.Len() != 1 || got.IPs[0] != both.IPs[0] {
		t.Fatalf("partial orphan kept %v", got)
	}
}

func TestUsageAndListing(t *testing.T) {
	a := mustNew(t,
		Pool{Name: "dual", Ranges: rngs("10.0.0.0/24", "fd00::/64"), AutoAssign: true, AvoidBuggyIPs: true},
		Pool{Name: "off", Ranges: rngs("10.9.0.1-10.9.0.3")},
	)
	mustAlloc(t, a, &Request{Service: svc("b", "x"), Families: []Family{IPv4, IPv6}, Policy: RequireDualStack})
	mustAlloc(t, a, v4req("a", "y"))
	u := a.Usage()
	if len(u) != 2 || u[0].Name != "dual" || u[0].InUseV4 != 2 || u[0].InUseV6 != 1 || u[0].CapacityV4.Int64() != 254 || u[0].CapacityV6.String() != "18446744073709551615" { // 2^64 less the anycast address
		t.Fatalf("usage: %+v", u[0])
	}
	if u[1].AutoAssign || u[1].CapacityV4.Int64() != 3 || u[1].Ranges[0].String() != "10.9.0.1-10.9.0.3" {
		t.Fatalf("usage of off: %+v", u[1])
	}
	held := a.Assignments()
	if len(held) != 2 || held[0].Service != svc("a", "y") || held[1].Service != svc("b", "x") {
		t.Fatalf("Assignments: %v", held)
	}
	if !strings.HasPrefix(held[1].String(), "b/x: 10.0.0.") || !strings.Contains(held[1].String(), "(dual)") {
		t.Fatalf("Held.String = %q", held[1])
	}
	if !a.Release(svc("a", "y")) || a.Release(svc("a", "y")) {
		t.Fatal("Release reports wrongly whether anything was held")
	}
}

// Asking whether a pool has room (scoring pools, explaining a refusal)
// moves nothing: a pool whose current range is full keeps its place
// until an allocation actually takes from the next range. Before, the
// question itself moved the pool to the next range and reset that
// range's cursor.
func TestQueriesDoNotMoveTheCursor(t *testing.T) {
	a := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.10/32", "10.0.1.0/30"), AutoAssign: true})
	mustAlloc(t, a, v4req("ns", "first")) // 10.0.0.10: the first range is now full
	p := a.st.byName["p"]
	before := p.cur
	cursors := func() []string {
		var out []string
		for _, r := range p.ranges[fi(IPv4)] {
			out = append(out, fmt.Sprint(r.t.cursor, r.t.wrapped))
		}
		return out
	}
	was := cursors()
	for range 3 {
		if a.st.free(p, IPv4) == nil {
			t.Fatal("the pool has room in its second range")
		}
	}
	if p.cur != before || !slices.Equal(cursors(), was) {
		t.Fatalf("asking moved the pool: current range %v -> %v, cursors %v -> %v", before, p.cur, was, cursors())
	}
	if ip := mustAlloc(t, a, v4req("ns", "second")).IPs[0].String(); ip != "10.0.1.0" {
		t.Fatalf("the next allocation got %s, want 10.0.1.0 (the next range, from its start)", ip)
	}
}

// A share across namespaces from before sharing was held to one namespace
// (or made while the pool allowed it) is restored as it was, so that no
// client is cut off, but flagged: the joiner from the other namespace
// carries IssueSharedAcrossNamespaces, which list-allocations shows, and
// the first holder does not. In a pool that allows it, nothing is flagged.
func TestAdoptFlagsSharesAcrossNamespaces(t *testing.T) {
	for _, open := range []bool{false, true} {
		a := mustNew(t, Pool{Name: "p", Ranges: rngs("10.0.0.0/24"), AutoAssign: true, SharedAcrossNamespaces: open})
		req := func(ns, name string, port int32) *Request {
			r := v4req(ns, name)
			r.SharingKey, r.Ports = "k", []Port{{Protocol: "TCP", Port: port}}
			return r
		}
		first, err := a.Adopt(req("a", "web", 80), addrs("10.0.0.5"))
		if err != nil || first.Issues != 0 {
			t.Fatalf("open=%v first holder: %v %v", open, first, err)
		}
		joiner, err := a.Adopt(req("b", "api", 443), addrs("10.0.0.5"))
		if err != nil {
			t.Fatalf("open=%v: the share was not restored: %v", open, err)
		}
		if flagged := joiner.Issues&IssueSharedAcrossNamespaces != 0; flagged == open {
			t.Fatalf("open=%v: joiner's issues %q", open, joiner.Issues)
		}
		if !open && !strings.Contains(joiner.Issues.String(), "another namespace") {
			t.Fatalf("Issues.String() = %q", joiner.Issues)
		}
		// A joiner of its own namespace is not flagged.
		if same, err := a.Adopt(req("a", "admin", 8080), addrs("10.0.0.5")); err != nil || same.Issues != 0 {
			t.Fatalf("open=%v same-namespace joiner: %v %v", open, same, err)
		}
	}
}
