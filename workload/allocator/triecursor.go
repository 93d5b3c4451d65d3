package allocator

import "github.com/calico-lb/calico-lb/workload/iprange"

// ahead reports whether a free address lies at or after the cursor before
// the range wraps.
func (t *trie) ahead() bool {
	if t.wrapped || t.exhausted() {
		return false
	}
	if t.cok && ^t.cpath[0].full&(allFull<<(t.cursor.Lo&63)) != 0 {
		return true
	}
	_, ok := t.find(t.root, t.levels, iprange.U128{}, t.cursor)
	return ok
}

// seek puts the cursor at off (which must be within the range), as a fresh
// start: the range counts as not yet gone through.
func (t *trie) seek(off iprange.U128) {
	t.wrapped = false
	if off == t.cursor {
		return
	}
	old := t.cursor
	t.cursor = off
	t.moved(old)
}

// advance moves the cursor past off, recycling the leaf it leaves if that
// is empty, and caches the path to the cursor's new leaf.
func (t *trie) advance(off iprange.U128) {
	old := t.cursor
	t.cursor = off.AddSmall(1)
	if t.cursor.Cmp(t.span) > 0 {
		t.cursor = iprange.U128{}
		t.wrapped = true
	}
	t.moved(old)
}

// moved follows a cursor that moved from old: it recycles the leaf left
// behind if that is empty and caches the path to the cursor's leaf.
func (t *trie) moved(old iprange.U128) {
	leaf := t.cursor.Shr(6)
	if t.inCursorLeaf(t.cursor) {
		return
	}
	if old.Shr(6) != leaf {
		t.prune(old)
	}
	var p path
	t.cok = t.walk(t.cursor, &p) == 0
	if t.cok {
		t.cpath, t.cbase = p, leaf.Shl(6)
	}
}
