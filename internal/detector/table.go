package detector

import (
	"unsafe"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

// table holds the baselines of one shard of a Grouped detector: an
// open-addressing index (linear probing) into a dense slice of slots.
//
// A Go map would do, but its values cannot be updated in place, so each
// point would look its series up twice (read, then write back 200 bytes),
// and at a million series each lookup is a cache miss. Here a point costs
// one probe of a 4-byte index and one slot, which it updates in place. The
// dense slice also lets eviction sample slots uniformly. No pointers, so
// the garbage collector never scans it.
type table struct {
	idx   []int32 // position in slots, or -1; len is 0 or a power of two
	slots []slot
	shift uint // 64 - log2(len(idx))
}

type slot struct {
	key uint64
	b   baseline
}

const slotBytes = int(unsafe.Sizeof(slot{}))

// home is the index position key hashes to. Shard selection used the key's
// low bits, so take the high ones of a multiplicative hash.
func (t *table) home(key uint64) int {
	return int((key * 0x9e3779b97f4a7c15) >> t.shift)
}

// find returns the slot of key, or nil.
func (t *table) find(key uint64) *slot {
	if j := t.lookup(key); j >= 0 {
		return &t.slots[j]
	}
	return nil
}

// lookup returns the position of key's slot, or -1.
func (t *table) lookup(key uint64) int {
	if len(t.idx) == 0 {
		return -1
	}
	mask := len(t.idx) - 1
	for i := t.home(key); ; i = (i + 1) & mask {
		j := t.idx[i]
		if j < 0 || t.slots[j].key == key {
			return int(j)
		}
	}
}

// insert adds key, which must be absent, and returns its zeroed slot.
func (t *table) insert(key uint64) *slot {
	if 4*(len(t.slots)+1) > 3*len(t.idx) {
		t.grow()
	}
	t.slots = append(t.slots, slot{key: key})
	t.place(key, int32(len(t.slots)-1))
	return &t.slots[len(t.slots)-1]
}

func (t *table) place(key uint64, j int32) {
	mask := len(t.idx) - 1
	i := t.home(key)
	for t.idx[i] >= 0 {
		i = (i + 1) & mask
	}
	t.idx[i] = j
}

// grow doubles the index and re-places every slot.
func (t *table) grow() {
	n := max(2*len(t.idx), 16)
	t.idx = make([]int32, n)
	for i := range t.idx {
		t.idx[i] = -1
	}
	t.shift = 64
	for m := n; m > 1; m >>= 1 {
		t.shift--
	}
	for j := range t.slots {
		t.place(t.slots[j].key, int32(j))
	}
}

// removeAt deletes the slot at position j: the last slot moves into its
// place, and the index closes the gap left by j's entry (backward shift, so
// probes never need tombstones).
func (t *table) removeAt(j int) {
	mask := len(t.idx) - 1
	i := t.pos(t.slots[j].key)
	// Backward-shift deletion: pull later entries of the probe run into the
	// hole unless their home lies cyclically in (hole, entry].
	for k := (i + 1) & mask; t.idx[k] >= 0; k = (k + 1) & mask {
		if h := t.home(t.slots[t.idx[k]].key); !cyclicIn(i, h, k) {
			t.idx[i] = t.idx[k]
			i = k
		}
	}
	t.idx[i] = -1
	last := len(t.slots) - 1
	if j != last {
		t.idx[t.pos(t.slots[last].key)] = int32(j)
		t.slots[j] = t.slots[last]
	}
	t.slots = t.slots[:last]
	if last == 0 {
		*t = table{} // empty: hold nothing
		return
	}
	if cap(t.slots) > 64 && len(t.slots) < cap(t.slots)/4 {
		// Give memory back after a mass eviction.
		t.slots = append(make([]slot, 0, 2*len(t.slots)), t.slots...)
	}
}

// cyclicIn reports whether h lies in (i, k] on the index's circle.
func cyclicIn(i, h, k int) bool {
	if i <= k {
		return i < h && h <= k
	}
	return i < h || h <= k
}

// pos returns the index position holding key, which must be present.
func (t *table) pos(key uint64) int {
	mask := len(t.idx) - 1
	for i := t.home(key); ; i = (i + 1) & mask {
		if t.slots[t.idx[i]].key == key {
			return i
		}
	}
}

// bytes is the table's memory.
func (t *table) bytes() int {
	return heapsize.Of(4*cap(t.idx), false) + heapsize.Of(slotBytes*cap(t.slots), false)
}
