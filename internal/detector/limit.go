package detector

import (
	"iter"
	"sync/atomic"
	"time"
)

// The parts of the series limit that per-series models (recency.go) and
// high-cardinality baselines (grouped.go) share.

// seriesLimit is the global count of models held against the limit.
type seriesLimit struct {
	max    int64 // 0: no limit
	held   atomic.Int64
	cursor atomic.Uint32 // where the next search of other shards starts
}

// take counts one more model if the limit allows it.
func (l *seriesLimit) take() bool {
	for {
		n := l.held.Load()
		if l.max > 0 && n >= l.max {
			return false
		}
		if l.held.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// give counts one model less.
func (l *seriesLimit) give() { l.held.Add(-1) }

// searchShards is how many other shards holding models a newcomer at the
// limit looks in for an idle model to replace (empty ones, or ones locked
// at the moment, are passed over without counting).
const searchShards = 8

// others yields the other shards' indices, starting at a rotating position
// so that successive newcomers look in different ones.
func (l *seriesLimit) others(shards int) iter.Seq[int] {
	return func(yield func(int) bool) {
		start := int(l.cursor.Add(1) % uint32(shards))
		for i := range shards {
			if !yield((start + i) % shards) {
				return
			}
		}
	}
}

// idle says whether a model last seen at lastSeen is really idle at now:
// not seen for more than twice its usual interval, or, when that is not
// known (interval <= 0), twice the typical interval of its shard.
func idle(now, lastSeen, interval, typical int64) bool {
	if interval <= 0 {
		interval = typical
	}
	return now-lastSeen > 2*interval
}

// fallbackInterval is the typical interval assumed while nothing is known:
// no model has reported twice and no refused or evicted series has come
// back. Five minutes covers the usual scrape intervals (10 s to 5 min), so
// a first scrape over more series than the limit does not evict series
// before their second point; a slot taken by a series that never reports
// again is free after ten minutes at most.
const fallbackInterval = int64(5 * time.Minute)

// intervals sums the usual intervals of a shard's established models (under
// the shard's lock).
type intervals struct {
	sum float64
	n   int
}

// change accounts for a model's interval changing from old to now (<= 0:
// not known).
func (iv *intervals) change(old, now int64) {
	if old > 0 {
		iv.sum -= float64(old)
		iv.n--
	}
	if now > 0 {
		iv.sum += float64(now)
		iv.n++
	}
	if iv.n == 0 {
		iv.sum = 0 // no drift from rounding
	}
}

func (iv *intervals) mean() int64 {
	if iv.n <= 0 {
		return 0
	}
	return int64(iv.sum / float64(iv.n))
}

// runningInterval is a running average of intervals that any shard may
// update: one per detector, the fallback of shards that know none of
// their own. Updates may be lost to races; it is only a yardstick.
type runningInterval struct{ v atomic.Int64 }

func (r *runningInterval) note(iv int64) {
	if old := r.v.Load(); old == 0 {
		r.v.Store(iv)
	} else {
		r.v.Store(old + (iv-old)/8)
	}
}

func (r *runningInterval) get() int64 { return r.v.Load() }

// doorkeeper remembers, per shard, a few series that were refused at the
// limit or evicted by it, and when they were last seen. When one comes
// back, the time it stayed away is an interval of a series that really
// reports: with no established model to go by (every slot taken by series
// seen only once, or within one batch), it is what says when the others
// are idle. A fixed table: a new entry replaces whatever had its slot.
type doorkeeper struct {
	keys [doorSlots]uint64
	seen [doorSlots]int64
	iv   int64 // running average of the intervals at which they came back
}

const doorSlots = 32

// doorSlot takes high bits of the key: the shard was chosen by the low ones.
func doorSlot(key uint64) int { return int(key>>48) & (doorSlots - 1) }

// note remembers key as last seen at t.
func (dk *doorkeeper) note(key uint64, t int64) {
	i := doorSlot(key)
	dk.keys[i], dk.seen[i] = key, t
}

// back is called when a series without a model arrives at now: if it was
// remembered, it returns the time it stayed away (else 0) and learns it.
func (dk *doorkeeper) back(key uint64, now int64) int64 {
	i := doorSlot(key)
	if dk.keys[i] != key || dk.seen[i] == 0 || now <= dk.seen[i] {
		return 0
	}
	iv := now - dk.seen[i]
	dk.keys[i], dk.seen[i] = 0, 0
	if dk.iv == 0 {
		dk.iv = iv
	} else {
		dk.iv += (iv - dk.iv) / 4
	}
	return iv
}

// typicalIntervals are a detector's yardsticks for models of unknown
// interval (see typical).
type typicalIntervals struct {
	seen runningInterval // established models' intervals, all shards
	back runningInterval // doorkeepers' intervals, all shards
}

// typical is the interval after which a model of unknown interval in a
// shard counts as idle (twice it): the mean interval of the shard's
// established models; without any, the detector's running average of
// established intervals; without any, the interval at which series refused
// or evicted at the limit came back, in the shard or anywhere; and with
// nothing known at all, fallbackInterval.
func (t *typicalIntervals) typical(iv *intervals, dk *doorkeeper) int64 {
	if m := iv.mean(); m > 0 {
		return m
	}
	if m := t.seen.get(); m > 0 {
		return m
	}
	if dk.iv > 0 {
		return dk.iv
	}
	if m := t.back.get(); m > 0 {
		return m
	}
	return fallbackInterval
}
