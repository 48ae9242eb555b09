package detector

import (
	"math"
	"sync"
	"sync/atomic"
)

// Shared is high-cardinality detection: one isolation forest per group of
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
type Shared struct {
	det    *Detector // the group models' settings and learning
	warmup int       // points a series needs before its baseline is used
	alpha  float64   // the baseline's weight of a new point once it is long
	shards []sharedShard
	groups sync.Map // group key -> *group

	created, evictedIdle, evictedLimit atomic.Int64
	active, tableBytes, groupBytes     atomic.Int64
}

// sharedShard holds the baselines of a slice of the series (see table).
type sharedShard struct {
	mu     sync.Mutex
	series table
	limit  int
	rng    uint64 // xorshift state for sampling eviction candidates
	_      [64]byte
}

// baseline is the whole per-series state of high-cardinality detection.
type baseline struct {
	rate     rateState
	inc      incident
	mean, sq [maxDims]float64 // weighted mean and variance of the inputs
	lastSeen int64
	n        uint32 // inputs seen, capped
	kind     Kind
}

// group is the model shared by the series of one group.
type group struct {
	mu       sync.Mutex
	s        *series // window, forest and threshold state (no key, rate or incident)
	sc       scratch
	lo, hi   float64 // expected deviation band, for one-input groups
	bandOK   bool
	bandVer  int     // s.learned / RefitInterval when the band was found; -1: never
	bandThr  float64 // the threshold it was found for
	bytes    int
	lastSeen int64
	dead     bool // evicted: callers holding it look the group up again
}

// NewShared returns a high-cardinality detector: cfg sets the group models
// (trees, window, warm-up, refits, threshold, incidents), warmup the points
// a series needs before its baseline is trusted (>= 2), and maxSeries the
// most baselines held (0 = no limit).
func NewShared(cfg Config, warmup, maxSeries int) *Shared {
	limits := shardLimits(cfg.Shards, maxSeries)
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
	s := &Shared{
		det:    New(gcfg, 0),
		warmup: max(warmup, 2),
		alpha:  1 / float64(cfg.WindowSize),
		shards: make([]sharedShard, len(limits)),
	}
	for i, l := range limits {
		s.shards[i].rng = uint64(i)*0x9e3779b97f4a7c15 | 1
		s.shards[i].limit = l
	}
	return s
}

// Observe scores p, a point of the series p.Key in the group groupKey, then
// learns it. now is the caller's clock (unix nanoseconds), used for
// eviction only.
func (s *Shared) Observe(p Point, groupKey uint64, now int64) Verdict {
	sh := &s.shards[p.Key%uint64(len(s.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sl := sh.series.find(p.Key)
	if sl != nil && sl.b.kind != p.Kind {
		sl.b = baseline{kind: p.Kind} // other units: start over
	}
	if sl == nil {
		if !s.place(sh, now) {
			return Verdict{Status: OverLimit}
		}
		before := sh.series.bytes()
		sl = sh.series.insert(p.Key)
		sl.b.kind = p.Kind
		s.tableBytes.Add(int64(sh.series.bytes() - before))
		s.created.Add(1)
		s.active.Add(1)
	}
	sl.b.lastSeen = now
	return s.judge(&sl.b, &p, groupKey, now)
}

func (s *Shared) judge(b *baseline, p *Point, groupKey uint64, now int64) Verdict {
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
		z[f] = (x[f] - b.mean[f]) / spread[f]
	}
	b.learn(x[:dims], s.alpha)
	if !ready {
		return Verdict{Status: Warmup}
	}
	if !finiteAll(z[:dims]) {
		return Verdict{Status: InvalidValue}
	}

	g := s.lockGroup(groupKey, dims, now)
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
	d.learn(&g.sc, g.s, z[:dims], v)
	if n := g.s.memBytes() + g.sc.memBytes(); n != g.bytes {
		s.groupBytes.Add(int64(n - g.bytes))
		g.bytes = n
	}
	g.mu.Unlock()
	if v.Status == Scored {
		b.inc.update(&d.cfg.Incidents, p.Key, p.Time, &v)
	}
	return v
}

// learn folds x into the baseline: an exponentially weighted mean and
// variance that average the first points equally (fast start) and then
// forget with weight alpha.
func (b *baseline) learn(x []float64, alpha float64) {
	if b.n < math.MaxUint32 {
		b.n++
	}
	a := max(1/float64(b.n), alpha)
	for f, v := range x {
		delta := v - b.mean[f]
		b.mean[f] += a * delta
		b.sq[f] = (1 - a) * (b.sq[f] + a*delta*delta)
	}
}

// spreadOf is the standard deviation, floored so that a series that has
// been constant so far makes any change stand out without dividing by 0.
func spreadOf(mean, variance float64) float64 {
	return max(math.Sqrt(variance), 1e-6*math.Abs(mean), 1e-12)
}

func finiteAll(x []float64) bool {
	for _, v := range x {
		if isBad(v) {
			return false
		}
	}
	return true
}

// lockGroup returns the model of groupKey for inputs of dims features,
// locked and marked as seen at now.
func (s *Shared) lockGroup(key uint64, dims int, now int64) *group {
	for {
		g := s.group(key, dims)
		g.mu.Lock()
		if !g.dead {
			g.lastSeen = now
			return g
		}
		g.mu.Unlock() // evicted meanwhile: a new one is (or will be) in the map
	}
}

// group returns the model of groupKey for inputs of dims features.
func (s *Shared) group(key uint64, dims int) *group {
	key ^= uint64(dims) * 0x9e3779b97f4a7c15 // histograms (2 inputs) have a model of their own
	if g, ok := s.groups.Load(key); ok {
		return g.(*group)
	}
	g := &group{s: s.det.newSeries(key, Gauge, dims), bandVer: -1}
	actual, _ := s.groups.LoadOrStore(key, g)
	return actual.(*group)
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

// place makes room for a new baseline in a full shard, evicting the least
// recently seen of a few sampled baselines (an approximate LRU: a list per
// series would double its state). It reports false when every sampled
// baseline was seen at now, i.e. in the same batch.
func (s *Shared) place(sh *sharedShard, now int64) bool {
	slots := sh.series.slots
	if sh.limit <= 0 || len(slots) < sh.limit {
		return true
	}
	const samples = 8
	victim, oldest := -1, int64(math.MaxInt64)
	for range samples {
		sh.rng ^= sh.rng << 13
		sh.rng ^= sh.rng >> 7
		sh.rng ^= sh.rng << 17
		j := int(sh.rng % uint64(len(slots)))
		if slots[j].b.lastSeen < oldest {
			victim, oldest = j, slots[j].b.lastSeen
		}
	}
	if oldest >= now {
		return false
	}
	s.remove(sh, victim)
	s.evictedLimit.Add(1)
	return true
}

// remove drops the baseline at position j of sh.
func (s *Shared) remove(sh *sharedShard, j int) {
	before := sh.series.bytes()
	sh.series.removeAt(j)
	s.tableBytes.Add(int64(sh.series.bytes() - before))
	s.active.Add(-1)
}

// Evict drops the baselines of series not seen since before cutoff and
// returns how many it dropped.
func (s *Shared) Evict(cutoff int64) int {
	total := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		// From the end: removal moves the last slot, already visited, in.
		for j := len(sh.series.slots) - 1; j >= 0; j-- {
			if sh.series.slots[j].b.lastSeen < cutoff {
				s.remove(sh, j)
				total++
			}
		}
		sh.mu.Unlock()
	}
	s.evictedIdle.Add(int64(total))
	// Group models go the same way: with group_by on a churning attribute,
	// or metrics that stop, they would otherwise pile up.
	s.groups.Range(func(k, v any) bool {
		g := v.(*group)
		g.mu.Lock()
		if g.lastSeen < cutoff {
			g.dead = true
			s.groups.Delete(k)
			s.groupBytes.Add(-int64(g.bytes))
		}
		g.mu.Unlock()
		return true
	})
	return total
}

// Len returns the number of series baselines held.
func (s *Shared) Len() int { return int(s.active.Load()) }

// Groups returns the number of group models.
func (s *Shared) Groups() int {
	n := 0
	s.groups.Range(func(any, any) bool { n++; return true })
	return n
}

// MemoryBytes returns the estimated memory held: the baselines' tables and
// the group models.
func (s *Shared) MemoryBytes() int64 {
	return s.tableBytes.Load() + s.groupBytes.Load()
}

// TakeStats returns the counters accumulated since the previous call.
func (s *Shared) TakeStats() Stats {
	var st Stats
	s.groups.Range(func(_, g any) bool {
		st.TreesBuilt += g.(*group).sc.built.Swap(0)
		return true
	})
	st.Created = s.created.Swap(0)
	st.EvictedIdle = s.evictedIdle.Swap(0)
	st.EvictedLimit = s.evictedLimit.Swap(0)
	return st
}
