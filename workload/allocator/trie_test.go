package allocator

import (
	"math/rand/v2"
	"testing"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// model is the obvious implementation the trie must agree with.
type model struct {
	r      iprange.Range
	avoid  bool
	used   map[iprange.U128]bool
	owners map[iprange.U128]int32
	cursor iprange.U128
}

func (m *model) allowed(off iprange.U128) bool {
	if !m.avoid {
		return true
	}
	ip := m.r.At(off)
	if a, ok := m.r.SubnetRouterAnycast(); ok && a == ip {
		return false
	}
	return !iprange.IsBuggy(ip)
}

// next scans from the cursor, wrapping, over at most limit offsets.
func (m *model) next(limit int) (iprange.U128, bool) {
	span := m.r.Span()
	o := m.cursor
	for range limit {
		if !m.used[o] && m.allowed(o) {
			return o, true
		}
		if o == span {
			o = iprange.U128{}
		} else {
			o = o.AddSmall(1)
		}
	}
	return iprange.U128{}, false
}

func TestTrieAgainstModel(t *testing.T) {
	ranges := []struct {
		r     string
		avoid bool
		small bool // small enough to scan the model exhaustively
	}{
		{"10.0.0.0/24", true, true},
		{"10.0.0.0/24", false, true},
		{"10.0.0.200-10.0.3.7", true, true},
		{"10.0.0.255-10.0.1.0", true, true}, // nothing allowed
		{"10.0.0.255-10.0.1.1", true, true}, // one allowed, at the end
		{"10.0.0.0", true, true},            // single forbidden address
		{"10.0.0.5", true, true},            // single address
		{"10.1.0.0/20", true, true},
		{"10.1.0.0-10.1.16.0", true, true}, // 4097 addresses: straddles a level
		{"fd00::/118", false, true},
		{"fd00::/64", false, false},
		{"::/0", false, false},
		{"fd00::ffff:ffff:ffff:ff00-fd00:0:0:1::ff", false, false},
	}
	for _, tc := range ranges {
		t.Run(tc.r, func(t *testing.T) {
			r := iprange.MustParse(tc.r)
			tr := newTrie(r, tc.avoid)
			m := &model{r: r, avoid: tc.avoid && r.Is4(), used: map[iprange.U128]bool{}, owners: map[iprange.U128]int32{}}
			rng := rand.New(rand.NewPCG(7, uint64(len(tc.r))))
			span := r.Span()
			randOff := func() iprange.U128 {
				if span.Hi == 0 && span.Lo < 1<<20 {
					return iprange.U128{Lo: rng.Uint64N(span.Lo + 1)}
				}
				// Big ranges: cluster around a few places, including both ends.
				switch rng.IntN(4) {
				case 0:
					return iprange.U128{Lo: rng.Uint64N(300)}
				case 1:
					return span.Sub(iprange.U128{Lo: rng.Uint64N(300)})
				case 2:
					return iprange.U128{Hi: rng.Uint64() & span.Hi, Lo: rng.Uint64()}
				}
				return iprange.U128{Hi: span.Hi / 2, Lo: rng.Uint64N(300)}
			}
			var held []iprange.U128
			scan := 1 << 16
			if span.Hi == 0 && span.Lo < 1<<16 {
				scan = int(span.Lo) + 1
			}
			for step := range 20000 {
				switch op := rng.IntN(10); {
				case op < 5: // take
					got, ok := tr.take(int32(step))
					want, wok := m.next(scan)
					if tc.small && (ok != wok || (ok && got != want)) {
						t.Fatalf("step %d: take = %v %v, model %v %v", step, got, ok, want, wok)
					}
					if !ok {
						continue
					}
					if m.used[got] || !m.allowed(got) || got.Cmp(span) > 0 {
						t.Fatalf("step %d: take returned %v (used %v, allowed %v)", step, got, m.used[got], m.allowed(got))
					}
					m.used[got] = true
					m.owners[got] = int32(step)
					m.cursor = got.AddSmall(1)
					if got == span {
						m.cursor = iprange.U128{}
					}
					held = append(held, got)
				case op < 8 && len(held) > 0: // clear a random held offset
					i := rng.IntN(len(held))
					off := held[i]
					held[i] = held[len(held)-1]
					held = held[:len(held)-1]
					tr.clear(off)
					delete(m.used, off)
				default: // set a specific offset, as an explicit request would
					off := randOff()
					if off.Cmp(span) > 0 || m.used[off] || !m.allowed(off) {
						if tr.isForbidden(off) != !m.allowed(off) && off.Cmp(span) <= 0 {
							t.Fatalf("step %d: isForbidden(%v) disagrees", step, off)
						}
						continue
					}
					if _, used := tr.owner(off); used {
						t.Fatalf("step %d: owner(%v) reports a free offset as used", step, off)
					}
					tr.set(off, -int32(step))
					m.used[off] = true
					m.owners[off] = -int32(step)
					held = append(held, off)
				}
				if tr.used != uint64(len(m.used)) {
					t.Fatalf("step %d: used = %d, model %d", step, tr.used, len(m.used))
				}
			}
			for off := range m.used {
				if o, used := tr.owner(off); !used || o != m.owners[off] {
					t.Fatalf("owner(%v) = %d, %v; want %d", off, o, used, m.owners[off])
				}
			}
			// Release everything: only the cursor's path may remain.
			for off := range m.used {
				tr.clear(off)
			}
			if tr.used != 0 {
				t.Fatalf("after releasing all: used %d", tr.used)
			}
			if n := countNodes(tr.root); n > tr.levels+1 {
				t.Fatalf("after releasing all, %d nodes remain; at most the cursor path (%d) may", n, tr.levels+1)
			}
		})
	}
}

func TestTrieFillsExactlyCapacity(t *testing.T) {
	for _, tc := range []struct {
		r     string
		avoid bool
	}{{"10.0.0.0/22", true}, {"10.0.0.0/22", false}, {"10.0.0.3-10.0.2.0", true}, {"fd00::/116", false}} {
		r := iprange.MustParse(tc.r)
		tr := newTrie(r, tc.avoid)
		want := r.Size().Uint64()
		if tc.avoid {
			want -= r.BuggyCount()
		}
		seen := map[iprange.U128]bool{}
		for {
			off, ok := tr.take(1)
			if !ok {
				break
			}
			if seen[off] {
				t.Fatalf("%s: %v handed out twice", tc.r, off)
			}
			seen[off] = true
		}
		if uint64(len(seen)) != want || !tr.exhausted() {
			t.Fatalf("%s: handed out %d, capacity %d (exhausted %v)", tc.r, len(seen), want, tr.exhausted())
		}
	}
}

func countNodes(n *node) int {
	c := 1
	for _, k := range n.kids {
		c += countNodes(k)
	}
	return c
}
