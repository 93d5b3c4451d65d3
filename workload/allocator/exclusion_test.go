package allocator

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// The trie forbids, inside a range, exactly the addresses an exclusion
// names: automatic allocation skips what an explicit request is refused.
func TestTrieForbidsExactlyTheExclusions(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	ranges := []string{"10.0.0.0/24", "10.0.0.250-10.0.1.5", "10.0.0.7", "fd00::/120", "fd00::/126", "fd00::/127",
		"fd00::-fd00::ff", "fd00::1-fd00::ff", "fd00::100-fd00::1ff", "fd00::/64", "10.0.0.0/8"}
	for range 200 {
		bits := 20 + rng.IntN(13)
		a := iprange.U128{Lo: uint64(rng.Uint32())}.ToAddr(true)
		ranges = append(ranges, iprange.FromPrefix(netip.PrefixFrom(a, bits)).String())
		v6 := iprange.U128{Hi: 0xfd00 << 48, Lo: rng.Uint64()}.ToAddr(false)
		ranges = append(ranges, iprange.FromPrefix(netip.PrefixFrom(v6, 100+rng.IntN(29))).String())
	}
	for _, s := range ranges {
		for _, avoid := range []bool{true, false} {
			r := iprange.MustParse(s)
			p := &pool{Pool: Pool{Name: "p", AvoidBuggyIPs: avoid}}
			pr := &prange{r: r, base: iprange.FromAddr(r.First), v4: r.Is4(), pool: p, t: newTrie(r, avoid)}
			span := r.Span()
			check := func(off iprange.U128) {
				ip := pr.at(off)
				_, excluded := pr.exclusion(ip)
				if got := pr.t.isForbidden(off); got != excluded {
					t.Fatalf("%s avoid=%v: %s forbidden by the trie = %v, excluded = %v", s, avoid, ip, got, excluded)
				}
			}
			for i := uint64(0); i < 300; i++ {
				if o := (iprange.U128{Lo: i}); o.Cmp(span) <= 0 {
					check(o)
					check(span.Sub(o))
				}
			}
			for range 300 {
				if o := (iprange.U128{Hi: rng.Uint64(), Lo: rng.Uint64()}).Shr(uint(128 - span.BitLen())); o.Cmp(span) <= 0 {
					check(o)
				}
			}
		}
	}
}
