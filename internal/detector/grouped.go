package detector

import (
	"math"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/otel-iforest/iforest/internal/heapsize"
)

// Grouped is high-cardinality detection: one isolation forest per group of
// series (e.g. per metric) instead of one per series. Each series keeps only
// a baseline of its own, an exponentially weighted mean and spread of its
// inputs, and is scored by how unusual its standardised deviation
// z = (x - mean) / spread is among the recent deviations of every series in
// its group. A series thus costs about 200 bytes instead of a forest and a
// window (~20 KB), at the price of one model per group: it learns what is a
// normal deviation for this kind of series, not the shape of each series.
//
// The group models learn and refit exactly like per-series models (see
// Detector), from the deviations of series whose baseline is ready.
type Grouped struct {
	det    *Detector // the group models' settings and learning
	warmup int       // points a series needs before its baseline is used
	alpha  float64   // the baseline's weight of a new point once it is long
	shards []groupedShard
	limit  seriesLimit      // of baselines, as for per-series models (recency.go)
	typ    typicalIntervals // see limit.go
	groups groupSet
	// Working memory for the group models' tree builds, shared by the
	// groups (by key) rather than one each: a build's scratch holds a
	// permutation of the whole window (32 KiB at the defaults).
	scratch []groupScratch

	created, evictedIdle, evictedLimit    atomic.Int64
	groupsEvictedIdle, groupsEvictedLimit atomic.Int64
	active, tableBytes, groupBytes        atomic.Int64
	fixed                                 int64 // shards, scratch slots, the group models' detector
}

// groupedShard holds the baselines of a slice of the series (see table).
type groupedShard struct {
	mu        sync.Mutex
	series    table
	intervals intervals  // of the baselines with a known interval
	door      doorkeeper // see limit.go
	rng       uint64     // xorshift state for sampling eviction candidates
	_         [64]byte
}

// baseline is the whole per-series state of high-cardinality detection.
type baseline struct {
	rate     rateState
	inc      incident
	mean, sq [maxDims]float64 // weighted mean and variance of the inputs
	lastSeen int64
	interval int64  // usual time between sightings; 0 unknown
	n        uint32 // inputs seen, capped
	kind     Kind
}

// group is the model shared by the series of one group.
type group struct {
	mu       sync.Mutex
	key      uint64
	pos      int     // index in groupSet.all
	s        *series // window, forest and threshold state (no key, rate or incident)
	lo, hi   float64 // expected deviation band, for one-input groups
	bandOK   bool
	bandVer  int     // s.learned / RefitInterval when the band was found; -1: never
	bandThr  float64 // the threshold it was found for
	bytes    int
	lastSeen atomic.Int64
	dead     bool // evicted: callers holding it look the group up again
}

type groupScratch struct {
	mu sync.Mutex
	sc scratch
	_  [64]byte
}

// groupSet holds the group models: a map to find them without a lock, and
// a list (under mu, which creation and eviction take) to sample eviction
// candidates from. Lock order: mu, then a group's mu.
type groupSet struct {
	m   sync.Map // group key -> *group
	mu  sync.Mutex
	all []*group
	max int    // most groups held, 0 = no limit
	rng uint64 // xorshift state for sampling eviction candidates
}

// groupOverhead is what a group costs besides its model and scratch: the
// struct, its sync.Map entry (measured: about 100 bytes) and its list slot.
var groupOverhead = heapsize.Of(int(unsafe.Sizeof(group{})), true) + 112 + 8

// NewGrouped returns a high-cardinality detector: cfg sets the group models
// (trees, window, warm-up, refits, threshold, incidents), warmup the points
// a series needs before its baseline is trusted (>= 2), maxSeries the most
// baselines held and maxGroups the most group models (0 = no limit).
func NewGrouped(cfg Config, warmup, maxSeries, maxGroups int) *Grouped {
	// A group model sees the points of many series: it keeps 8 times a
	// series model's window and refits 8 times less often, so that it
	// remembers a longer stretch of its group for the same refit cost.
	gcfg := cfg
	gcfg.WindowSize = min(8*cfg.WindowSize, 1<<20)
	gcfg.RefitInterval = 8 * cfg.RefitInterval
	// Its window holds deviations of many series in arrival order: a
	// departure from the previous points' mean (lookback) would compare
	// unrelated series.
	gcfg.Lookback = 0
	gcfg.plain = true
	s := &Grouped{
		det:     New(gcfg, 0),
		warmup:  max(warmup, 2),
		alpha:   1 / float64(cfg.WindowSize),
		shards:  make([]groupedShard, max(cfg.Shards, 1)),
		scratch: make([]groupScratch, max(cfg.Shards, 1)),
	}
	s.limit.max = int64(max(maxSeries, 0))
	s.fixed = int64(heapsize.Of(len(s.shards)*int(unsafe.Sizeof(groupedShard{})), true)+
		heapsize.Of(len(s.scratch)*int(unsafe.Sizeof(groupScratch{})), true)) + s.det.fixed
	s.groups.max = max(maxGroups, 0)
	s.groups.rng = 0x9e3779b97f4a7c15
	for i := range s.shards {
		s.shards[i].rng = uint64(i)*0x9e3779b97f4a7c15 | 1
	}
	return s
}

// Observe scores p, a point of the series p.Key in the group groupKey, then
// learns it. now is the caller's clock (unix nanoseconds), used for
// eviction only.
func (s *Grouped) Observe(p Point, groupKey uint64, now int64) Verdict {
	if s.det.future(p.Time, now) {
		return Verdict{Status: FutureTime}
	}
	sh := &s.shards[p.Key%uint64(len(s.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := sh.series.find(p.Key)
	if sl != nil && sl.b.kind != p.Kind {
		// Other units: start over, as the same series.
		sl.b = baseline{kind: p.Kind, lastSeen: sl.b.lastSeen, interval: sl.b.interval}
	}
	if sl != nil {
		s.det.resetFutureClock(&sl.b.rate, now)
		if sl.b.rate.outOfOrder(p.Time) {
			return Verdict{Status: OutOfOrder} // not a sighting
		}
		s.sighting(sh, &sl.b, now)
	} else {
		if iv := sh.door.back(p.Key, now); iv > 0 {
			s.typ.back.note(iv)
		}
		if !s.admit(sh, now) {
			sh.door.note(p.Key, now)
			return Verdict{Status: OverLimit}
		}
		before := sh.series.bytes()
		sl = sh.series.insert(p.Key)
		sl.b.kind, sl.b.lastSeen = p.Kind, now
		s.tableBytes.Add(int64(sh.series.bytes() - before))
		s.created.Add(1)
		s.active.Add(1)
	}
	return s.judge(&sl.b, &p, groupKey, now)
}

// sighting records that the series of b was seen at now and updates its
// usual interval between sightings (see Detector.touch).
func (s *Grouped) sighting(sh *groupedShard, b *baseline, now int64) {
	old := b.interval
	if iv := now - b.lastSeen; iv > 0 {
		if old == 0 {
			b.interval = iv
			s.typ.seen.note(iv)
		} else {
			b.interval += (iv - old) / 4
		}
		sh.intervals.change(old, b.interval)
	}
	b.lastSeen = now
}

func (s *Grouped) judge(b *baseline, p *Point, groupKey uint64, now int64) Verdict {
	dims := p.Kind.dims()
	var x, z [maxDims]float64
	if st := b.rate.toInputs(p, x[:dims]); st != Scored {
		return Verdict{Status: st}
	}
	ready := int(b.n) >= s.warmup
	var spread [maxDims]float64
	mean := b.mean
	for f := range dims {
		spread[f] = spreadOf(b.mean[f], b.sq[f])
		// x and the mean are finite, but their distance may not be: a
		// deviation beyond float32's range is as far out as the group
		// model (which keeps float32 windows) can tell anyway.
		z[f] = max(-math.MaxFloat32, min(math.MaxFloat32, (x[f]-b.mean[f])/spread[f]))
	}
	b.learn(x[:dims], s.alpha, ready)
	if !ready {
		return Verdict{Status: Warmup}
	}

	g := s.lockGroup(groupKey, dims, now)
	if g == nil {
		return Verdict{Status: OverLimit} // no room for its group's model
	}
	d := s.det
	v := Verdict{Status: Warmup, Threshold: d.threshold(g.s)}
	if g.s.learned >= d.cfg.Warmup && g.s.forest != nil {
		v.Status = Scored
		v.Score = g.s.forest.ScoreAsInserted(z[:dims])
		v.Anomaly = v.Score >= v.Threshold
		if v.Anomaly && dims == 1 && g.band(d, v.Threshold) {
			lo, hi := mean[0]+g.lo*spread[0], mean[0]+g.hi*spread[0]
			a, c := b.rate.offset+lo*b.rate.scale, b.rate.offset+hi*b.rate.scale
			v.ExpectedMin, v.ExpectedMax, v.HasExpected = min(a, c), max(a, c), true
		}
	}
	gsc := &s.scratch[g.key%uint64(len(s.scratch))]
	gsc.mu.Lock()
	d.learn(&gsc.sc, g.s, z[:dims], v)
	if n := gsc.sc.memBytes(); n != gsc.sc.bytes {
		s.groupBytes.Add(int64(n - gsc.sc.bytes))
		gsc.sc.bytes = n
	}
	gsc.mu.Unlock()
	if n := g.s.memBytes(); n != g.bytes {
		s.groupBytes.Add(int64(n - g.bytes))
		g.bytes = n
	}
	g.mu.Unlock()
	if v.Status == Scored {
		b.inc.update(&d.cfg.Incidents, p.Key, p.Time, &v, false)
	}
	return v
}

// learn folds x into the baseline: an exponentially weighted mean and
// variance that average the first points equally (fast start) and then
// forget with weight alpha. Once the baseline is ready, a value is learned
// at most baselineLearn spreads from the mean: a single value far out (near
// float64's limits, say) would otherwise inflate the spread, and blind the
// series, for thousands of points (or for good, once its square
// overflowed). A value whose update would not be finite is not learned.
func (b *baseline) learn(x []float64, alpha float64, ready bool) {
	n := b.n
	if n < math.MaxUint32 {
		n++
	}
	a := max(1/float64(n), alpha)
	var mean, sq [maxDims]float64
	for f, v := range x {
		if ready {
			w := baselineLearn * spreadOf(b.mean[f], b.sq[f])
			v = max(b.mean[f]-w, min(b.mean[f]+w, v))
		}
		delta := v - b.mean[f]
		mean[f] = b.mean[f] + a*delta
		sq[f] = (1 - a) * (b.sq[f] + a*delta*delta)
		if isBad(mean[f]) || isBad(sq[f]) {
			return
		}
	}
	b.n = n
	copy(b.mean[:], mean[:len(x)])
	copy(b.sq[:], sq[:len(x)])
}

// baselineLearn is how many spreads from its mean a ready baseline learns a
// value (see learn): of the order of what beyondLearn allows a per-series
// window, whose range spans some 6 to 7 standard deviations of noise.
const baselineLearn = 20.0

// spreadOf is the standard deviation, floored so that a series that has
// been constant so far makes any change stand out without dividing by 0.
func spreadOf(mean, variance float64) float64 {
	return max(math.Sqrt(variance), 1e-6*math.Abs(mean), 1e-12)
}

// lockGroup returns the model of groupKey for inputs of dims features,
// locked and marked as seen at now; nil if there is no room for it.
func (s *Grouped) lockGroup(key uint64, dims int, now int64) *group {
	for {
		g := s.group(key, dims, now)
		if g == nil {
			return nil
		}
		g.mu.Lock()
		if !g.dead {
			g.lastSeen.Store(now)
			return g
		}
		g.mu.Unlock() // evicted meanwhile: a new one is (or will be) in the map
	}
}

// group returns the model of groupKey for inputs of dims features, making
// it if there is room (see groupSet): nil if there is not.
func (s *Grouped) group(key uint64, dims int, now int64) *group {
	key ^= uint64(dims) * 0x9e3779b97f4a7c15 // histograms (2 inputs) have a model of their own
	gs := &s.groups
	if g, ok := gs.m.Load(key); ok {
		return g.(*group)
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if g, ok := gs.m.Load(key); ok {
		return g.(*group)
	}
	if gs.max > 0 && len(gs.all) >= gs.max {
		v := s.groupVictim(now)
		if v == nil {
			return nil
		}
		v.mu.Lock()
		s.dropGroup(v)
		v.mu.Unlock()
		s.groupsEvictedLimit.Add(1)
	}
	g := &group{key: key, pos: len(gs.all), s: s.det.newSeries(key, Gauge, dims), bandVer: -1}
	g.lastSeen.Store(now)
	gs.all = append(gs.all, g)
	gs.m.Store(key, g)
	s.groupBytes.Add(int64(groupOverhead))
	return g
}

// groupVictim returns an idle group model to make room for a new one, or
// nil (under groups.mu). A group sees the points of all its series, so its
// own interval between points says little: it is idle when none of its
// series was seen for twice the typical interval of the series (a metric,
// or a group_by value, that stopped). Sampled, like baselines.
func (s *Grouped) groupVictim(now int64) *group {
	gs := &s.groups
	typical := s.typ.seen.get()
	if typical == 0 {
		typical = fallbackInterval
	}
	var victim *group
	oldest := int64(math.MaxInt64)
	for range samples {
		gs.rng = xorshift(gs.rng)
		g := gs.all[gs.rng%uint64(len(gs.all))]
		if seen := g.lastSeen.Load(); seen < oldest && idle(now, seen, 0, typical) {
			victim, oldest = g, seen
		}
	}
	return victim
}

// dropGroup removes g (locked, and groups.mu held).
func (s *Grouped) dropGroup(g *group) {
	gs := &s.groups
	g.dead = true
	gs.m.Delete(g.key)
	last := len(gs.all) - 1
	gs.all[g.pos] = gs.all[last]
	gs.all[g.pos].pos = g.pos
	gs.all[last] = nil
	gs.all = gs.all[:last]
	s.groupBytes.Add(-int64(g.bytes + groupOverhead))
}

// band returns whether the group's expected deviation band is known, finding
// it again when the forest may have changed since.
func (g *group) band(d *Detector, thr float64) bool {
	ver := g.s.learned / d.cfg.RefitInterval
	if ver != g.bandVer || thr != g.bandThr { // an adaptive threshold moves
		x := []float64{0}
		score := func(v float64) float64 { x[0] = v; return g.s.forest.ScoreAsInserted(x) }
		g.lo, g.hi, g.bandOK = expectedRange(g.s.win, thr, score)
		g.bandVer, g.bandThr = ver, thr
	}
	return g.bandOK
}

// samples is how many baselines (or groups) a newcomer at the limit looks
// at per shard: an approximate LRU, as a list per series would double its
// state.
const samples = 8

func xorshift(x uint64) uint64 {
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	return x
}

// admit makes room for a new baseline in sh (locked) at now, as
// Detector.admit does for models: below the limit it counts one more; at
// it, it replaces a really idle baseline of sh or of another shard.
func (s *Grouped) admit(sh *groupedShard, now int64) bool {
	if s.limit.take() {
		return true
	}
	if s.evictIdle(sh, now) {
		return true
	}
	searched := 0
	for o := range s.limit.others(len(s.shards)) {
		other := &s.shards[o]
		if other == sh || !other.mu.TryLock() {
			continue
		}
		ok := false
		if len(other.series.slots) > 0 {
			searched++
			ok = s.evictIdle(other, now)
		}
		other.mu.Unlock()
		if ok {
			return true
		}
		if searched == searchShards {
			break
		}
	}
	return false
}

// evictIdle drops the least recently seen really idle baseline among a few
// sampled ones of sh, if any (see idle), and reports whether it did.
func (s *Grouped) evictIdle(sh *groupedShard, now int64) bool {
	slots := sh.series.slots
	if len(slots) == 0 {
		return false
	}
	typical := s.typ.typical(&sh.intervals, &sh.door)
	victim, oldest := -1, int64(math.MaxInt64)
	for range samples {
		sh.rng = xorshift(sh.rng)
		j := int(sh.rng % uint64(len(slots)))
		if b := &slots[j].b; b.lastSeen < oldest && idle(now, b.lastSeen, b.interval, typical) {
			victim, oldest = j, b.lastSeen
		}
	}
	if victim < 0 {
		return false
	}
	sh.door.note(slots[victim].key, oldest)
	s.remove(sh, victim)
	s.evictedLimit.Add(1)
	return true
}

// remove drops the baseline at position j of sh.
func (s *Grouped) remove(sh *groupedShard, j int) {
	before := sh.series.bytes()
	sh.intervals.change(sh.series.slots[j].b.interval, 0)
	sh.series.removeAt(j)
	s.tableBytes.Add(int64(sh.series.bytes() - before))
	s.active.Add(-1)
}

// Evict drops the baselines of series not seen since before cutoff and
// returns how many it dropped.
func (s *Grouped) Evict(cutoff int64) int {
	total := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		// From the end: removal moves the last slot, already visited, in.
		for j := len(sh.series.slots) - 1; j >= 0; j-- {
			if sh.series.slots[j].b.lastSeen < cutoff {
				s.remove(sh, j)
				s.limit.give()
				total++
			}
		}
		sh.mu.Unlock()
	}
	s.evictedIdle.Add(int64(total))
	// Group models go the same way: with group_by on a churning attribute,
	// or metrics that stop, they would otherwise pile up.
	gs := &s.groups
	gs.mu.Lock()
	for i := len(gs.all) - 1; i >= 0; i-- { // dropGroup moves the last one in
		if g := gs.all[i]; g.lastSeen.Load() < cutoff {
			g.mu.Lock()
			s.dropGroup(g)
			g.mu.Unlock()
			s.groupsEvictedIdle.Add(1)
		}
	}
	gs.mu.Unlock()
	return total
}

// Len returns the number of series baselines held.
func (s *Grouped) Len() int { return int(s.active.Load()) }

// Groups returns the number of group models.
func (s *Grouped) Groups() int {
	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	return len(s.groups.all)
}

// MemoryBytes returns the estimated memory held: the baselines' tables and
// the group models.
func (s *Grouped) MemoryBytes() int64 {
	return s.tableBytes.Load() + s.groupBytes.Load() + s.fixed
}

// TakeStats returns the counters accumulated since the previous call.
func (s *Grouped) TakeStats() Stats {
	var st Stats
	for i := range s.scratch {
		st.TreesBuilt += s.scratch[i].sc.built.Swap(0)
	}
	st.Created = s.created.Swap(0)
	st.EvictedIdle = s.evictedIdle.Swap(0)
	st.EvictedLimit = s.evictedLimit.Swap(0)
	st.GroupsEvictedIdle = s.groupsEvictedIdle.Swap(0)
	st.GroupsEvictedLimit = s.groupsEvictedLimit.Swap(0)
	return st
}
