package detector

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/otel-iforest/iforest/internal/forest"
	"github.com/otel-iforest/iforest/internal/heapsize"
)

// minTrain is the fewest observations a tree is built from: fewer points
// than this isolate almost anything.
const minTrain = 8

// MinWarmup is the smallest Config.Warmup: a model scores only once it has
// a forest.
const MinWarmup = minTrain

// maxDims bounds the inputs of one model (histograms use 2).
const maxDims = 2

// Detector holds one model per key. It is safe for concurrent use: keys are
// spread over shards, each with its own lock, so callers working on
// different series rarely wait for each other.
type Detector struct {
	cfg    Config
	shards []shard
	limit  seriesLimit      // see recency.go
	typ    typicalIntervals // see limit.go
	fixed  int64            // the shards themselves (locks, lists, doorkeepers)
	// Counters for TakeStats.
	created, evictedIdle, evictedLimit atomic.Int64
	bytes                              atomic.Int64 // estimated, see MemoryBytes
	// growPerPoint is how many trees a warming model builds per observation,
	// so that it has a full forest exactly when warm-up ends.
	growPerPoint int
}

// Stats are counters a caller exports as telemetry. Fields are deltas since
// the last call to TakeStats.
type Stats struct {
	TreesBuilt int64
	Created    int64
	// Models dropped because they were idle longer than the TTL (Evict)...
	EvictedIdle int64
	// ...or to make room for a new series at the series limit.
	EvictedLimit int64
	// High-cardinality group models dropped, idle or at max_groups.
	GroupsEvictedIdle, GroupsEvictedLimit int64
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	s.TreesBuilt += o.TreesBuilt
	s.Created += o.Created
	s.EvictedIdle += o.EvictedIdle
	s.EvictedLimit += o.EvictedLimit
	s.GroupsEvictedIdle += o.GroupsEvictedIdle
	s.GroupsEvictedLimit += o.GroupsEvictedLimit
}

type shard struct {
	mu     sync.Mutex
	series map[uint64]*series
	// The recency lists, the established models' intervals and the
	// doorkeeper of the series limit (recency.go, limit.go).
	unknown, known recency
	intervals      intervals
	door           doorkeeper
	restored       bool // models restored and not yet settled (see settle)
	scratch        scratch
	_              [64]byte // keep shards' locks on separate cache lines
}

// scratch is per-shard working memory, used under the shard lock, so the hot
// path does not allocate.
type scratch struct {
	// Trees built: counted here, on a cache line the shard's user already
	// holds, rather than in one counter that every core would pull over.
	built atomic.Int64

	x        [maxDims]float64
	in       [maxDims]float64 // forest inputs of a point with derived ones
	r        [1]float64       // the residual of a one-input point
	vec      []float64
	perm     []int32
	sample   []float32
	builders map[int]*forest.Builder // by dims
	// tally: memBytes go into Detector.bytes (bytes as last added). A
	// shard's scratch is counted there; a high-cardinality group's is
	// counted with its group.
	tally bool
	bytes int
}

func (sc *scratch) memBytes() int {
	n := heapsize.Of(4*cap(sc.perm), false) + heapsize.Of(4*cap(sc.sample), false) + heapsize.Of(8*cap(sc.vec), false)
	for _, b := range sc.builders {
		n += b.MemoryBytes()
	}
	return n
}

// series is the state of one model.
type series struct {
	rate     rateState
	kind     Kind
	dims     int // raw inputs
	fdims    int // forest inputs: dims plus derived ones (see lookback.go)
	key      uint64
	lastSeen int64
	// The shard's recency lists (recency.go).
	prev, next *series
	interval   int64 // usual time between sightings (caller's clock); 0 unknown, -1 restored and not seen since
	bytes      int   // estimated size, see memBytes

	win     []float32 // ring buffer of the last WindowSize inputs, row-major
	head    int       // next row to write
	rows    int       // rows filled
	learned int       // observations learned in total

	forest   *forest.Forest
	nextTree int
	toRefit  int
	pcg      rand.PCG
	rng      *rand.Rand

	quant *scoreQuantile // only with Contamination > 0
	lr    *longRun       // one-input models: context, calibration, held points
	inc   incident
	rep   repeats
	// The window's range and how many values sit at each end, one-input
	// models (see beyond.go).
	lo, hi   float32
	nlo, nhi int32
	members  []member // multivariate models: latest value of each feature
}

// New returns a detector that holds at most maxSeries models (0: no
// limit). cfg must be valid (see Config).
func New(cfg Config, maxSeries int) *Detector {
	d := &Detector{cfg: cfg, shards: make([]shard, max(cfg.Shards, 1))}
	d.limit.max = int64(max(maxSeries, 0))
	d.fixed = int64(heapsize.Of(len(d.shards)*int(unsafe.Sizeof(shard{})), true))
	span := cfg.Warmup - minTrain + 1
	d.growPerPoint = (cfg.Trees + span - 1) / span
	for i := range d.shards {
		d.shards[i].series = make(map[uint64]*series)
		d.shards[i].scratch.tally = true
	}
	return d
}

// Observe scores p against its series' model, then learns it. now is the
// caller's wall clock (unix nanoseconds), used only for idle eviction.
func (d *Detector) Observe(p Point, now int64) Verdict {
	if d.future(p.Time, now) {
		return Verdict{Status: FutureTime}
	}
	sh := &d.shards[p.Key%uint64(len(d.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.settle(now)

	s := sh.series[p.Key]
	switch {
	case s == nil:
		if s = d.create(sh, p.Key, p.Kind, p.Kind.dims(), now); s == nil {
			return Verdict{Status: OverLimit}
		}
	case s.kind != p.Kind:
		// A series whose metric changed type starts over: its history is in
		// other units.
		s = d.replace(sh, s, p.Kind, p.Kind.dims(), now)
	default:
		d.resetFutureClock(&s.rate, now)
		if s.rate.outOfOrder(p.Time) {
			// Not a sighting: a series that only repeats old points is
			// not kept alive by them.
			return Verdict{Status: OutOfOrder}
		}
		d.touch(sh, s, now)
	}

	x := sh.scratch.x[:s.dims]
	if st := s.rate.toInputs(&p, x); st != Scored {
		return Verdict{Status: st}
	}

	return d.judge(sh, s, p.Key, p.Time, x, p.Ratio)
}

// future says whether a point of time t lies further ahead of the caller's
// clock now than Config.MaxTimeAhead. Such a point would become its
// series' clock, and every later, correct point would look out of order.
func (d *Detector) future(t, now int64) bool {
	return d.cfg.MaxTimeAhead > 0 && t != 0 && t-now > d.cfg.MaxTimeAhead
}

// resetFutureClock starts a series' clock over when it lies further ahead
// of now than a new point may (it was restored from a snapshot taken
// without the check, or the caller's clock went back): otherwise no later
// point would be in order.
func (d *Detector) resetFutureClock(rs *rateState, now int64) {
	if d.future(rs.time, now) {
		*rs = rateState{}
	}
}

// MemberUpdate is a new value of one feature of a multivariate model.
type MemberUpdate struct {
	Index int   // the feature's position in the model's vector
	Time  int64 // unix nanoseconds
	Value float64
}

// ObserveMembers joins the features of a multivariate model: it records the
// updates as the latest values of their members and, if every member has a
// value no older than staleness (nanoseconds) before the newest update,
// observes the vector of latest values. Metrics of one entity are scraped
// separately, so members rarely share a timestamp; a vector with a missing
// or stale member is not scored (Incomplete). An update not newer than its
// member's last value is ignored.
func (d *Detector) ObserveMembers(key uint64, n int, ups []MemberUpdate, staleness int64, now int64) Verdict {
	sh := &d.shards[key%uint64(len(d.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.settle(now)
	if s := sh.series[key]; s != nil && s.kind == Vector && s.dims == n {
		// Only an update that will be taken is a sighting.
		d.resetFutureMembers(s, now)
		if st := d.freshness(s.members, ups, now); st != Scored {
			return Verdict{Status: st}
		}
	}
	s, v := d.vectorSeries(sh, key, n, now)
	if s == nil {
		return v
	}
	var t int64
	fresh := false
	for _, u := range ups {
		m := &s.members[u.Index]
		if isBad(u.Value) || (m.set && u.Time <= m.time) || d.future(u.Time, now) {
			continue
		}
		m.value, m.time, m.set = u.Value, u.Time, true
		t = max(t, u.Time)
		fresh = true
	}
	if !fresh {
		if d.freshness(nil, ups, now) == FutureTime {
			return Verdict{Status: FutureTime}
		}
		return Verdict{Status: OutOfOrder}
	}
	x := sh.scratch.vec[:0]
	for _, m := range s.members {
		if !m.set || t-m.time > staleness {
			return Verdict{Status: Incomplete}
		}
		x = append(x, m.value)
	}
	sh.scratch.vec = x
	s.rate.time = t
	return d.judge(sh, s, key, t, x, false)
}

// freshness says whether any of ups would be taken by members (nil: none
// set yet): Scored if one would, else FutureTime if one was only too far
// ahead, else OutOfOrder.
func (d *Detector) freshness(members []member, ups []MemberUpdate, now int64) Status {
	st := OutOfOrder
	for _, u := range ups {
		switch {
		case isBad(u.Value):
		case d.future(u.Time, now):
			st = FutureTime
		case members == nil || !members[u.Index].set || u.Time > members[u.Index].time:
			return Scored
		}
	}
	return st
}

// resetFutureMembers forgets member values from too far ahead of now (see
// resetFutureClock).
func (d *Detector) resetFutureMembers(s *series, now int64) {
	for i := range s.members {
		if m := &s.members[i]; m.set && d.future(m.time, now) {
			*m = member{}
		}
	}
	d.resetFutureClock(&s.rate, now)
}

// member is the latest value of one feature of a multivariate model.
type member struct {
	value float64
	time  int64
	set   bool
}

// vectorSeries finds or makes the multivariate model of key with n
// features; a model whose feature count changed starts over. With the
// series limit reached it returns nil and the verdict to give.
func (d *Detector) vectorSeries(sh *shard, key uint64, n int, now int64) (*series, Verdict) {
	s := sh.series[key]
	switch {
	case s == nil:
		if s = d.create(sh, key, Vector, n, now); s == nil {
			return nil, Verdict{Status: OverLimit}
		}
	case s.kind != Vector || s.dims != n:
		s = d.replace(sh, s, Vector, n, now)
	default:
		d.touch(sh, s, now)
		return s, Verdict{}
	}
	s.members = make([]member, n)
	d.resized(s)
	return s, Verdict{}
}

// create makes a model for key, evicting an idle one at the series limit;
// nil if there is none (see admit).
func (d *Detector) create(sh *shard, key uint64, kind Kind, dims int, now int64) *series {
	if iv := sh.door.back(key, now); iv > 0 {
		d.typ.back.note(iv)
	}
	if !d.admit(sh, now) {
		sh.door.note(key, now)
		return nil
	}
	s := d.newSeries(key, kind, dims)
	sh.add(key, s, now)
	d.created.Add(1)
	d.resized(s)
	return s
}

// replace gives the series of old (whose metric changed type) a new model;
// for the counters and the limit it is the same series, which keeps its
// interval.
func (d *Detector) replace(sh *shard, old *series, kind Kind, dims int, now int64) *series {
	sh.drop(old.key, old)
	d.bytes.Add(-int64(old.bytes))
	s := d.newSeries(old.key, kind, dims)
	s.interval = old.interval
	sh.add(old.key, s, now)
	d.resized(s)
	return s
}

// judge scores x against the series' forest, explains and groups the
// verdict, then learns x: score first, learn after. ratio says the point's
// values lie in [0, 1] (a utilisation), for its expected band.
func (d *Detector) judge(sh *shard, s *series, key uint64, t int64, x []float64, ratio bool) Verdict {
	v := Verdict{Status: Warmup, Threshold: d.threshold(s)}
	lr := s.lr
	scale := 1.0 // of a one-input series' residual (longRun.scaleFor)
	if lr != nil {
		lr.u = -1
		// One-input series: the forest sees the value's residual from its
		// context (longrun.go).
		r := sh.scratch.r[:1]
		r[0] = lr.residual(d.cfg.Seasonality, x[0], t, s.learned == 0)
		scale = lr.scaleFor(t, d.cfg.WindowSize) // by the prediction residual chose
		r[0] *= scale
		x = r
	}
	if s.learned >= d.cfg.Warmup && s.forest != nil {
		v.Status = Scored
		in := x
		var mean float64 // of the lookback points, for the derived input
		if s.fdims > s.dims {
			in = sh.scratch.in[:2]
			in[0] = x[0]
			in[1] = s.departure(d.cfg.WindowSize, 0, d.cfg.Lookback, x[0])
			mean = x[0] - in[1]
		}
		// Most points of a calibrated series are ordinary: when the first
		// eight trees score one below the series' exit floor (longrun.go),
		// the other trees cannot bring its verdict near the threshold, and
		// the walks stop there. The raw score it is calibrated from, and
		// counted with, is then the eight trees' estimate: by that, its
		// written score is at most 1/(1 + 0.3 x points per week), 0.0016
		// at five minutes (a stretch's evidence, from the points before,
		// can add to it). Lifted points are scored in full.
		var floor float64
		if lr != nil && s.quant == nil && s.learned >= calStart && !d.cfg.allTrees && !s.lifts(x[0]) {
			floor = lr.exitFloor(v.Threshold)
		}
		raw, _ := s.forest.ScoreAsInsertedBelow(in, floor)
		v.Score = s.beyond(x[0], raw)
		if lr != nil {
			if s.quant == nil {
				// With contamination set, the series' own quantile of its
				// raw scores is the calibration.
				v.Score = lr.calibrate(v.Score, s.learned)
			}
			if math.Abs(x[0]/scale) < lr.trivialFloor(d.cfg.MinDeviation, d.cfg.MinDeviationAbs, ratio) {
				v.Score = min(v.Score, trivialScore)
			}
		}
		if s.kind != Vector && (lr == nil || len(lr.held) == 0) {
			// Joined models keep every flag: their spikes often score near
			// the threshold, and a dip under it would halve the rest. An
			// incident held back (longrun.go) is one episode, dips and all.
			v.Score = s.rep.damp(d.cfg.Incidents.SuppressRepeats, v.Score, v.Threshold)
		}
		v.Anomaly = v.Score >= v.Threshold
		if v.Anomaly && s.kind == Vector {
			v.Contributions = make([]float64, s.dims)
			s.forest.Attribution(x, v.Contributions)
		} else if v.Anomaly && s.dims == 1 {
			d.expected(s, &v, mean, scale, ratio)
		}
		s.inc.update(&d.cfg.Incidents, key, t, &v, lr != nil && lr.away(scale))
	}
	if lr != nil {
		newNormal := d.cfg.Incidents.NewNormalAfter
		// The level and the offset stay where they were while an incident
		// is younger than newNormal, or while it holds points (holding,
		// below, accepts them and sets the offset). Counted from its start,
		// not as long as it stays open: a coarse series holds no points, so
		// nothing else would ever accept its new level as normal.
		frozen := newNormal > 0 && s.inc.open && !lr.accepted && (len(lr.held) > 0 || t-s.inc.start < newNormal)
		lr.observed(lr.value, t, s.learned, frozen)
		if v.Status == Scored && lr.holding(s.inc.open, v.Anomaly, t, newNormal) {
			lr.held = append(lr.held, heldPoint{toFloat32(x[0]), float32(lr.u)})
			d.resized(s)
			return v
		}
		if len(lr.held) > 0 {
			d.release(sh, s)
		}
		lr.count(lr.u)
		lr.learnSlot(x[0]/scale, t) // before learnSpread: it bounds r by the usual residual without r
		lr.learnSpread(x[0] / scale)
	}
	if d.learn(&sh.scratch, s, x, v) {
		d.resized(s)
	}
	return v
}

// hasLongRun says whether models of kind with dims inputs keep a long-run
// state (longrun.go): one-input ones, but for the high-cardinality mode's
// group models.
func (d *Detector) hasLongRun(kind Kind, dims int) bool {
	return kind != Vector && dims == 1 && !d.cfg.plain
}

// release learns the points an incident held back (longrun.go).
func (d *Detector) release(sh *shard, s *series) {
	var one [1]float64
	peak := float32(-1)
	for _, h := range s.lr.held {
		one[0] = float64(h.r)
		d.learn(&sh.scratch, s, one[:], Verdict{})
		peak = max(peak, h.u)
	}
	// The calibration counts an incident once, at its peak: how often
	// episodes this unusual happen, not how long they last.
	s.lr.count(float64(peak))
	s.lr.held = nil
	d.resized(s)
}

// trivialScore is the most a move too small to matter scores.
const trivialScore = 0.5

// bandMaxSD is the widest half-width of an expected band, in usual
// residuals (about standard deviations).
const bandMaxSD = 6

// expected sets the verdict's expected band for a flagged point of a
// one-input model: the range of its own value (in the datapoint's units)
// that the model would have called normal at this moment.
func (d *Detector) expected(s *series, v *Verdict, mean, scale float64, ratio bool) {
	lr := s.lr
	rawThr := v.Threshold
	if lr != nil && s.quant == nil {
		rawThr = lr.rawThreshold(v.Threshold)
	}
	buf := make([]float64, s.fdims) // its own: x is learned after this
	score := func(u float64) float64 {
		buf[0] = u
		if len(buf) > 1 {
			buf[1] = u - mean
		}
		return s.beyond(u, s.forest.ScoreAsInserted(buf))
	}
	lo, hi, ok := expectedRange(s.win, rawThr, score)
	if lr != nil {
		lo, hi = lo/scale, hi/scale // the window's residuals are scaled
		floor := lr.trivialFloor(d.cfg.MinDeviation, d.cfg.MinDeviationAbs, ratio)
		if !ok {
			// No band from the forest (the centre itself scores high, or
			// no side reaches the threshold): the prediction, give or take
			// three of its usual errors.
			w := 3 * float64(lr.season.err[lr.season.used]) / scale
			lo, hi, ok = -w, w, true
		}
		// Nothing beyond bandMaxSD usual residuals is called normal, however
		// heavy the series' tail of scores has grown.
		// Both in usual residuals of the series; this half hour's are
		// 1/scale times those (longRun.scaleFor).
		if w := bandMaxSD * 1.25 * lr.spread / scale; lr.spreadN >= farMinPoints && w > floor {
			lo, hi = max(lo, -w), min(hi, w)
		}
		lo, hi = min(lo, -floor)+lr.base, max(hi, floor)+lr.base
		// Within what the series can take: never below 0 if it never was,
		// a utilisation (a ratio that never exceeded aboveOneFrom) within [0, 1].
		if !lr.negative {
			lo = max(lo, 0)
		}
		if ratio && !lr.aboveOne {
			hi = min(hi, 1)
		}
		hi = max(hi, lo)
	}
	if ok {
		a, b := s.rate.offset+lo*s.rate.scale, s.rate.offset+hi*s.rate.scale
		v.ExpectedMin, v.ExpectedMax, v.HasExpected = min(a, b), max(a, b), true
	}
}

func (d *Detector) newSeries(key uint64, kind Kind, dims int) *series {
	// The window grows as the series does (see learn): most of a burst of
	// new series never come back, and should not each cost a full window.
	s := &series{kind: kind, dims: dims, fdims: d.forestDims(kind, dims), key: key}
	// Each series has its own stream, derived from the seed and its key, so
	// its verdicts do not depend on which other series share the process.
	s.pcg = *rand.NewPCG(d.cfg.Seed, key)
	s.rng = rand.New(&s.pcg)
	if d.cfg.Contamination > 0 {
		s.quant = newScoreQuantile(d.cfg.WindowSize)
	}
	if d.hasLongRun(kind, dims) {
		s.lr = newLongRun()
	}
	return s
}

func (d *Detector) threshold(s *series) float64 {
	if s.quant == nil {
		return d.cfg.Threshold
	}
	return s.quant.threshold(d.cfg.Contamination, d.cfg.Threshold)
}

// learn adds x to the window and keeps the forest current: while warming up
// it grows the forest a few trees per point; after that it rebuilds one tree
// every RefitInterval points, so no single call pays for a whole refit. It
// reports whether the model's storage may have changed size.
func (d *Detector) learn(sc *scratch, s *series, x []float64, v Verdict) (resized bool) {
	if s.hasRange() && s.rows >= minTrain {
		x[0] = s.winsorize(x[0])
	}
	if s.rows < d.cfg.WindowSize {
		if len(s.win)+len(x) > cap(s.win) {
			s.growWindow(d.cfg.WindowSize)
			resized = true
		}
		for _, f := range x {
			s.win = append(s.win, toFloat32(f))
		}
		s.rows++
		if s.hasRange() {
			s.addToRange(s.win[len(s.win)-1])
		}
	} else {
		row := s.win[s.head*s.dims : (s.head+1)*s.dims]
		old := row[0]
		for i, f := range x {
			row[i] = toFloat32(f)
		}
		if s.hasRange() {
			s.addToRange(row[0])
			s.dropFromRange(old)
		}
	}
	s.head = (s.head + 1) % d.cfg.WindowSize
	s.learned++
	if s.quant != nil && v.Status == Scored {
		s.quant.add(v.Score)
	}

	if s.rows < minTrain {
		return resized
	}
	if s.forest == nil {
		s.forest = forest.New(s.fdims, nil)
	}
	if n := s.forest.Len(); n < d.cfg.Trees {
		for i := 0; i < d.growPerPoint && n+i < d.cfg.Trees; i++ {
			s.forest.Add(d.sample(sc, s))
		}
		d.scratchResized(sc)
		return true
	}
	s.toRefit++
	if s.toRefit >= d.cfg.RefitInterval {
		s.toRefit = 0
		b, sample, rng := d.sample(sc, s)
		s.forest.Rebuild(s.nextTree, b, sample, rng)
		s.nextTree = (s.nextTree + 1) % d.cfg.Trees
		d.scratchResized(sc)
		return true
	}
	return resized
}

// scratchResized counts a change of a shard's working memory (it grows
// with the first builds) in the detector's total, like resized.
func (d *Detector) scratchResized(sc *scratch) {
	if !sc.tally {
		return
	}
	if n := sc.memBytes(); n != sc.bytes {
		d.bytes.Add(int64(n - sc.bytes))
		sc.bytes = n
	}
}

// growWindow doubles the window's capacity, up to exactly WindowSize rows.
func (s *series) growWindow(windowSize int) {
	rows := min(max(2*cap(s.win)/s.dims, 16), windowSize)
	w := make([]float32, len(s.win), rows*s.dims)
	copy(w, s.win)
	s.win = w
}

// toFloat32 saturates instead of overflowing to infinity, so a value near
// float64's limits cannot put an infinite range into a tree.
func toFloat32(f float64) float32 {
	return float32(max(-math.MaxFloat32, min(math.MaxFloat32, f)))
}

// sample draws a subsample of the window without replacement and returns
// what the forest needs to build one tree on it.
func (d *Detector) sample(sc *scratch, s *series) (*forest.Builder, []float32, *rand.Rand) {
	n := min(d.cfg.SampleSize, s.rows)
	if cap(sc.perm) < s.rows {
		sc.perm = make([]int32, d.cfg.WindowSize)
	}
	if cap(sc.sample) < n*s.fdims {
		sc.sample = make([]float32, 0, d.cfg.SampleSize*max(s.fdims, maxDims))
	}
	perm := sc.perm[:s.rows]
	for i := range perm {
		perm[i] = int32(i)
	}
	sample := sc.sample[:0]
	for i := 0; i < n; i++ {
		j := i + s.rng.IntN(s.rows-i)
		perm[i], perm[j] = perm[j], perm[i]
		r := int(perm[i]) * s.dims
		sample = append(sample, s.win[r:r+s.dims]...)
		if s.fdims > s.dims {
			// The row's history starts one step older than the row itself.
			age := s.head - 1 - r
			if age < 0 {
				age += d.cfg.WindowSize
			}
			sample = append(sample, toFloat32(s.departure(d.cfg.WindowSize, age+1, d.cfg.Lookback, float64(s.win[r]))))
		}
	}
	// Derived inputs get no boxes: a node checks only its own split input
	// for points beyond the data. Boxes cost 16 bytes a node here, and on
	// NAB they scored worse (standard 25 instead of 33 before the range
	// lift): at every node the departure outweighed the value.
	bk := s.fdims
	if s.fdims > s.dims {
		bk = -s.fdims
	}
	b := sc.builders[bk]
	if b == nil {
		if sc.builders == nil {
			sc.builders = make(map[int]*forest.Builder)
		}
		b = forest.NewBuilder(s.fdims)
		b.KeepBoxes(s.fdims == s.dims) // see forest.ScoreAsInserted: multi-input points beyond the data on any input
		sc.builders[bk] = b
	}
	sc.sample = sample
	sc.built.Add(1)
	return b, sample, s.rng
}

// Evict drops the models of series not seen since before cutoff (unix
// nanoseconds) and returns how many it dropped. It walks each recency list
// from its least recently seen end, so it costs what it drops, not what is
// held.
func (d *Detector) Evict(cutoff int64) int {
	total := 0
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		for _, l := range []*recency{&sh.unknown, &sh.known} {
			for s := l.tail; s != nil && s.lastSeen < cutoff; s = l.tail {
				d.remove(sh, s)
				total++
			}
		}
		sh.mu.Unlock()
	}
	d.evictedIdle.Add(int64(total))
	return total
}

// Len returns the number of models held.
func (d *Detector) Len() int {
	n := 0
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		n += len(sh.series)
		sh.mu.Unlock()
	}
	return n
}

// OpenIncidents returns the ids of the incidents open on any model, e.g.
// after Restore, so that the caller can vouch for their ends.
func (d *Detector) OpenIncidents() []uint64 {
	var ids []uint64
	for i := range d.shards {
		sh := &d.shards[i]
		sh.mu.Lock()
		for _, s := range sh.series {
			if s.inc.open {
				ids = append(ids, s.inc.id)
			}
		}
		sh.mu.Unlock()
	}
	return ids
}

func (d *Detector) takeBuilt() int64 {
	var n int64
	for i := range d.shards {
		n += d.shards[i].scratch.built.Swap(0)
	}
	return n
}

// TakeStats returns the counters accumulated since the previous call.
func (d *Detector) TakeStats() Stats {
	// Atomics, not the shard locks: every batch takes the stats, and taking
	// 64 locks per batch made concurrent callers contend.
	return Stats{
		TreesBuilt:   d.takeBuilt(),
		Created:      d.created.Swap(0),
		EvictedIdle:  d.evictedIdle.Swap(0),
		EvictedLimit: d.evictedLimit.Swap(0),
	}
}
