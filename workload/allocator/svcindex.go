package allocator

import "hash/maphash"

// svcIndex maps Services to their slots in state.svcs. It is a
// linear-probing hash table rather than a Go map because an allocation
// needs "look up, then insert" and a release "look up, then delete": with a
// map each step hashes both strings of the key again, which was a third of
// an allocate/release cycle. Here each call hashes once and probes once.
//
// Slots hold only the hash and the slot number; the key itself is compared
// through svcs, which holds it anyway. That keeps the table small and free
// of pointers, so writing it costs no GC write barriers and the GC never
// scans it.
type svcIndex struct {
	seed  maphash.Seed
	slots []indexSlot // power-of-two length; hash 0 marks an empty slot
	n     int
}

type indexSlot struct {
	hash uint64
	slot int32
}

func newSvcIndex() *svcIndex {
	return &svcIndex{seed: maphash.MakeSeed(), slots: make([]indexSlot, 64)}
}

func (x *svcIndex) hash(k ServiceKey) uint64 {
	if h := maphash.Comparable(x.seed, k); h != 0 {
		return h
	}
	return 1
}

// find returns the position holding k, or the empty position where it
// would go.
func (x *svcIndex) find(k ServiceKey, h uint64, svcs []svcEntry) (int, bool) {
	mask := uint64(len(x.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s.hash == 0 {
			return int(i), false
		}
		if s.hash == h && svcs[s.slot].svc == k {
			return int(i), true
		}
	}
}

// lookup returns where k is (ok) or would go, for insertAt.
func (x *svcIndex) lookup(k ServiceKey, svcs []svcEntry) (pos int, h uint64, ok bool) {
	h = x.hash(k)
	pos, ok = x.find(k, h, svcs)
	return pos, h, ok
}

// insertAt adds a key that lookup did not find at pos; the table must not
// have changed since. It keeps the load at or under one half.
func (x *svcIndex) insertAt(pos int, h uint64, slot int32) {
	if 2*(x.n+1) > len(x.slots) {
		x.grow()
		pos = x.empty(h)
	}
	x.slots[pos] = indexSlot{hash: h, slot: slot}
	x.n++
}

// empty returns the first empty position of h's probe run.
func (x *svcIndex) empty(h uint64) int {
	mask := uint64(len(x.slots) - 1)
	i := h & mask
	for x.slots[i].hash != 0 {
		i = (i + 1) & mask
	}
	return int(i)
}

func (x *svcIndex) grow() { x.resize(2 * len(x.slots)) }

// reserve makes room for n entries in all without further growth.
func (x *svcIndex) reserve(n int) {
	size := len(x.slots)
	for size < 2*n {
		size *= 2
	}
	if size != len(x.slots) {
		x.resize(size)
	}
}

func (x *svcIndex) resize(size int) {
	old := x.slots
	x.slots = make([]indexSlot, size)
	for _, s := range old {
		if s.hash != 0 {
			x.slots[x.empty(s.hash)] = s
		}
	}
}

func (x *svcIndex) get(k ServiceKey, svcs []svcEntry) (int32, bool) {
	i, ok := x.find(k, x.hash(k), svcs)
	return x.slots[i].slot, ok
}

// put sets k to slot; svcs[slot] must already hold k.
func (x *svcIndex) put(k ServiceKey, slot int32, svcs []svcEntry) {
	i, h, ok := x.lookup(k, svcs)
	if ok {
		x.slots[i].slot = slot
		return
	}
	x.insertAt(i, h, slot)
}

// del removes k and returns its slot. Deletion shifts later entries of the
// probe run back, so no tombstones accumulate.
func (x *svcIndex) del(k ServiceKey, svcs []svcEntry) (int32, bool) {
	i, ok := x.find(k, x.hash(k), svcs)
	if !ok {
		return 0, false
	}
	v := x.slots[i].slot
	mask := len(x.slots) - 1
	for j := i; ; {
		j = (j + 1) & mask
		if x.slots[j].hash == 0 {
			break
		}
		// An entry whose home lies cyclically in (i, j] must stay.
		home := int(x.slots[j].hash) & mask
		if (i <= j && i < home && home <= j) || (i > j && (i < home || home <= j)) {
			continue
		}
		x.slots[i] = x.slots[j]
		i = j
	}
	x.slots[i] = indexSlot{}
	x.n--
	return v, true
}

func (x *svcIndex) len() int { return x.n }

// each calls f for every slot indexed.
func (x *svcIndex) each(f func(slot int32)) {
	for _, s := range x.slots {
		if s.hash != 0 {
			f(s.slot)
		}
	}
}
