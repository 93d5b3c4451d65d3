package allocator

import (
	"math/bits"

	"github.com/calico-lb/calico-lb/workload/iprange"
)

// trie tracks which addresses of one range are in use. It is a sparse 64-ary
// tree of bitmaps over offsets [0, span]: a leaf holds one bit per address,
// and every node keeps a "full" bit per child, so the first free address at
// or after any point is found by one walk down the tree. Every operation
// costs O(height) = O(log64 size): the same with 0 or 60,000 addresses in
// use, and at most 22 levels for the whole IPv6 space. Nodes exist only
// where something is in use, so a /64 costs memory in proportion to its use.
//
// Addresses that are never handed out (outside the range at the right edge,
// and IPv4 .0/.255 when avoiding buggy IPs) are "forbidden": they are
// counted as full but never as used.
type trie struct {
	span   iprange.U128 // last valid offset
	first  uint64       // low 64 bits of the range's first address (for .0/.255)
	avoid  bool         // skip IPv4 addresses ending in .0 or .255
	levels int          // root level; leaves are level 0
	root   *node
	spare  []*node      // recycled nodes, so steady-state churn does not allocate
	used   uint64       // allocated addresses
	cursor iprange.U128 // next-fit: searches start here
}

type node struct {
	full uint64 // bit i: child i (address i in a leaf) has no free address
	// present (interior): bit i set when kids holds child i.
	// In a leaf it holds the forbidden mask instead.
	present uint64
	n       uint64  // used addresses below this node
	kids    []*node // interior: existing children, in bit order
}

const allFull = ^uint64(0)

func newTrie(r iprange.Range, avoidBuggy bool) *trie {
	span := r.Span()
	levels := 0
	if l := span.BitLen(); l > 6 {
		levels = (l - 1) / 6
	}
	t := &trie{
		span:   span,
		first:  iprange.FromAddr(r.First).Lo,
		avoid:  avoidBuggy && r.Is4(),
		levels: levels,
	}
	t.root = t.newNode(t.levels, iprange.U128{})
	return t
}

// exhausted reports whether no address is free.
func (t *trie) exhausted() bool { return t.root.full == allFull }

func digit(off iprange.U128, level int) uint {
	return uint(off.Shr(uint(6*level)).Lo & 63)
}

func childBase(base iprange.U128, level int, i uint) iprange.U128 {
	return base.Add(iprange.U128{Lo: uint64(i)}.Shl(uint(6 * level)))
}

// newNode makes a node at level covering offsets from base, with the
// children (or addresses) that hold no allowed address marked full.
func (t *trie) newNode(level int, base iprange.U128) *node {
	var n *node
	if k := len(t.spare); k > 0 {
		n = t.spare[k-1]
		t.spare = t.spare[:k-1]
	} else {
		n = &node{}
	}
	if level == 0 {
		n.present = t.forbidden(base)
		n.full = n.present
		return n
	}
	// Only nodes on the right edge of the range have children beyond span:
	// k is the index of the child that holds span.
	k := t.span.Sub(base).Shr(uint(6 * level))
	if k.Hi != 0 || k.Lo >= 64 {
		return n
	}
	n.full |= allFull << (k.Lo + 1) // children past the end (a shift of 64 is 0)
	if !t.hasAllowed(childBase(base, level, uint(k.Lo)), level) {
		n.full |= 1 << k.Lo
	}
	return n
}

// hasAllowed reports whether the child at level with base cb holds an
// address that may be handed out. Any 64 consecutive addresses hold at most
// two forbidden ones, so only a child cut short by the range end can fail.
func (t *trie) hasAllowed(cb iprange.U128, level int) bool {
	end := cb.Add(iprange.U128{Lo: 1}.Shl(uint(6 * level))).Sub(iprange.U128{Lo: 1})
	if end.Cmp(t.span) > 0 {
		end = t.span
	}
	if !t.avoid || end.Sub(cb).Cmp(iprange.U128{Lo: 2}) >= 0 {
		return true
	}
	for o := cb; o.Cmp(end) <= 0; o = o.AddSmall(1) {
		if !t.isForbidden(o) {
			return true
		}
	}
	return false
}

// forbidden returns the mask of offsets base..base+63 that are never handed out.
func (t *trie) forbidden(base iprange.U128) uint64 {
	var m uint64
	if rem := t.span.Sub(base); rem.Hi == 0 && rem.Lo < 63 {
		m = allFull << (rem.Lo + 1)
	}
	if t.avoid {
		low := (t.first + base.Lo) & 255
		if i := (256 - low) & 255; i < 64 {
			m |= 1 << i
		}
		if i := (255 - low) & 255; i < 64 {
			m |= 1 << i
		}
	}
	return m
}

func (t *trie) isForbidden(off iprange.U128) bool {
	if off.Cmp(t.span) > 0 {
		return true
	}
	if !t.avoid {
		return false
	}
	low := (t.first + off.Lo) & 255
	return low == 0 || low == 255
}

func (n *node) child(i uint) *node {
	if n.present&(1<<i) == 0 {
		return nil
	}
	return n.kids[bits.OnesCount64(n.present&(1<<i-1))]
}

func (n *node) addChild(i uint, c *node) {
	idx := bits.OnesCount64(n.present & (1<<i - 1))
	n.kids = append(n.kids, nil)
	copy(n.kids[idx+1:], n.kids[idx:])
	n.kids[idx] = c
	n.present |= 1 << i
}

func (n *node) removeChild(i uint) {
	idx := bits.OnesCount64(n.present & (1<<i - 1))
	copy(n.kids[idx:], n.kids[idx+1:])
	n.kids[len(n.kids)-1] = nil
	n.kids = n.kids[:len(n.kids)-1]
	n.present &^= 1 << i
}

// next returns the first free offset at or after the cursor, wrapping
// around, without taking it. Next-fit rather than lowest-first means a
// released address is handed out again only after the range wraps, which
// keeps stale DNS records and firewall rules from reaching a new Service.
func (t *trie) next() (iprange.U128, bool) {
	if t.exhausted() {
		return iprange.U128{}, false
	}
	if off, ok := t.find(t.root, t.levels, iprange.U128{}, t.cursor); ok {
		return off, true
	}
	return t.find(t.root, t.levels, iprange.U128{}, iprange.U128{})
}

// find returns the first free offset >= from below n (which covers base..).
// n may be nil: a subtree nobody has touched, free but for forbidden offsets.
func (t *trie) find(n *node, level int, base, from iprange.U128) (iprange.U128, bool) {
	var d uint
	if from.Cmp(base) > 0 {
		d = digit(from, level)
	}
	if n == nil {
		start := base
		if from.Cmp(base) > 0 {
			start = from
		}
		end := base.Add(iprange.U128{Lo: 1}.Shl(uint(6 * (level + 1)))).Sub(iprange.U128{Lo: 1})
		if level >= 21 {
			end = iprange.U128{Hi: allFull, Lo: allFull}
		}
		for o, k := start, 0; k < 3 && o.Cmp(end) <= 0; o, k = o.AddSmall(1), k+1 {
			if !t.isForbidden(o) {
				return o, true
			}
		}
		return iprange.U128{}, false
	}
	cand := ^n.full & (allFull << d)
	for cand != 0 {
		i := uint(bits.TrailingZeros64(cand))
		cand &^= 1 << i
		if level == 0 {
			return base.AddSmall(uint64(i)), true
		}
		cb := childBase(base, level, i)
		sub := cb
		if i == d {
			sub = from
		}
		if off, ok := t.find(n.child(i), level-1, cb, sub); ok {
			return off, true
		}
	}
	return iprange.U128{}, false
}

// take allocates the first free offset at or after the cursor.
func (t *trie) take() (iprange.U128, bool) {
	off, ok := t.next()
	if !ok {
		return off, false
	}
	t.set(off)
	t.cursor = off.AddSmall(1)
	if t.cursor.Cmp(t.span) > 0 {
		t.cursor = iprange.U128{}
	}
	return off, true
}

// isUsed reports whether off is allocated.
func (t *trie) isUsed(off iprange.U128) bool {
	n := t.root
	for level := t.levels; level > 0; level-- {
		if n = n.child(digit(off, level)); n == nil {
			return false
		}
	}
	i := digit(off, 0)
	return (n.full&^n.present)&(1<<i) != 0
}

// path is scratch space for set and clear: the nodes from the root down.
// A range has at most 22 levels.
type path [22]*node

// set marks off as used. off must be free and not forbidden.
func (t *trie) set(off iprange.U128) {
	var p path
	n := t.root
	base := iprange.U128{}
	for level := t.levels; level > 0; level-- {
		p[level] = n
		i := digit(off, level)
		c := n.child(i)
		cb := childBase(base, level, i)
		if c == nil {
			c = t.newNode(level-1, cb)
			n.addChild(i, c)
		}
		n, base = c, cb
	}
	p[0] = n
	n.full |= 1 << digit(off, 0)
	t.used++
	for level := 0; level <= t.levels; level++ {
		p[level].n++
	}
	// Propagate fullness upwards while nodes become full.
	for level := 0; level < t.levels && p[level].full == allFull; level++ {
		p[level+1].full |= 1 << digit(off, level+1)
	}
}

// clear marks off as free and recycles nodes that no longer hold anything.
func (t *trie) clear(off iprange.U128) {
	var p path
	n := t.root
	for level := t.levels; level > 0; level-- {
		p[level] = n
		n = n.child(digit(off, level))
	}
	p[0] = n
	n.full &^= 1 << digit(off, 0)
	t.used--
	for level := 0; level <= t.levels; level++ {
		p[level].n--
		if level > 0 {
			p[level].full &^= 1 << digit(off, level)
		}
	}
	for level := 0; level < t.levels && p[level].n == 0; level++ {
		p[level+1].removeChild(digit(off, level+1))
		c := p[level]
		c.full, c.present, c.kids = 0, 0, c.kids[:0]
		t.spare = append(t.spare, c)
	}
}
