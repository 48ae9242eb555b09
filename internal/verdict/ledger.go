package verdict

import (
	"sync"
	"sync/atomic"
	"time"
)

// The ledger lets the anomalyevents connector turn only verdicts into
// events that an iforest processor of this process issued. Verdicts travel
// as datapoint attributes, and attributes can be sent by any client; an
// incident id cannot be vouched for by the attribute itself, so the
// processor records every incident it opens and ends here, and the
// connector asks. Both run in one process (the collector), so a package
// variable is the channel: processors and connectors of every pipeline,
// and several chained processors, share it.
//
// Per incident the ledger keeps whether it is open or ended, and which
// connectors already emitted its start and its end: a verdict is turned
// into an event once per connector, so a copy of a real transition (whose
// id a client may have read off an event or computed) raises nothing.
//
// It is bounded: at MaxEntries the oldest ended incident is dropped first,
// else the oldest open one; ended incidents are dropped anyway Grace after
// they ended (their end must reach the connector within that time). Drops
// before the grace are counted (Evicted).

// Defaults of the process-wide ledger.
const (
	// MaxEntries bounds the incidents held: about 120 bytes each, so at
	// most ~8 MB.
	MaxEntries = 1 << 16
	// Grace is how long an ended incident stays known: the longest delay
	// expected between the processor and the connector (batching, queues).
	Grace = 10 * time.Minute
	// maxReaders is the number of connectors told apart (bits of a word).
	maxReaders = 64
)

// Default is the ledger of this process.
var Default = NewLedger(MaxEntries, Grace, time.Now)

// Opened records that a processor of this process opened incident id.
func Opened(id uint64) { Default.Opened(id) }

// Closed records that a processor of this process ended incident id.
func Closed(id uint64) { Default.Closed(id) }

// Restored records incidents that a processor restored open from saved
// state: their start was reported before the restart, so no connector may
// report it again; their end will be.
func Restored(ids []uint64) { Default.Restored(ids) }

// Check is the ledger's answer about a verdict.
type Check uint8

const (
	// Vouched: the verdict is this process's, and new to the asking
	// connector.
	Vouched Check = iota
	// Unknown: no processor of this process issued it (in that state).
	Unknown
	// Repeated: the asking connector already emitted it.
	Repeated
)

// Ledger is a bounded record of incidents. Safe for concurrent use.
type Ledger struct {
	mu      sync.Mutex
	max     int
	grace   int64
	now     func() time.Time
	entries map[uint64]*entry
	// Oldest first; an entry is on one of them.
	open, ended list

	readers map[string]int // connector id -> bit
	evicted atomic.Int64
}

type entry struct {
	id      uint64
	ended   bool
	endedAt int64 // unix nanoseconds, of the ledger's clock
	// Bit r is set when reader r emitted the start / the end.
	claimedStart, claimedEnd uint64
	prev, next               *entry
}

// NewLedger returns a ledger of at most size incidents that keeps ended
// ones for grace, on the clock now.
func NewLedger(size int, grace time.Duration, now func() time.Time) *Ledger {
	return &Ledger{
		max:     max(size, 1),
		grace:   int64(grace),
		now:     now,
		entries: map[uint64]*entry{},
		readers: map[string]int{},
	}
}

// Opened records that incident id is open.
func (l *Ledger) Opened(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire()
	e := l.entries[id]
	switch {
	case e == nil:
		e = l.add(id)
	case e.ended:
		// An id is a hash of the series and the start time: the same one
		// again is the same incident replayed, and reported anew.
		l.ended.remove(e)
		*e = entry{id: id}
	default:
		return
	}
	l.open.push(e)
}

// Closed records that incident id ended. An id the ledger does not hold
// (dropped at the bound, or opened before this process) is recorded ended:
// the processor's word is what counts.
func (l *Ledger) Closed(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire()
	e := l.entries[id]
	switch {
	case e == nil:
		e = l.add(id)
		e.claimedStart = ^uint64(0) // nobody reports a start not seen
	case e.ended:
		return
	default:
		l.open.remove(e)
	}
	e.ended, e.endedAt = true, l.now().UnixNano()
	l.ended.push(e)
}

// Restored records open incidents whose start was reported before.
func (l *Ledger) Restored(ids []uint64) {
	for _, id := range ids {
		l.Opened(id)
		l.mu.Lock()
		if e := l.entries[id]; e != nil && !e.ended {
			e.claimedStart = ^uint64(0)
		}
		l.mu.Unlock()
	}
}

// Reader returns the bit of the connector named name (its component id),
// assigned on first use: a connector recreated by a configuration reload
// keeps its bit, so it does not repeat what its predecessor reported.
// Beyond 64 names, bits are shared.
func (l *Ledger) Reader(name string) Reader {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.readers[name]
	if !ok {
		r = len(l.readers) % maxReaders
		l.readers[name] = r
	}
	return Reader{l: l, bit: 1 << r}
}

// Reader asks the ledger on behalf of one connector.
type Reader struct {
	l   *Ledger
	bit uint64
}

// ClaimStart vouches for the start of incident id once: the incident is
// known (open, or ended within the grace: a start may reach the connector
// after the processor already ended it) and its start was not yet claimed
// by this reader.
func (r Reader) ClaimStart(id uint64) Check { return r.claim(id, false) }

// ClaimEnd vouches for the end of incident id once: the incident ended and
// its end was not yet claimed by this reader.
func (r Reader) ClaimEnd(id uint64) Check { return r.claim(id, true) }

func (r Reader) claim(id uint64, end bool) Check {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire()
	e := l.entries[id]
	if e == nil || end && !e.ended {
		return Unknown
	}
	claimed := &e.claimedStart
	if end {
		claimed = &e.claimedEnd
	}
	if *claimed&r.bit != 0 {
		return Repeated
	}
	*claimed |= r.bit
	return Vouched
}

// IsOpen reports whether incident id is open: a flagged datapoint that
// names it may be reported. (A processor writes an id on flagged points
// only while their incident is open; once it ended, a flagged point naming
// it is a copy.)
func (l *Ledger) IsOpen(id uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[id]
	return e != nil && !e.ended
}

// Live reports whether incident id is known: open, or ended within the
// grace.
func (l *Ledger) Live(id uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire()
	return l.entries[id] != nil
}

// Len returns the number of incidents held.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// Evicted returns how many incidents were dropped at the bound, before
// their grace ran out, since the ledger was made.
func (l *Ledger) Evicted() int64 { return l.evicted.Load() }

// add makes room if needed and enters a new entry (on no list yet).
func (l *Ledger) add(id uint64) *entry {
	if len(l.entries) >= l.max {
		victim := l.ended.head
		if victim == nil {
			victim = l.open.head
		}
		if victim.ended {
			l.ended.remove(victim)
		} else {
			l.open.remove(victim)
		}
		delete(l.entries, victim.id)
		l.evicted.Add(1)
	}
	e := &entry{id: id}
	l.entries[id] = e
	return e
}

// expire drops the ended incidents whose grace ran out.
func (l *Ledger) expire() {
	if l.ended.head == nil {
		return
	}
	cutoff := l.now().UnixNano() - l.grace
	for e := l.ended.head; e != nil && e.endedAt < cutoff; e = l.ended.head {
		l.ended.remove(e)
		delete(l.entries, e.id)
	}
}

// list is a doubly linked list of entries, oldest at head.
type list struct{ head, tail *entry }

func (q *list) push(e *entry) {
	e.prev, e.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = e
	} else {
		q.head = e
	}
	q.tail = e
}

func (q *list) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		q.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		q.tail = e.prev
	}
	e.prev, e.next = nil, nil
}
