package main

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	iforestprocessor "github.com/otel-iforest/iforest/processor"
)

// Bounds of what a backtest keeps per series, whatever the input's size:
// the processor's own limits bound its models, these bound the report.
const (
	btMaxFlags     = 500 // flagged points kept exactly per series
	btMaxIncidents = 200 // incidents kept per series
	btMaxProblems  = 100 // input problems kept as messages (all are counted)
	btChunkPoints  = 128 // points of one series fed in one batch (parallel mode)
	btWindowPoints = 1 << 18
	// Batches queued per worker: deep enough that the workers go on while
	// the reader parses the next window (a window of time-ordered lines
	// holds short batches of many series).
	btQueue = 1024
)

// btSeries is one series of the input: resource, scope, metric (name and
// type) and datapoint attributes, as the processor tells series apart.
type btSeries struct {
	idx      int
	kind     pmetric.MetricType
	metric   string
	attrs    string // datapoint attributes, k=v, sorted by key
	resource string // resource attributes, k=v, sorted by key
	scope    string
}

// name is how the report names the series: metric{attributes}.
func (s *btSeries) name() string {
	if s.attrs == "" {
		return s.metric
	}
	return s.metric + "{" + s.attrs + "}"
}

// btSeriesTable numbers the series in the order they first appear. Only the
// reading goroutine uses it; the runs of a compare share it.
type btSeriesTable struct {
	seed  maphash.Seed
	byKey map[uint64]*btSeries
	list  []*btSeries
}

func newBTSeriesTable() *btSeriesTable {
	return &btSeriesTable{seed: maphash.MakeSeed(), byKey: map[uint64]*btSeries{}}
}

// hashString hashes s with the table's seed.
func (t *btSeriesTable) hashString(s string) uint64 { return maphash.String(t.seed, s) }

// hashMap hashes attributes order-independently, leaving out keys with
// the prefix (the processor's own output) when it is set.
func (t *btSeriesTable) hashMap(m pcommon.Map, skip string) uint64 {
	var sum uint64
	for k, v := range m.All() {
		if skip != "" && strings.HasPrefix(k, skip) {
			continue
		}
		val := ""
		if v.Type() == pcommon.ValueTypeStr {
			val = v.Str()
		} else {
			val = v.AsString()
		}
		h := t.hashString(k)*0x9e3779b97f4a7c15 ^ t.hashString(val) ^ uint64(v.Type())<<56
		sum += mix64(h)
	}
	return sum
}

// mix64 is splitmix64's finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// attrsText is a map's attributes as k=v, sorted by key.
func attrsText(m pcommon.Map) string {
	parts := make([]string, 0, m.Len())
	for k, v := range m.All() {
		parts = append(parts, k+"="+v.AsString())
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// lookup returns the series of a datapoint (key: its hash), making it
// from the datapoint's resource, scope, metric and attributes when new.
func (t *btSeriesTable) lookup(key uint64, rm pmetric.ResourceMetrics, sm pmetric.ScopeMetrics, m pmetric.Metric, attrs pcommon.Map) *btSeries {
	if s, ok := t.byKey[key]; ok {
		return s
	}
	s := &btSeries{idx: len(t.list), kind: m.Type(), metric: m.Name(), attrs: attrsText(attrs),
		resource: attrsText(rm.Resource().Attributes()), scope: sm.Scope().Name()}
	t.byKey[key] = s
	t.list = append(t.list, s)
	return s
}

// skeleton is a batch with rm's resource, sm's scope and a metric like m
// (name, type, temporality) without datapoints; it returns the metric.
func skeleton(rm pmetric.ResourceMetrics, sm pmetric.ScopeMetrics, m pmetric.Metric) (pmetric.Metrics, pmetric.Metric) {
	md := pmetric.NewMetrics()
	trm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().CopyTo(trm.Resource())
	tsm := trm.ScopeMetrics().AppendEmpty()
	sm.Scope().CopyTo(tsm.Scope())
	tm := tsm.Metrics().AppendEmpty()
	tm.SetName(m.Name())
	tm.SetDescription(m.Description())
	tm.SetUnit(m.Unit())
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		tm.SetEmptyGauge()
	case pmetric.MetricTypeSum:
		tm.SetEmptySum().SetAggregationTemporality(m.Sum().AggregationTemporality())
		tm.Sum().SetIsMonotonic(m.Sum().IsMonotonic())
	case pmetric.MetricTypeHistogram:
		tm.SetEmptyHistogram().SetAggregationTemporality(m.Histogram().AggregationTemporality())
	case pmetric.MetricTypeExponentialHistogram:
		tm.SetEmptyExponentialHistogram().SetAggregationTemporality(m.ExponentialHistogram().AggregationTemporality())
	case pmetric.MetricTypeSummary:
		tm.SetEmptySummary()
	}
	return md, tm
}

// btIncident is one incident of a series, as the processor marked it.
type btIncident struct {
	Start, End int64 // unix nanoseconds; End 0: still open at the end of the data
	ID         string
	Peak       float64
}

// btFlag is one flagged point: its value, score and, where the processor
// gave one, the expected band (NaN otherwise).
type btFlag struct {
	T                  int64
	V, Score, Min, Max float64
}

// btStats is what one run saw of one series. The reading goroutine writes
// the in* fields, the worker that owns the series all others.
type btStats struct {
	s *btSeries

	inN, inBad      int64
	inLast          int64
	inBadAt         string // where the first point out of order was
	inBadT, inPrevT int64

	points, scored, flagged, incidents int64
	from, to                           int64
	lo, hi                             float64 // finite values seen
	inIncident, openKept               bool
	incs                               []btIncident
	flags                              []btFlag
	moreFlags, moreIncs                int64
	trace                              *btTrace // nil: not drawn
}

// btVerdictAttrs are the names of the verdict attributes the backtest reads.
type btVerdictAttrs struct {
	score, detected, min, max, incident, id, peak string
}

func newBTVerdictAttrs(prefix string) btVerdictAttrs {
	return btVerdictAttrs{
		score: prefix + "score", detected: prefix + "detected",
		min: prefix + "expected.min", max: prefix + "expected.max",
		incident: prefix + "incident", id: prefix + "incident.id", peak: prefix + "incident.peak_score",
	}
}

func attrDouble(m pcommon.Map, k string) (float64, bool) {
	v, ok := m.Get(k)
	if !ok || v.Type() != pcommon.ValueTypeDouble {
		return math.NaN(), false
	}
	return v.Double(), true
}

// observe takes in the verdict the processor wrote on one datapoint.
func (st *btStats) observe(t int64, v float64, attrs pcommon.Map, n *btVerdictAttrs) {
	st.points++
	if st.points == 1 {
		st.from, st.to, st.lo, st.hi = t, t, math.Inf(1), math.Inf(-1)
	}
	st.from, st.to = min(st.from, t), max(st.to, t)
	if !math.IsNaN(v) && !math.IsInf(v, 0) {
		st.lo, st.hi = min(st.lo, v), max(st.hi, v)
	}
	score, scored := attrDouble(attrs, n.score)
	if scored {
		st.scored++
	}
	if d, ok := attrs.Get(n.detected); ok && d.Type() == pcommon.ValueTypeBool && d.Bool() {
		st.flagged++
		if len(st.flags) < btMaxFlags {
			lo, _ := attrDouble(attrs, n.min)
			hi, _ := attrDouble(attrs, n.max)
			st.flags = append(st.flags, btFlag{T: t, V: v, Score: score, Min: lo, Max: hi})
		} else {
			st.moreFlags++
		}
	}
	if inc, ok := attrs.Get(n.incident); ok {
		switch inc.AsString() {
		case "started":
			st.incidents++
			st.inIncident = true
			st.openKept = len(st.incs) < btMaxIncidents
			if st.openKept {
				id, _ := attrs.Get(n.id)
				st.incs = append(st.incs, btIncident{Start: t, ID: id.AsString(), Peak: score})
			} else {
				st.moreIncs++
			}
		case "ended":
			if st.inIncident && st.openKept {
				in := &st.incs[len(st.incs)-1]
				in.End = t
				if p, ok := attrDouble(attrs, n.peak); ok {
					in.Peak = p
				}
			}
			st.inIncident = false
		}
	} else if st.inIncident && st.openKept && scored {
		in := &st.incs[len(st.incs)-1]
		in.Peak = max(in.Peak, score)
	}
	if st.trace != nil {
		if !scored {
			score = -1
		}
		st.trace.add(t, v, score)
	}
}

// btJob is a batch for a worker and the series of its datapoints.
type btJob struct {
	md   pmetric.Metrics
	one  *btStats   // every datapoint is this series'
	many []*btStats // else one per datapoint, in walk order
}

// btChunk gathers a series' points for one batch (parallel mode).
type btChunk struct {
	md pmetric.Metrics
	m  pmetric.Metric
	n  int
}

// btRun is one pass of the inputs through a processor built with one
// config.
type btRun struct {
	name      string // the config file, or "defaults"
	cfg       *iforestprocessor.Config
	stats     []*btStats // by series index
	telemetry []telemetryCount
	problems  btProblems
	notes     []string // about the input, not wrong with it
	stripped  int64    // datapoints that came with verdict attributes
}

// btProblems are the input's problems: the first btMaxProblems as
// messages, all counted.
type btProblems struct {
	list  []string
	count int
}

func (p *btProblems) add(format string, args ...any) {
	p.count++
	if len(p.list) < btMaxProblems {
		p.list = append(p.list, fmt.Sprintf(format, args...))
	}
}

// btEngine runs the inputs through one processor: the reading goroutine
// (the caller's) walks every batch, names its series and checks their
// order, and hands the batches to workers that feed the processor and read
// its verdicts. With per-series models only, series are spread over
// GOMAXPROCS workers, each series always to the same one, in points of
// one series per batch (the processor keeps a series' order as long as one
// goroutine feeds it in order, and a series' verdicts do not depend on
// other series). Models that join series or learn across them (models:,
// high_cardinality) see the input's batches as they are, in order, from
// one worker.
type btEngine struct {
	ctx      context.Context
	run      *btRun
	table    *btSeriesTable
	prefix   string
	ordered  bool
	plots    int // series that get a trace
	proc     *runningProcessor
	jobs     []chan btJob
	wg       sync.WaitGroup
	names    btVerdictAttrs
	verdicts *btVerdictWriter // nil: none

	pending  []*btChunk // by series index (parallel mode)
	inWindow int        // points in pending chunks
}

// btOptions are the settings of a backtest run that are not the
// processor's.
type btOptions struct {
	Format   string // auto, otlp, prometheus, csv
	MaxPlots int    // series drawn (with a value trace); the rest are counted
	Verdicts *btVerdictWriter
	Progress *progress
	Workers  int // 0: GOMAXPROCS
}

// ordered says whether cfg's models depend on more than one series each,
// so that the input's batches must reach the processor as they are.
func ordered(cfg *iforestprocessor.Config) bool {
	return len(cfg.Models) > 0 || cfg.HighCardinality.Enabled
}

// runBacktest feeds the inputs through a processor built with cfg.
func runBacktest(ctx context.Context, name string, cfg *iforestprocessor.Config, table *btSeriesTable, inputs []string, o btOptions, trace bool) (*btRun, error) {
	e := &btEngine{
		ctx: ctx, run: &btRun{name: name, cfg: cfg}, table: table,
		prefix: cfg.Output.AttributePrefix, ordered: ordered(cfg),
		names: newBTVerdictAttrs(cfg.Output.AttributePrefix), verdicts: o.Verdicts,
	}
	if trace {
		e.plots = o.MaxPlots
	}
	proc, err := startProcessor(ctx, cfg, consumertest.NewNop())
	if err != nil {
		return nil, err
	}
	e.proc = proc
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if e.ordered {
		workers = 1
	}
	e.jobs = make([]chan btJob, workers)
	errs := make([]error, workers)
	for w := range e.jobs {
		e.jobs[w] = make(chan btJob, btQueue)
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			errs[w] = e.work(e.jobs[w])
		}()
	}

	var sizes []int64
	for _, in := range inputs {
		sizes = append(sizes, fileSize(in))
	}
	var total int64
	for _, s := range sizes {
		total += s
	}
	o.Progress.start(len(inputs), int(total))
	for i, in := range inputs {
		src := &btSource{path: in, format: o.Format, timeMajor: e.ordered, emit: e.add, problems: &e.run.problems, progress: o.Progress}
		t0 := time.Now()
		if err := src.read(); err != nil {
			e.run.problems.add("%s: %v", in, err)
		}
		o.Progress.fileDone(in, int(sizes[i]), time.Since(t0))
	}
	e.flush()
	for _, c := range e.jobs {
		close(c)
	}
	e.wg.Wait()
	o.Progress.finish()
	tel, terr := proc.telemetry(ctx)
	serr := proc.stop(ctx)
	for _, err := range append(errs, terr, serr) {
		if err != nil {
			return nil, err
		}
	}
	e.run.telemetry = tel
	e.reportOrder()
	if e.run.stripped > 0 {
		e.run.notes = append(e.run.notes, fmt.Sprintf("%d datapoints came with %s* attributes (captured after an iforest processor?); they were removed before the backtest", e.run.stripped, e.prefix))
	}
	return e.run, nil
}

// stats returns the run's record of series s, making it when new.
func (e *btEngine) stats(s *btSeries) *btStats {
	for len(e.run.stats) <= s.idx {
		e.run.stats = append(e.run.stats, nil)
	}
	st := e.run.stats[s.idx]
	if st == nil {
		st = &btStats{s: s}
		if s.idx < e.plots {
			st.trace = &btTrace{}
		}
		e.run.stats[s.idx] = st
	}
	return st
}

// reportOrder adds a problem for each series whose points were not in
// time order.
func (e *btEngine) reportOrder() {
	for _, st := range e.run.stats {
		if st == nil || st.inBad == 0 {
			continue
		}
		e.run.problems.add("%s: series %s: %d of its %d points are not after the series' previous point (first: %s after %s); the processor passed them through unscored (out_of_order)",
			st.inBadAt, st.s.name(), st.inBad, st.inN, fmtNanos(st.inBadT), fmtNanos(st.inPrevT))
	}
}

// add routes one batch of the input; where names its place for messages.
func (e *btEngine) add(md pmetric.Metrics, where string) {
	var many []*btStats
	if e.ordered {
		many = make([]*btStats, 0, md.DataPointCount())
	}
	for _, rm := range md.ResourceMetrics().All() {
		rh := e.table.hashMap(rm.Resource().Attributes(), "")
		for _, sm := range rm.ScopeMetrics().All() {
			sc := sm.Scope()
			sh := mix64(rh ^ mix64(e.table.hashString(sc.Name())^e.table.hashString(sc.Version())*31) ^ e.table.hashMap(sc.Attributes(), "")*7)
			for _, m := range sm.Metrics().All() {
				mh := mix64(sh ^ e.table.hashString(m.Name())*3 ^ uint64(m.Type())<<48)
				r := btRoute{e: e, rm: rm, sm: sm, m: m, mh: mh, where: where, many: many}
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					routePoints(&r, m.Gauge().DataPoints(), func(c pmetric.Metric) pmetric.NumberDataPointSlice { return c.Gauge().DataPoints() })
				case pmetric.MetricTypeSum:
					routePoints(&r, m.Sum().DataPoints(), func(c pmetric.Metric) pmetric.NumberDataPointSlice { return c.Sum().DataPoints() })
				case pmetric.MetricTypeHistogram:
					routePoints(&r, m.Histogram().DataPoints(), func(c pmetric.Metric) pmetric.HistogramDataPointSlice { return c.Histogram().DataPoints() })
				case pmetric.MetricTypeExponentialHistogram:
					routePoints(&r, m.ExponentialHistogram().DataPoints(), func(c pmetric.Metric) pmetric.ExponentialHistogramDataPointSlice {
						return c.ExponentialHistogram().DataPoints()
					})
				case pmetric.MetricTypeSummary:
					routePoints(&r, m.Summary().DataPoints(), func(c pmetric.Metric) pmetric.SummaryDataPointSlice { return c.Summary().DataPoints() })
				}
				many = r.many
			}
		}
	}
	if e.ordered {
		if len(many) > 0 {
			e.jobs[0] <- btJob{md: md, many: many}
		}
		return
	}
	if e.inWindow >= btWindowPoints {
		e.flush()
	}
}

// btRoute is the metric a batch's datapoints are being routed from.
type btRoute struct {
	e     *btEngine
	rm    pmetric.ResourceMetrics
	sm    pmetric.ScopeMetrics
	m     pmetric.Metric
	mh    uint64
	where string
	many  []*btStats
}

// btPoint and btPoints are what the datapoint types and their slices share.
type btPoint[P any] interface {
	Attributes() pcommon.Map
	Timestamp() pcommon.Timestamp
	MoveTo(P)
}

type btPoints[P any] interface {
	Len() int
	At(int) P
	AppendEmpty() P
}

// routePoints names each datapoint's series and checks its order, then
// moves it into its series' chunk (parallel mode) or notes its series
// (ordered mode, the batch goes as it is).
func routePoints[P btPoint[P], S btPoints[P]](r *btRoute, dps S, chunkPoints func(pmetric.Metric) S) {
	e := r.e
	for i := 0; i < dps.Len(); i++ {
		dp := dps.At(i)
		attrs := dp.Attributes()
		if e.prefix != "" && hasPrefixKey(attrs, e.prefix) {
			attrs.RemoveIf(func(k string, _ pcommon.Value) bool { return strings.HasPrefix(k, e.prefix) })
			e.run.stripped++
		}
		key := mix64(r.mh ^ e.table.hashMap(attrs, ""))
		st := e.stats(e.table.lookup(key, r.rm, r.sm, r.m, attrs))
		if t := int64(dp.Timestamp()); t != 0 {
			if st.inN > 0 && t <= st.inLast {
				if st.inBad == 0 {
					st.inBadAt, st.inBadT, st.inPrevT = r.where, t, st.inLast
				}
				st.inBad++
			} else {
				st.inLast = t
			}
		}
		st.inN++
		if e.ordered {
			r.many = append(r.many, st)
			continue
		}
		c := e.chunk(st, r)
		dp.MoveTo(chunkPoints(c.m).AppendEmpty())
		c.n++
		e.inWindow++
		if c.n >= btChunkPoints {
			e.send(st)
		}
	}
}

func hasPrefixKey(m pcommon.Map, prefix string) bool {
	for k := range m.All() {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// chunk returns the pending chunk of st's series, making it like the
// metric r routes from when there is none.
func (e *btEngine) chunk(st *btStats, r *btRoute) *btChunk {
	i := st.s.idx
	for len(e.pending) <= i {
		e.pending = append(e.pending, nil)
	}
	c := e.pending[i]
	if c == nil {
		c = &btChunk{}
		c.md, c.m = skeleton(r.rm, r.sm, r.m)
		e.pending[i] = c
	}
	return c
}

// send hands st's pending chunk to the series' worker.
func (e *btEngine) send(st *btStats) {
	c := e.pending[st.s.idx]
	e.pending[st.s.idx] = nil
	e.inWindow -= c.n
	e.jobs[st.s.idx%len(e.jobs)] <- btJob{md: c.md, one: st}
}

// flush sends every pending chunk.
func (e *btEngine) flush() {
	for i, c := range e.pending {
		if c != nil {
			e.send(e.run.stats[i])
		}
	}
}

// work feeds the jobs to the processor and reads the verdicts it wrote.
func (e *btEngine) work(jobs <-chan btJob) error {
	var failed error
	var vw *btVerdictBuffer
	if e.verdicts != nil {
		vw = e.verdicts.buffer()
	}
	for j := range jobs {
		if failed != nil {
			continue // drain, so the reader never blocks
		}
		if err := e.proc.ConsumeMetrics(e.ctx, j.md); err != nil {
			failed = err
			continue
		}
		i := 0
		forEachPoint(j.md, func(t int64, v float64, attrs pcommon.Map) {
			st := j.one
			if st == nil {
				st = j.many[i]
			}
			i++
			st.observe(t, v, attrs, &e.names)
			if vw != nil {
				vw.add(st.s, t, v, attrs, &e.names)
			}
		})
		if vw != nil {
			if err := vw.flush(); err != nil {
				failed = err
			}
		}
	}
	return failed
}

// forEachPoint calls fn with every datapoint's time, value (a histogram's
// or summary's mean observation) and attributes, in walk order.
func forEachPoint(md pmetric.Metrics, fn func(t int64, v float64, attrs pcommon.Map)) {
	mean := func(count uint64, sum float64) float64 {
		if count == 0 {
			return math.NaN()
		}
		return sum / float64(count)
	}
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				var numbers pmetric.NumberDataPointSlice
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					numbers = m.Gauge().DataPoints()
				case pmetric.MetricTypeSum:
					numbers = m.Sum().DataPoints()
				case pmetric.MetricTypeHistogram:
					for _, dp := range m.Histogram().DataPoints().All() {
						fn(int64(dp.Timestamp()), mean(dp.Count(), dp.Sum()), dp.Attributes())
					}
				case pmetric.MetricTypeExponentialHistogram:
					for _, dp := range m.ExponentialHistogram().DataPoints().All() {
						fn(int64(dp.Timestamp()), mean(dp.Count(), dp.Sum()), dp.Attributes())
					}
				case pmetric.MetricTypeSummary:
					for _, dp := range m.Summary().DataPoints().All() {
						fn(int64(dp.Timestamp()), mean(dp.Count(), dp.Sum()), dp.Attributes())
					}
				}
				for _, dp := range numbers.All() {
					v := math.NaN()
					switch dp.ValueType() {
					case pmetric.NumberDataPointValueTypeDouble:
						v = dp.DoubleValue()
					case pmetric.NumberDataPointValueTypeInt:
						v = float64(dp.IntValue())
					}
					fn(int64(dp.Timestamp()), v, dp.Attributes())
				}
			}
		}
	}
}
