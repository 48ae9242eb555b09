package iforestprocessor

import (
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

// nameCache remembers whether metric names are selected (metrics.include /
// exclude), so that the regular expressions run once per name rather than
// once per metric of every batch. It is bounded: a fixed table of
// nameSlots entries, each name in one of two slots chosen by its hash; a
// new name takes an empty one or replaces the second. A client sending
// ever new metric names therefore costs a cache miss each, never memory,
// and names longer than maxCachedName are matched every time instead of
// being kept.
//
// Entries are immutable and published with atomic pointers, so lookups
// take no lock.
type nameCache struct {
	slots *[nameSlots]atomic.Pointer[nameEntry]
	bytes atomic.Int64 // estimated heap held, see memBytes
}

type nameEntry struct {
	name     string
	selected bool
}

const (
	nameSlots     = 4096 // a power of two
	maxCachedName = 256
)

func newNameCache() *nameCache {
	c := &nameCache{slots: new([nameSlots]atomic.Pointer[nameEntry])}
	c.bytes.Store(int64(heapsize.Of(int(unsafe.Sizeof(*c.slots)), true)))
	return c
}

// positions returns the two slots a name may occupy.
func positions(name string) (int, int) {
	h := hashString(name)
	return int(h & (nameSlots - 1)), int((h >> 32) & (nameSlots - 1))
}

// get returns whether name is selected, if it is cached.
func (c *nameCache) get(name string) (selected, ok bool) {
	i, j := positions(name)
	if e := c.slots[i].Load(); e != nil && e.name == name {
		return e.selected, true
	}
	if e := c.slots[j].Load(); e != nil && e.name == name {
		return e.selected, true
	}
	return false, false
}

// put caches name's selection.
func (c *nameCache) put(name string, selected bool) {
	if len(name) > maxCachedName {
		return
	}
	i, j := positions(name)
	slot := &c.slots[j]
	if c.slots[i].Load() == nil {
		slot = &c.slots[i]
	}
	// The name is copied: the one passed in belongs to a batch.
	e := &nameEntry{name: strings.Clone(name), selected: selected}
	if old := slot.Swap(e); old != nil {
		c.bytes.Add(-int64(old.memBytes()))
	}
	c.bytes.Add(int64(e.memBytes()))
}

func (e *nameEntry) memBytes() int {
	return heapsize.Of(int(unsafe.Sizeof(*e)), true) + heapsize.Of(len(e.name), false)
}

// memBytes is the cache's estimated heap.
func (c *nameCache) memBytes() int64 { return c.bytes.Load() }
