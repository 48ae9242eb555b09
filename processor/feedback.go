package iforestprocessor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc64"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/otel-iforest/iforest/internal/detector"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// Feedback: an operator says that incident X was normal (`feedback:` in
// the rules file or the configuration). The processor remembers, for the
// incidents it reported recently, the series, and how far the flagged
// values went beyond the expected band (anomaly.expected.min/max), above
// and below, in the value's units. Feedback on an incident gives its series
// a tolerance: a later flag in the same direction whose departure beyond
// the band is at most feedbackMargin times the incident's largest one is
// not flagged and opens no incident (counted as suppressed, reason
// feedback); a clearly larger departure still is. Flags without a band
// (histograms, joined models) are tolerated up to the incident's peak
// score. Time of day is not part of the context: a mute rule says "at this
// hour".
//
// A feedback entry is in force from when the processor first applies it
// for feedback_ttl, while it stays listed: removing it from the rules file
// withdraws it. An id the processor does not know (the incident was before
// a restart without storage, on another collector, or is no longer among
// the recent ones) is kept pending for feedbackPending, then dropped with a
// warning. With storage, the recent incidents and the feedback are saved
// under their own key (feedbackKey) with the models.

const (
	// feedbackMargin: how much larger than what an operator called normal a
	// departure may be and still be normal.
	feedbackMargin = 1.5
	// feedbackPending: how long feedback for an unknown incident waits for it.
	feedbackPending = time.Hour
)

// tolerance is how far an incident went: its largest departure beyond the
// band above and below (-1: none that way), whether any flag had a band,
// and its peak score.
type tolerance struct {
	up, down, score float64
	band            bool
}

func newTolerance() tolerance { return tolerance{up: -1, down: -1} }

// add takes in a flagged point.
func (t *tolerance) add(value float64, v *detector.Verdict) {
	t.score = max(t.score, v.Score)
	if !v.HasExpected || math.IsNaN(value) {
		return
	}
	t.band = true
	switch lo, hi := v.ExpectedMin, v.ExpectedMax; {
	case value > hi:
		t.up = max(t.up, value-hi)
	case value < lo:
		t.down = max(t.down, lo-value)
	case value >= (lo+hi)/2: // flagged inside the band
		t.up = max(t.up, 0)
	default:
		t.down = max(t.down, 0)
	}
}

// covers reports whether a flagged point is no larger a departure than t,
// with the margin.
func (t *tolerance) covers(value float64, v *detector.Verdict) bool {
	if !t.band || !v.HasExpected || math.IsNaN(value) {
		return v.Score <= t.score
	}
	switch lo, hi := v.ExpectedMin, v.ExpectedMax; {
	case value > hi:
		return t.up >= 0 && value-hi <= feedbackMargin*t.up
	case value < lo:
		return t.down >= 0 && lo-value <= feedbackMargin*t.down
	case value >= (lo+hi)/2:
		return t.up >= 0
	default:
		return t.down >= 0
	}
}

// incidentRecord is what feedback needs to know of a reported incident.
type incidentRecord struct {
	key uint64 // its model's key
	tol tolerance
}

// Feedback entry states.
const (
	fbPending uint8 = iota // the incident is not known (yet)
	fbActive               // in force
	fbExpired              // feedback_ttl passed
	fbDropped              // never known within feedbackPending
)

// fbEntry is one listed feedback entry.
type fbEntry struct {
	id, key uint64
	state   uint8
	since   int64 // unix ns: listed (pending) or applied (active)
	expires int64 // unix ns (active)
	tol     tolerance
}

// feedback holds the recent incidents and the feedback in force. Bounded:
// limit incidents (FIFO), and the entries listed by configuration.
type feedback struct {
	mu         sync.Mutex
	limit      int
	ttl        time.Duration
	pendingFor time.Duration
	logger     *zap.Logger
	now        func() time.Time

	incidents map[uint64]*incidentRecord
	order     []uint64 // incident ids, oldest first from head (a ring once full)
	head      int

	entries  map[uint64]*fbEntry   // listed ids
	bySeries map[uint64][]*fbEntry // active entries by model key
	active   atomic.Int64          // len(bySeries), read without the lock
	bytes    atomic.Int64
}

func newFeedback(limit int, ttl time.Duration, logger *zap.Logger, now func() time.Time) *feedback {
	return &feedback{
		limit: limit, ttl: ttl, pendingFor: feedbackPending, logger: logger, now: now,
		incidents: map[uint64]*incidentRecord{}, entries: map[uint64]*fbEntry{}, bySeries: map[uint64][]*fbEntry{},
	}
}

// record takes in a reported, flagged point of incident v.IncidentID.
func (f *feedback) record(key uint64, value float64, v *detector.Verdict) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.incidents[v.IncidentID]
	if r == nil {
		r = &incidentRecord{key: key, tol: newTolerance()}
		f.addIncident(v.IncidentID, r)
	}
	r.tol.add(value, v)
	// Feedback applied while its incident is still open covers the
	// incident's later points too, not only those seen when it was applied.
	if e := f.entries[v.IncidentID]; e != nil && e.state == fbActive {
		e.tol = r.tol
	}
}

func (f *feedback) addIncident(id uint64, r *incidentRecord) {
	if len(f.order) < f.limit {
		f.order = append(f.order, id)
	} else {
		delete(f.incidents, f.order[f.head])
		f.order[f.head] = id
		f.head = (f.head + 1) % len(f.order)
	}
	f.incidents[id] = r
	f.sized()
}

// tolerates reports whether feedback in force covers a flagged point of
// the model key.
func (f *feedback) tolerates(key uint64, value float64, v *detector.Verdict) bool {
	if f.active.Load() == 0 {
		return false
	}
	now := f.now().UnixNano()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.bySeries[key] {
		if now < e.expires && e.tol.covers(value, v) {
			return true
		}
	}
	return false
}

// setList makes ids the listed feedback: new ids are applied (or wait for
// their incident), ids no longer listed are withdrawn, the others keep
// their state.
func (f *feedback) setList(ids []uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now().UnixNano()
	listed := make(map[uint64]bool, len(ids))
	var applied, pending []string
	for _, id := range ids {
		listed[id] = true
		if f.entries[id] != nil {
			continue
		}
		e := &fbEntry{id: id, state: fbPending, since: now}
		f.entries[id] = e
		if f.activate(e, now) {
			applied = append(applied, verdict.FormatID(id))
		} else {
			pending = append(pending, verdict.FormatID(id))
		}
	}
	withdrawn := 0
	for id := range f.entries {
		if !listed[id] {
			delete(f.entries, id)
			withdrawn++
		}
	}
	f.index()
	if len(applied)+len(pending)+withdrawn > 0 {
		f.logger.Info("feedback updated", zap.Strings("applied", applied),
			zap.Strings("waiting_for_incident", pending), zap.Int("withdrawn", withdrawn),
			zap.Duration("lasts", f.ttl))
	}
}

// activate applies a pending entry if its incident is known.
func (f *feedback) activate(e *fbEntry, now int64) bool {
	r := f.incidents[e.id]
	if r == nil {
		return false
	}
	e.state, e.key, e.tol, e.since, e.expires = fbActive, r.key, r.tol, now, now+int64(f.ttl)
	return true
}

// index rebuilds bySeries from the active entries.
func (f *feedback) index() {
	clear(f.bySeries)
	for _, e := range f.entries {
		if e.state == fbActive {
			f.bySeries[e.key] = append(f.bySeries[e.key], e)
		}
	}
	f.active.Store(int64(len(f.bySeries)))
	f.sized()
}

// tick applies pending entries whose incident is now known, drops those
// that waited too long (with a warning each) and expires the old ones. It
// returns how many it dropped.
func (f *feedback) tick() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now().UnixNano()
	changed, dropped := false, 0
	var applied []uint64
	for _, e := range f.entries {
		switch {
		case e.state == fbPending && f.activate(e, now):
			applied = append(applied, e.id)
			changed = true
		case e.state == fbPending && now-e.since >= int64(f.pendingFor):
			e.state = fbDropped
			dropped++
			f.logger.Warn("feedback names an incident this processor does not know; it is ignored (the incident was reported before a restart without storage, by another collector, or too long ago)",
				zap.String("incident_id", verdict.FormatID(e.id)), zap.Duration("waited", f.pendingFor))
		case e.state == fbActive && now >= e.expires:
			e.state = fbExpired
			changed = true
			f.logger.Info("feedback expired (feedback_ttl); the incident's series is judged as before",
				zap.String("incident_id", verdict.FormatID(e.id)))
		}
	}
	if changed {
		f.index()
	}
	// Said once it holds: index publishes the active count that gate reads
	// without the lock.
	for _, id := range applied {
		f.logger.Info("feedback applied", zap.String("incident_id", verdict.FormatID(id)), zap.Duration("lasts", f.ttl))
	}
	return dropped
}

// sized updates the memory estimate: a map entry and a record per
// incident (about 100 bytes), the ring's slot, and about 150 bytes per
// feedback entry.
func (f *feedback) sized() {
	f.bytes.Store(int64(len(f.incidents))*100 + int64(cap(f.order))*8 + int64(len(f.entries))*150)
}

func (f *feedback) memoryBytes() int64 { return f.bytes.Load() }

// Saved form (storage key feedbackKey), little-endian:
//
//	[8]byte magic "\x89IFFEED\n", uint16 version (1)
//	uint32 incidents, then per incident, oldest first:
//	  uint64 id, uint64 key, tolerance
//	uint32 entries, then per entry, by id:
//	  uint64 id, uint8 state, int64 since, int64 expires, uint64 key, tolerance
//	uint64 CRC-64/ECMA of everything before it
//
// tolerance is float64 up, down, score and a uint8 band flag.

const (
	feedbackKey     = "iforest.feedback"
	feedbackVersion = 1
)

var feedbackMagic = [8]byte{0x89, 'I', 'F', 'F', 'E', 'E', 'D', '\n'}

func (f *feedback) encode() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	le := binary.LittleEndian
	b := append([]byte(nil), feedbackMagic[:]...)
	b = le.AppendUint16(b, feedbackVersion)
	b = le.AppendUint32(b, uint32(len(f.incidents)))
	tol := func(b []byte, t tolerance) []byte {
		b = le.AppendUint64(b, math.Float64bits(t.up))
		b = le.AppendUint64(b, math.Float64bits(t.down))
		b = le.AppendUint64(b, math.Float64bits(t.score))
		if t.band {
			return append(b, 1)
		}
		return append(b, 0)
	}
	for i := range f.order {
		id := f.order[(f.head+i)%len(f.order)]
		r := f.incidents[id]
		b = le.AppendUint64(b, id)
		b = le.AppendUint64(b, r.key)
		b = tol(b, r.tol)
	}
	b = le.AppendUint32(b, uint32(len(f.entries)))
	ids := make([]uint64, 0, len(f.entries))
	for id := range f.entries {
		ids = append(ids, id)
	}
	slices.Sort(ids) // the same state, the same bytes
	for _, id := range ids {
		e := f.entries[id]
		b = le.AppendUint64(b, e.id)
		b = append(b, e.state)
		b = le.AppendUint64(b, uint64(e.since))
		b = le.AppendUint64(b, uint64(e.expires))
		b = le.AppendUint64(b, e.key)
		b = tol(b, e.tol)
	}
	return le.AppendUint64(b, crc64.Checksum(b, envelopeCRC))
}

// decode replaces the tables with a saved form; on error nothing changes.
func (f *feedback) decode(b []byte) error {
	le := binary.LittleEndian
	if len(b) < 8+2+4+4+8 || [8]byte(b[:8]) != feedbackMagic {
		return errors.New("not an iforest feedback table")
	}
	if v := le.Uint16(b[8:]); v != feedbackVersion {
		return fmt.Errorf("format version %d, this build reads version %d", v, feedbackVersion)
	}
	body := b[:len(b)-8]
	if le.Uint64(b[len(b)-8:]) != crc64.Checksum(body, envelopeCRC) {
		return errors.New("checksum mismatch: the stored value is damaged or truncated")
	}
	rest := body[10:]
	short := errors.New("truncated")
	u64 := func() uint64 {
		if len(rest) < 8 {
			panic(short)
		}
		v := le.Uint64(rest)
		rest = rest[8:]
		return v
	}
	u8 := func() uint8 {
		if len(rest) < 1 {
			panic(short)
		}
		v := rest[0]
		rest = rest[1:]
		return v
	}
	u32 := func() int {
		if len(rest) < 4 {
			panic(short)
		}
		v := le.Uint32(rest)
		rest = rest[4:]
		return int(v)
	}
	tol := func() tolerance {
		return tolerance{up: math.Float64frombits(u64()), down: math.Float64frombits(u64()), score: math.Float64frombits(u64()), band: u8() == 1}
	}
	var err error
	nf := newFeedback(f.limit, f.ttl, f.logger, f.now)
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = short
			}
		}()
		n := u32()
		if n > len(rest)/41 {
			panic(short)
		}
		for range n {
			id, key := u64(), u64()
			// The newest within the limit, should it have shrunk.
			nf.addIncident(id, &incidentRecord{key: key, tol: tol()})
		}
		n = u32()
		if n > len(rest)/58 {
			panic(short)
		}
		for range n {
			e := &fbEntry{id: u64(), state: u8()}
			e.since, e.expires, e.key, e.tol = int64(u64()), int64(u64()), u64(), tol()
			if e.state > fbDropped {
				err = fmt.Errorf("feedback entry state %d", e.state)
			}
			nf.entries[e.id] = e
		}
	}()
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes after the last entry", len(rest))
	}
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.incidents, f.order, f.head, f.entries = nf.incidents, nf.order, nf.head, nf.entries
	f.index()
	return nil
}

// loadFeedback restores the saved incidents and feedback, if feedback is
// on. Whatever goes wrong costs only them: one warning and a count.
func (p *iforestProcessor) loadFeedback(ctx context.Context, client storage.Client) {
	f := p.ops.fb
	if f == nil {
		return
	}
	data, err := client.Get(ctx, feedbackKey)
	if err == nil && data != nil {
		err = f.decode(data)
	}
	if err != nil {
		p.logger.Warn("could not restore the saved feedback and recent incidents; feedback in the rules file is applied again to the incidents still known",
			zap.String("storage", p.cfg.Storage.String()), zap.Error(err))
		p.tel.ProcessorIforestSnapshotErrors.Add(ctx, 1)
	}
}

// saveFeedback saves the recent incidents and feedback, if feedback is on.
func (p *iforestProcessor) saveFeedback(ctx context.Context, client storage.Client) {
	f := p.ops.fb
	if f == nil {
		return
	}
	if err := client.Set(ctx, feedbackKey, f.encode()); err != nil {
		p.logger.Debug("could not save the feedback", zap.Error(err))
		p.tel.ProcessorIforestSnapshotErrors.Add(ctx, 1)
	}
}
