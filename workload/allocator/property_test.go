package allocator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// poolTemplate is a pool whose rules stay fixed while its addresses and name
// change from one reconfiguration to the next. Each template owns its own
// address space, so generated pools never overlap.
type poolTemplate struct {
	names      [2]string
	space      []string // candidate ranges, some of which each config uses
	autoAssign bool
	avoid      bool
	namespaces []string
	selector   Selector
	priority   int
}

var templates = []poolTemplate{
	{names: [2]string{"general", "general-renamed"}, space: []string{"10.0.0.0/28", "10.0.0.16/29", "10.0.0.250-10.0.1.5", "fd00::/125", "fd00::10/126"}, autoAssign: true, avoid: true},
	{names: [2]string{"ns1", "ns1b"}, space: []string{"10.1.0.0/29", "10.1.0.8/29", "fd01::/126"}, autoAssign: true, namespaces: []string{"ns1"}, priority: 1},
	{names: [2]string{"web", "web2"}, space: []string{"10.2.0.0/29", "fd02::/126"}, autoAssign: true, selector: labelSel{"tier": "web"}},
	{names: [2]string{"manual", "manual2"}, space: []string{"10.3.0.0/29", "10.3.0.255-10.3.1.0"}, avoid: true},
}

// genPools makes a random configuration from the templates.
func genPools(rng *rand.Rand) []Pool {
	var out []Pool
	for _, tp := range templates {
		if rng.IntN(5) == 0 {
			continue // the pool is dropped
		}
		p := Pool{Name: tp.names[rng.IntN(2)], AutoAssign: tp.autoAssign, AvoidBuggyIPs: tp.avoid, Namespaces: tp.namespaces, Selector: tp.selector, Priority: tp.priority}
		for _, s := range tp.space {
			if rng.IntN(4) != 0 {
				p.Ranges = append(p.Ranges, iprange.MustParse(s))
			}
		}
		if len(p.Ranges) == 0 {
			p.Ranges = rngs(tp.space[0])
		}
		out = append(out, p)
	}
	return out
}

// sometimes returns a random address from the templates' spaces (in a pool
// or not, depending on the current configuration), or one outside them all.
func randomAddr(rng *rand.Rand, fam Family) netip.Addr {
	if rng.IntN(10) == 0 {
		if fam == IPv4 {
			return netip.MustParseAddr("192.0.2.1")
		}
		return netip.MustParseAddr("2001:db8::1")
	}
	for {
		tp := templates[rng.IntN(len(templates))]
		r := iprange.MustParse(tp.space[rng.IntN(len(tp.space))])
		if FamilyOf(r.First) != fam {
			continue
		}
		return r.At(iprange.U128{Lo: rng.Uint64N(r.Size().Uint64())})
	}
}

func randomRequest(rng *rand.Rand, svc ServiceKey) *Request {
	r := &Request{Service: svc}
	switch rng.IntN(6) {
	case 0, 1:
		r.Families = []Family{IPv4}
	case 2:
		r.Families = []Family{IPv6}
	case 3:
		r.Families, r.Policy = []Family{IPv4, IPv6}, PreferDualStack
	case 4:
		r.Families, r.Policy = []Family{IPv6, IPv4}, PreferDualStack
	default:
		r.Families, r.Policy = []Family{IPv4, IPv6}, RequireDualStack
	}
	if rng.IntN(2) == 0 {
		r.Labels = map[string]string{"tier": []string{"web", "db"}[rng.IntN(2)]}
	}
	switch rng.IntN(8) {
	case 0:
		r.IPs = []netip.Addr{randomAddr(rng, r.Families[0])}
		if r.Policy == RequireDualStack {
			r.IPs = append(r.IPs, randomAddr(rng, r.Families[1]))
		}
	case 1:
		tp := templates[rng.IntN(len(templates))]
		r.Pool = tp.names[rng.IntN(2)]
	}
	if rng.IntN(2) == 0 {
		r.SharingKey = []string{"k1", "k2"}[rng.IntN(2)]
		r.BackendKey = []string{"", "app=x"}[rng.IntN(2)]
	}
	for _, p := range []Port{{"TCP", 1}, {"TCP", 2}, {"UDP", 1}} {
		if rng.IntN(2) == 0 {
			r.Ports = append(r.Ports, p)
		}
	}
	return r
}

// world is the test's own record of what each Service asked for last.
type world struct {
	t     *testing.T
	a     *Allocator
	pools []Pool
	reqs  map[ServiceKey]*Request // the request of every Service that holds addresses
}

func (w *world) check(step int, what string) {
	t := w.t
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("step %d (%s): %s", step, what, fmt.Sprintf(format, args...))
	}
	held := w.a.Assignments()
	if len(held) != len(w.reqs) {
		fail("%d assignments, the model has %d Services", len(held), len(w.reqs))
	}
	byIP := map[netip.Addr][]ServiceKey{}
	inUse := map[string][2]int{}
	for _, h := range held {
		req := w.reqs[h.Service]
		if req == nil {
			fail("%s holds %v but the model says it holds nothing", h.Service, h.Assignment)
		}
		if h.Len() == 0 {
			fail("%s holds an empty assignment", h.Service)
		}
		pools := h.Pools()
		for i, ip := range h.IPs {
			if !ip.IsValid() {
				continue
			}
			p := w.poolNamed(pools[i])
			if p == nil || !slices.ContainsFunc(p.Ranges, func(r iprange.Range) bool { return r.Contains(ip) }) {
				fail("%s holds %s, not in its pool %q", h.Service, ip, pools[i])
			}
			if ok, _ := p.admits(h.Service.Namespace, req.Labels); !ok && h.Issues&IssueNotAdmitted == 0 {
				fail("%s holds %s in pool %q, which does not admit it, unflagged", h.Service, ip, p.Name)
			}
			if p.AvoidBuggyIPs && iprange.IsBuggy(ip) && h.Issues&IssueBuggyIP == 0 {
				fail("%s holds buggy %s in pool %q, unflagged", h.Service, ip, p.Name)
			}
			if i == 1 && FamilyOf(ip) == FamilyOf(h.IPs[0]) {
				fail("%s holds two %s addresses", h.Service, FamilyOf(ip))
			}
			byIP[ip] = append(byIP[ip], h.Service)
			c := inUse[p.Name]
			if len(byIP[ip]) == 1 {
				c[fi(FamilyOf(ip))]++
			}
			inUse[p.Name] = c
		}
	}
	// No address is held twice, except compatibly shared.
	for ip, svcs := range byIP {
		if len(svcs) < 2 {
			continue
		}
		first := w.reqs[svcs[0]]
		seen := map[Port]ServiceKey{}
		for _, s := range svcs {
			r := w.reqs[s]
			if r.SharingKey == "" || r.SharingKey != first.SharingKey || r.BackendKey != first.BackendKey {
				fail("%s is held by %v with incompatible keys", ip, svcs)
			}
			for _, p := range r.Ports {
				if other, dup := seen[p]; dup {
					fail("%s port %v is used by both %s and %s", ip, p, other, s)
				}
				seen[p] = s
			}
		}
		if got := w.a.Holders(ip); len(got) != len(svcs) {
			fail("Holders(%s) = %v, assignments say %v", ip, got, svcs)
		}
	}
	for _, u := range w.a.Usage() {
		if c := inUse[u.Name]; u.InUseV4 != c[0] || u.InUseV6 != c[1] {
			fail("pool %s usage %d/%d, assignments say %d/%d", u.Name, u.InUseV4, u.InUseV6, c[0], c[1])
		}
	}
	// Restoring from the list of assignments reproduces the same state.
	b, err := New(w.pools)
	if err != nil {
		fail("New: %v", err)
	}
	for _, h := range held {
		if _, err := b.Adopt(w.reqs[h.Service], h.List()); err != nil {
			fail("restore of %v: %v", h, err)
		}
	}
	if got, want := heldKey(b.Assignments()), heldKey(held); got != want {
		fail("restored state differs:\n%s\nwant\n%s", got, want)
	}
	if got, want := usageKey(b.Usage()), usageKey(w.a.Usage()); got != want {
		fail("restored usage %s, want %s", got, want)
	}
}

// heldKey renders what a listing says: Services, addresses, pool names, issues.
func heldKey(hs []Held) string {
	s := ""
	for _, h := range hs {
		s += fmt.Sprintf("%s %v %v %d\n", h.Service, h.IPs, h.Pools(), h.Issues)
	}
	return s
}

func usageKey(us []PoolUsage) string {
	s := ""
	for _, u := range us {
		s += fmt.Sprintf("%s:%d/%d ", u.Name, u.InUseV4, u.InUseV6)
	}
	return s
}

func (w *world) poolNamed(name string) *Pool {
	for i := range w.pools {
		if w.pools[i].Name == name {
			return &w.pools[i]
		}
	}
	return nil
}

func TestPropertyRandomSequences(t *testing.T) {
	seeds := 12
	steps := 1500
	if testing.Short() {
		seeds, steps = 3, 500
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 42))
			w := &world{t: t, pools: genPools(rng), reqs: map[ServiceKey]*Request{}}
			var err error
			if w.a, err = New(w.pools); err != nil {
				t.Fatal(err)
			}
			var keys []ServiceKey
			for _, ns := range []string{"ns1", "ns2", "ns3"} {
				for i := range 12 {
					keys = append(keys, ServiceKey{ns, fmt.Sprint("svc", i)})
				}
			}
			counts := map[string]int{}
			for step := range steps {
				k := keys[rng.IntN(len(keys))]
				switch op := rng.IntN(20); {
				case op < 12:
					req := randomRequest(rng, k)
					before, had := w.a.Get(k)
					asg, err := w.a.Allocate(req)
					var e *Error
					switch {
					case err == nil:
						w.reqs[k] = req
						counts["allocated"]++
					case !errors.As(err, &e):
						t.Fatalf("step %d: Allocate error of type %T: %v", step, err, err)
					case had:
						// A failed change keeps the old addresses (flagged if the
						// pool no longer admits the Service's new labels).
						if asg.IPs != before.IPs || e.Reason == "" {
							t.Fatalf("step %d: failed Allocate changed %v to %v (%v)", step, before, asg, err)
						}
						kept := *w.reqs[k]
						kept.Labels = req.Labels
						w.reqs[k] = &kept
						counts["kept"]++
					default:
						if _, held := w.a.Get(k); held {
							t.Fatalf("step %d: failed Allocate for a new Service left an assignment", step)
						}
						counts["refused"]++
					}
					// Later joiners a first holder took a port back from are
					// released; they are allocated again, as the controller does.
					for _, ev := range w.a.TakeEvicted() {
						if _, held := w.a.Get(ev); held {
							t.Fatalf("step %d: evicted %s still holds an address", step, ev)
						}
						counts["evicted"]++
						if _, err := w.a.Allocate(w.reqs[ev]); err != nil {
							delete(w.reqs, ev)
						}
					}
					w.check(step, "allocate "+k.String())
				case op < 15:
					if w.a.Release(k) != (w.reqs[k] != nil) {
						t.Fatalf("step %d: Release(%s) disagrees with the model", step, k)
					}
					delete(w.reqs, k)
					w.check(step, "release")
				case op < 16:
					req := w.reqs[k]
					if req == nil || len(req.IPs) > 0 {
						continue
					}
					before, _ := w.a.Get(k)
					after, err := w.a.Reallocate(req)
					if err == nil {
						for _, ip := range after.List() {
							if slices.Contains(before.List(), ip) && len(w.a.Holders(ip)) == 1 {
								t.Fatalf("step %d: Reallocate kept %s", step, ip)
							}
						}
						counts["reallocated"]++
					}
					w.check(step, "reallocate")
				default:
					next := genPools(rng)
					force := rng.IntN(2) == 0
					ch, err := w.a.SetPools(next, force)
					switch {
					case errors.Is(err, ErrHeldBack):
						if force || len(ch.Orphans) == 0 {
							t.Fatalf("step %d: held back wrongly (force %v, %d orphans)", step, force, len(ch.Orphans))
						}
						counts["held back"]++
					case err != nil:
						t.Fatalf("step %d: SetPools: %v", step, err)
					default:
						w.pools = next
						for _, o := range ch.Orphans {
							if _, still := w.a.Get(o.Service); !still {
								delete(w.reqs, o.Service)
							}
						}
						counts["reconfigured"]++
					}
					w.check(step, "reconfigure")
				}
			}
			t.Logf("%v", counts)
			for _, what := range []string{"allocated", "kept", "refused", "reconfigured", "held back", "reallocated"} {
				if counts[what] == 0 && !testing.Short() {
					t.Errorf("the sequence never exercised %q", what)
				}
			}
		})
	}
}
