package detector

import (
	"unsafe"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

// Memory ceiling: which model goes when the detector is full.
//
// The series limit is global: a count of the models held, taken with a
// compare-and-swap, so that while fewer series than the limit report, every
// one gets a model however their keys fall into shards.
//
// At the limit a new series may only take the place of a model that is
// really idle (see idle):
//
//   - an established model (its usual interval between sightings is known)
//     not seen for more than twice that interval;
//   - a model whose interval is not known yet (seen once; seen only within
//     one batch; restored and not seen since) not seen for more than twice
//     the typical interval of its shard (see typical).
//
// The victim is looked for in the newcomer's shard, then in up to
// searchShards other shards, each taken with TryLock (never waiting for a
// lock while holding one). Without one, the newcomer's point passes
// unscored (OverLimit).
//
// So series that report keep their models; one-off series (a burst of new
// keys, or keys sent twice in one request) hold their slots for a couple
// of the typical intervals only; and a scrape that arrives round-robin
// over more series than the limit does not thrash: the series admitted
// first keep their models, the others are refused until a model idles.

// Each shard keeps its models on two recency lists, most recently seen at
// the front: models whose interval is not known yet, and established ones.
// recency is such a list, threaded through the series.
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
	if s.interval > 0 {
		return &sh.known
	}
	return &sh.unknown
}

// touch records a sighting of s at now: it moves s to the front of its list
// and updates its usual interval between sightings (a moving average).
func (d *Detector) touch(sh *shard, s *series, now int64) {
	old := s.interval
	if old < 0 {
		// Restored: the gap since the saved sighting includes the downtime
		// and says nothing about the series' interval.
		s.interval = 0
	} else if iv := now - s.lastSeen; iv > 0 {
		if old == 0 {
			s.interval = iv
		} else {
			s.interval += (iv - s.interval) / 4
		}
	}
	s.lastSeen = now
	if old > 0 && sh.known.head == s {
		sh.intervals.change(old, s.interval)
		return
	}
	if old > 0 {
		sh.known.remove(s)
	} else {
		sh.unknown.remove(s)
	}
	sh.intervals.change(old, s.interval)
	if old <= 0 && s.interval > 0 {
		d.typ.seen.note(s.interval)
	}
	sh.list(s).pushFront(s)
}

// add puts a new model under key, seen at now.
func (sh *shard) add(key uint64, s *series, now int64) {
	s.lastSeen = now
	sh.series[key] = s
	sh.list(s).pushFront(s)
	sh.intervals.change(0, s.interval)
}

// drop removes the model of key, which is s.
func (sh *shard) drop(key uint64, s *series) {
	sh.list(s).remove(s)
	sh.intervals.change(s.interval, 0)
	delete(sh.series, key)
}

// settle counts the restored models of a shard as seen at now, the first
// time the shard is used after a restore (see Detector.Restore): a restart
// must not make them look idle at once. series_ttl still removes those
// that never report again.
func (sh *shard) settle(now int64) {
	if !sh.restored {
		return
	}
	sh.restored = false
	for s := sh.unknown.head; s != nil; s = s.next {
		if s.interval < 0 {
			s.lastSeen = max(s.lastSeen, now)
		}
	}
}

// victim returns a really idle model of sh to make room for a new one, or
// nil (see the rules above).
func (d *Detector) victim(sh *shard, now int64) *series {
	typical := d.typ.typical(&sh.intervals, &sh.door)
	// Models of unknown interval share one yardstick: if the least
	// recently seen is not idle, none is.
	if s := sh.unknown.tail; s != nil && idle(now, s.lastSeen, s.interval, typical) {
		return s
	}
	// Established ones each have their own: look at a few.
	n := 0
	for s := sh.known.tail; s != nil && n < knownProbes; s = s.prev {
		if idle(now, s.lastSeen, s.interval, typical) {
			return s
		}
		n++
	}
	return nil
}

// knownProbes is how many of a shard's least recently seen established
// models a newcomer looks at.
const knownProbes = 4

// admit makes room for a new model in sh (locked) at now: below the limit
// it counts one more; at it, it evicts a really idle model, of sh or of
// another shard. It reports false if there is none to be had.
func (d *Detector) admit(sh *shard, now int64) bool {
	if d.limit.take() {
		return true
	}
	if v := d.victim(sh, now); v != nil {
		d.evictForLimit(sh, v)
		return true
	}
	searched := 0
	for o := range d.limit.others(len(d.shards)) {
		other := &d.shards[o]
		if other == sh || !other.mu.TryLock() {
			continue
		}
		var v *series
		if len(other.series) > 0 {
			searched++
			other.settle(now)
			if v = d.victim(other, now); v != nil {
				d.evictForLimit(other, v)
			}
		}
		other.mu.Unlock()
		if v != nil {
			return true
		}
		if searched == searchShards {
			break
		}
	}
	return false
}

// evictForLimit drops v of sh to make room at the limit: the newcomer takes
// its place in the count. The doorkeeper remembers when v was last seen, so
// that its return tells the shard how long its series really stay away.
func (d *Detector) evictForLimit(sh *shard, v *series) {
	sh.door.note(v.key, v.lastSeen)
	sh.drop(v.key, v)
	d.bytes.Add(-int64(v.bytes))
	d.evictedLimit.Add(1)
}

// remove drops s of sh for good (idle for series_ttl): one model less.
func (d *Detector) remove(sh *shard, s *series) {
	sh.drop(s.key, s)
	d.bytes.Add(-int64(s.bytes))
	d.limit.give()
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

// MemoryBytes returns the estimated memory held by the models and the
// shards (with their doorkeepers).
func (d *Detector) MemoryBytes() int64 { return d.bytes.Load() + d.fixed }
