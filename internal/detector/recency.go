package detector

import (
	"unsafe"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

// Memory ceiling: which model goes when a shard is full.
//
// Each shard keeps its models on two recency lists, most recently seen at
// the front: models seen once so far, and models seen again (established).
// A new series at the limit takes the place of
//
//  1. the least recently seen model that was seen only once, unless it was
//     seen in this same batch (the same now): a batch with more new series
//     than room must not evict the ones it just added;
//  2. else the least recently seen established model, if it has gone quiet:
//     not seen for more than twice its own usual interval between sightings
//     (a model whose interval is not known yet - seen twice in one batch,
//     or just restored - is not quiet).
//
// Otherwise every model is in use and the newcomer is over the limit: its
// point passes unscored (and is counted). So a burst of new series cannot
// push out models of series that still report, while series that stopped
// (a rollout's old pods) make room as soon as they miss their next report,
// not only after series_ttl.

// recency is a doubly linked list of models threaded through the series.
type recency struct {
	head, tail *series
}

func (l *recency) pushFront(s *series) {
	s.prev, s.next = nil, l.head
	if l.head != nil {
		l.head.prev = s
	} else {
		l.tail = s
	}
	l.head = s
}

func (l *recency) remove(s *series) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		l.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		l.tail = s.prev
	}
	s.prev, s.next = nil, nil
}

func (sh *shard) list(s *series) *recency {
	if s.repeat {
		return &sh.more
	}
	return &sh.once
}

// touch moves s to the front of the models seen again and updates its
// usual interval between sightings (a moving average).
func (sh *shard) touch(s *series, now int64) {
	if s.interval < 0 {
		// Restored: the gap since the saved sighting includes the downtime
		// and says nothing about the series' interval.
		s.interval = 0
	} else if iv := now - s.lastSeen; iv > 0 {
		if s.interval == 0 {
			s.interval = iv
		} else {
			s.interval += (iv - s.interval) / 4
		}
	}
	s.lastSeen = now
	if sh.more.head == s {
		return
	}
	sh.list(s).remove(s)
	s.repeat = true
	sh.more.pushFront(s)
}

// add puts a new model under key.
func (sh *shard) add(key uint64, s *series, now int64) {
	s.lastSeen = now
	sh.series[key] = s
	sh.once.pushFront(s)
}

// drop removes the model of key, which is s.
func (sh *shard) drop(key uint64, s *series) {
	sh.list(s).remove(s)
	delete(sh.series, key)
}

// victim returns the model to evict for a new one, or nil if there is none
// to spare (see the rules above).
func (sh *shard) victim(now int64) *series {
	if s := sh.once.tail; s != nil && s.lastSeen != now {
		return s
	}
	if s := sh.more.tail; s != nil && s.interval > 0 && now-s.lastSeen > 2*s.interval {
		return s
	}
	return nil
}

// place makes room for a new model in a full shard. It reports false if
// there is none to be had (see victim).
func (d *Detector) place(sh *shard, now int64) bool {
	if sh.limit <= 0 || len(sh.series) < sh.limit {
		return true
	}
	v := sh.victim(now)
	if v == nil {
		return false
	}
	sh.drop(v.key, v)
	d.bytes.Add(-int64(v.bytes))
	d.evictedLimit.Add(1)
	return true
}

// Estimated memory.
//
// Each model knows its approximate size (its struct, window, forest, score
// quantile and members, plus its share of the map), kept up to date when it
// changes, and the detector sums them in an atomic, so the estimate costs
// nothing to read.

// mapEntryBytes is a model's share of its shard's map: key, pointer, control
// byte and the table's slack, rounded up from the 47 bytes measured with
// 100,000 models held after a million were added and most deleted again
// (Go's tables run between 7/16 and 7/8 full, and deletions leave marks).
const mapEntryBytes = 56

// rngBytes is the heap object behind series.rng (rand.Rand wraps a source
// interface).
const rngBytes = 16

func (s *series) memBytes() int {
	n := heapsize.Of(int(unsafe.Sizeof(series{})), true) + mapEntryBytes + rngBytes +
		heapsize.Of(4*cap(s.win), false) + heapsize.Of(int(unsafe.Sizeof(member{}))*cap(s.members), false)
	if s.forest != nil {
		n += s.forest.MemoryBytes()
	}
	if s.quant != nil {
		n += s.quant.memBytes()
	}
	if s.lr != nil {
		n += s.lr.memBytes()
	}
	return n
}

// resized records a change of s's size in the detector's total.
func (d *Detector) resized(s *series) {
	if n := s.memBytes(); n != s.bytes {
		d.bytes.Add(int64(n - s.bytes))
		s.bytes = n
	}
}

// MemoryBytes returns the estimated memory held by the models.
func (d *Detector) MemoryBytes() int64 { return d.bytes.Load() }
