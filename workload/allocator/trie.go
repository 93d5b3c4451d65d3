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
// Each leaf also records the owner of each address it holds (an index the
// allocator gives meaning to), so no separate address-to-owner map is needed:
// the walk that sets or clears a bit reaches the owner slot anyway.
//
// Empty nodes are recycled as soon as the cursor has left them, so memory
// stays proportional to the addresses in use while an allocate/release
// cycle at the cursor does not build and tear down nodes each time.
//
// Addresses that are never handed out (outside the range at the right edge,
// and, when avoiding buggy IPs, IPv4 .0/.255 and an IPv6 prefix's
// Subnet-Router anycast address) are "forbidden": they are
// counted as full but never as used.
type trie struct {
	span  iprange.U128 // last valid offset
	first uint64       // low 64 bits of the range's first address (for .0/.255)
	avoid bool         // skip IPv4 addresses ending in .0 or .255
	// skipFirst keeps back offset 0: an IPv6 prefix's Subnet-Router anycast
	// address, when avoiding buggy IPs.
	skipFirst bool
	levels    int // root level; leaves are level 0
	root      *node
	spare     []*node      // recycled nodes, so steady-state churn does not allocate
	used      uint64       // allocated addresses
	cursor    iprange.U128 // next-fit: searches start here
	// wrapped is set when the cursor went past the end back to 0: the range
	// has been gone through, and a pool with more ranges moves to the next
	// one (see pool.free) rather than starting this one again.
	wrapped bool
	// cpath caches the nodes from the root to the leaf holding the cursor
	// (when that leaf exists), so that the common take and clear, both at
	// or near the cursor, touch one leaf instead of walking the tree. The
	// nodes of the cursor's path are never recycled, so it stays valid
	// until the cursor moves to another leaf.
	cpath path
	cbase iprange.U128 // offset of the first address of that leaf, when cok
	cok   bool
}

// inCursorLeaf reports whether off lies in the cached leaf of the cursor.
func (t *trie) inCursorLeaf(off iprange.U128) bool {
	return t.cok && off.Hi == t.cbase.Hi && off.Lo&^63 == t.cbase.Lo
}

type node struct {
	full uint64 // bit i: child i (address i in a leaf) has no free address
	// present (interior): bit i set when kids holds child i.
	// In a leaf it holds the forbidden mask instead.
	present uint64
	kids    []*node // interior: existing children, in bit order
	owner   []int32 // leaf: owner of each used address
}

const allFull = ^uint64(0)

func newTrie(r iprange.Range, avoidBuggy bool) *trie {
	span := r.Span()
	levels := 0
	if l := span.BitLen(); l > 6 {
		levels = (l - 1) / 6
	}
	_, anycast := r.SubnetRouterAnycast()
	t := &trie{
		span:      span,
		first:     iprange.FromAddr(r.First).Lo,
		avoid:     avoidBuggy && r.Is4(),
		skipFirst: avoidBuggy && anycast,
		levels:    levels,
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
		if n.owner == nil {
			n.owner = make([]int32, 64)
		}
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
	if t.skipFirst && base.IsZero() {
		m |= 1
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
	if t.skipFirst && off.IsZero() {
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

// firstFree returns the first free offset in [lo, hi].
func (t *trie) firstFree(lo, hi iprange.U128) (iprange.U128, bool) {
	off, ok := t.find(t.root, t.levels, iprange.U128{}, lo)
	if !ok || off.Cmp(hi) > 0 {
		return iprange.U128{}, false
	}
	return off, true
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

// take allocates the first free offset at or after the cursor for owner.
func (t *trie) take(owner int32) (iprange.U128, bool) {
	t.wrapped = false // a new pass, if the cursor had wrapped
	if t.cok {
		// Fast path, written out because it is most of every allocation: a
		// free address in the cursor's own leaf.
		leaf := t.cpath[0]
		if free := ^leaf.full & (allFull << (t.cursor.Lo & 63)); free != 0 {
			i := uint64(bits.TrailingZeros64(free))
			off := iprange.U128{Hi: t.cbase.Hi, Lo: t.cbase.Lo | i}
			if leaf.full|1<<i == allFull || i == 63 || off == t.span {
				// The leaf fills up, or the cursor leaves it or wraps.
				t.mark(&t.cpath, off, owner)
				t.advance(off)
				return off, true
			}
			leaf.full |= 1 << i
			leaf.owner[i] = owner
			t.used++
			t.cursor = iprange.U128{Hi: off.Hi, Lo: off.Lo + 1}
			return off, true
		}
	}
	off, ok := t.next()
	if !ok {
		return off, false
	}
	t.set(off, owner)
	t.advance(off)
	return off, true
}

// leaf returns the leaf holding off, or nil if none exists.
func (t *trie) leaf(off iprange.U128) *node {
	if t.inCursorLeaf(off) {
		return t.cpath[0]
	}
	n := t.root
	for level := t.levels; level > 0 && n != nil; level-- {
		n = n.child(digit(off, level))
	}
	return n
}

// owner returns the owner of off, and whether off is in use.
func (t *trie) owner(off iprange.U128) (int32, bool) {
	n := t.leaf(off)
	if n == nil {
		return 0, false
	}
	i := digit(off, 0)
	if (n.full&^n.present)&(1<<i) == 0 {
		return 0, false
	}
	return n.owner[i], true
}

// setOwner changes the owner of a used offset.
func (t *trie) setOwner(off iprange.U128, owner int32) {
	t.leaf(off).owner[digit(off, 0)] = owner
}

// path is scratch space for set and clear: the nodes from the root down.
// A range has at most 22 levels.
type path [22]*node

// walk fills p with the nodes from the root to the leaf of off and returns
// how deep it got: 0 when the leaf exists, else the level of the missing child.
func (t *trie) walk(off iprange.U128, p *path) int {
	n := t.root
	for level := t.levels; level > 0; level-- {
		p[level] = n
		if n = n.child(digit(off, level)); n == nil {
			return level
		}
	}
	p[0] = n
	return 0
}

// set marks off as used by owner. off must be free and not forbidden.
func (t *trie) set(off iprange.U128, owner int32) {
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
	t.mark(&p, off, owner)
}

// mark sets off, whose leaf is p[0], as used by owner.
func (t *trie) mark(p *path, off iprange.U128, owner int32) {
	n := p[0]
	i := digit(off, 0)
	n.full |= 1 << i
	n.owner[i] = owner
	t.used++
	// Propagate fullness upwards while nodes become full.
	for level := 0; level < t.levels && p[level].full == allFull; level++ {
		p[level+1].full |= 1 << digit(off, level+1)
	}
}

// clear marks off as free.
func (t *trie) clear(off iprange.U128) {
	var local path
	p := &local
	if t.inCursorLeaf(off) {
		if leaf := t.cpath[0]; leaf.full != allFull {
			// Fast path: no parent bit changes, and the cursor's leaf is
			// never recycled.
			leaf.full &^= 1 << (off.Lo & 63)
			t.used--
			return
		}
		p = &t.cpath
	} else {
		t.walk(off, p)
	}
	leaf := p[0]
	wasFull := leaf.full == allFull
	leaf.full &^= 1 << digit(off, 0)
	t.used--
	// A node that was full is not any more: clear its bit in the parent,
	// and so on up while the parents were full too.
	for level := 1; wasFull && level <= t.levels; level++ {
		wasFull = p[level].full == allFull
		p[level].full &^= 1 << digit(off, level)
	}
	if leaf.full&^leaf.present == 0 {
		t.recycle(off, p, 0)
	}
}

// empty reports whether nothing below n is in use. Interior nodes without
// children are empty; an interior node keeps only children that hold
// something or hold the cursor (see recycle).
func (n *node) empty(level int) bool {
	if level == 0 {
		return n.full&^n.present == 0
	}
	return n.present == 0
}

// prune recycles the empty nodes on the way to off that the cursor is not in.
func (t *trie) prune(off iprange.U128) {
	var p path
	t.recycle(off, &p, t.walk(off, &p))
}

// recycle detaches empty nodes of path p, from level from upwards, and keeps
// them for reuse. It stops at the first node that holds something or holds
// the cursor (its ancestors then do too).
func (t *trie) recycle(off iprange.U128, p *path, from int) {
	for level := from; level < t.levels; level++ {
		c := p[level]
		shift := uint(6 * (level + 1))
		if !c.empty(level) || off.Shr(shift) == t.cursor.Shr(shift) {
			return
		}
		p[level+1].removeChild(digit(off, level+1))
		c.full, c.present, c.kids = 0, 0, c.kids[:0]
		t.spare = append(t.spare, c)
	}
}
