package iforestprocessor

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/otel-iforest/iforest/internal/detector"
	"github.com/otel-iforest/iforest/internal/metadata"
	"github.com/otel-iforest/iforest/internal/verdict"
)

type iforestProcessor struct {
	cfg     *Config
	det     *detector.Detector
	grouped *detector.Grouped // high_cardinality: univariate points go here instead of det
	tel     *metadata.TelemetryBuilder
	logger  *zap.Logger

	include, exclude []*regexp.Regexp
	selected         *nameCache // when include/exclude are set

	attr                    attrNames
	writeAttrs, writeMetric bool

	models []*model
	refs   map[string][]featureRef // metric name -> model features it feeds

	ckpt *checkpointer // saves and restores the models; nil without storage (persist.go)

	clock       func() time.Time // tests' clock for the models' recency; nil: time.Now
	lastSweep   atomic.Int64
	memReported atomic.Int64
	skipAttrs   [numSkip]metric.MeasurementOption
	evictAttrs  [2]metric.MeasurementOption // idle, limit
}

// Skip reasons: the detector's statuses plus what the processor itself
// rejects before asking the detector.
const (
	skipNoValue = int(detector.FutureTime) + 1 + iota
	numSkip
)

func skipReason(i int) string {
	if i == skipNoValue {
		return "no_value"
	}
	return detector.Status(i).String()
}

func newProcessor(set processor.Settings, cfg *Config) (*iforestProcessor, error) {
	tel, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	p := &iforestProcessor{
		cfg:         cfg,
		det:         detector.New(cfg.detectorConfig(), cfg.MaxSeries),
		tel:         tel,
		logger:      set.Logger,
		attr:        newAttrNames(cfg.Output.AttributePrefix),
		writeAttrs:  cfg.Output.Mode != OutputMetric,
		writeMetric: cfg.Output.Mode != OutputAttributes,
	}
	if hc := cfg.HighCardinality; hc.Enabled {
		p.grouped = detector.NewGrouped(cfg.detectorConfig(), hc.Warmup, hc.MaxSeries, hc.MaxGroups)
	}
	for _, s := range cfg.Metrics.Include {
		re, err := compileAnchored(s)
		if err != nil {
			return nil, fmt.Errorf("metrics.include: %w", err)
		}
		p.include = append(p.include, re)
	}
	for _, s := range cfg.Metrics.Exclude {
		re, err := compileAnchored(s)
		if err != nil {
			return nil, fmt.Errorf("metrics.exclude: %w", err)
		}
		p.exclude = append(p.exclude, re)
	}
	if p.include != nil || p.exclude != nil {
		p.selected = newNameCache()
	}
	for i := range cfg.Models {
		mc := &cfg.Models[i]
		m := &model{cfg: mc, det: detector.New(mc.detectorConfig(cfg.detectorConfig()), cfg.MaxSeries), staleness: int64(mc.Staleness)}
		for j := range mc.Features {
			m.featureNames = append(m.featureNames, mc.Features[j].name())
			if p.refs == nil {
				p.refs = map[string][]featureRef{}
			}
			p.refs[mc.Features[j].Metric] = append(p.refs[mc.Features[j].Metric], featureRef{m: i, f: j})
		}
		p.models = append(p.models, m)
	}
	for i := range p.skipAttrs {
		if i == int(detector.Scored) {
			continue
		}
		p.skipAttrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", skipReason(i))))
	}
	for i, reason := range []string{"idle", "limit"} {
		p.evictAttrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason)))
	}
	if cfg.Storage != nil {
		p.ckpt = newCheckpointer(p, set.ID)
	}
	p.lastSweep.Store(time.Now().UnixNano())
	return p, nil
}

// start restores the saved models, if storage is configured.
func (p *iforestProcessor) start(ctx context.Context, host component.Host) error {
	if p.ckpt == nil {
		return nil
	}
	return p.ckpt.start(ctx, host)
}

// shutdown saves the models a last time, if storage is configured.
func (p *iforestProcessor) shutdown(ctx context.Context) error {
	var err error
	if p.ckpt != nil {
		err = p.ckpt.shutdown(ctx)
	}
	p.tel.Shutdown()
	return err
}

// batch accumulates one call's counters so telemetry is recorded once per
// batch, not once per datapoint.
type batch struct {
	now       int64
	scored    int64
	anomalies int64
	skipped   [numSkip]int64
	scores    pmetric.MetricSlice // score metrics made for the current scope
	cur       *scoreMetrics
	det       detector.Stats
	mem       int64 // the models' estimated bytes after the batch
	memKnown  bool

	// Multivariate models: the current resource's attributes, the model
	// features fed by the current metric, and what entities got this batch.
	res        pcommon.Map
	refs       []featureRef
	univariate bool
	ratio      bool // the current metric's values lie in [0, 1]
	pending    map[uint64]*pending
	ups        []detector.MemberUpdate
}

// processMetrics scores md in place and always returns it: the processor
// fails open, so its own trouble never costs the pipeline data.
func (p *iforestProcessor) processMetrics(ctx context.Context, md pmetric.Metrics) (pmetric.Metrics, error) {
	start := time.Now()
	b := batch{now: start.UnixNano()}
	if p.clock != nil {
		b.now = p.clock().UnixNano()
	}
	failed := false
	func() {
		defer func() {
			if r := recover(); r != nil {
				failed = true
				p.logger.Error("iforest failed on a batch; forwarding it unscored", zap.Any("panic", r))
			}
		}()
		p.walk(md, &b)
		p.scoreEntities(&b)
		p.maybeEvict(b.now)
		b.det = p.det.TakeStats()
		for _, m := range p.models {
			b.det.Add(m.det.TakeStats())
		}
		if p.grouped != nil {
			b.det.Add(p.grouped.TakeStats())
			b.mem += p.grouped.MemoryBytes()
		}
		b.mem, b.memKnown = b.mem+p.det.MemoryBytes(), true
		if p.selected != nil {
			b.mem += p.selected.memBytes()
		}
		for _, m := range p.models {
			b.mem += m.det.MemoryBytes()
		}
	}()
	p.record(ctx, &b, failed, time.Since(start))
	if p.ckpt != nil {
		// After the batch: a save that has already taken the flag sees this
		// batch's state, or the flag stays set for the next one.
		p.ckpt.changed.Store(true)
	}
	return md, nil
}

func (p *iforestProcessor) walk(md pmetric.Metrics, b *batch) {
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		b.res = rm.Resource().Attributes()
		rh := hashMap(b.res)
		sms := rm.ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			sm := sms.At(j)
			sc := sm.Scope()
			sh := combine(combine(combine(rh, hashString(sc.Name())), hashString(sc.Version())), hashMap(sc.Attributes()))
			ms := sm.Metrics()
			if p.writeMetric {
				b.scores = pmetric.NewMetricSlice()
			}
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				b.refs = p.refs[m.Name()]
				b.univariate = p.cfg.Univariate && p.selects(m.Name())
				if !b.univariate && b.refs == nil {
					continue
				}
				b.cur = nil
				// Utilisations are ratios in [0, 1] (OpenTelemetry's semantic
				// conventions): their expected bands stay within it.
				b.ratio = strings.HasSuffix(m.Name(), ".utilization")
				p.metric(m, combine(sh, hashString(m.Name())), b)
			}
			if p.writeMetric && b.scores.Len() > 0 {
				b.scores.MoveAndAppendTo(ms)
			}
		}
	}
}

func (p *iforestProcessor) metric(m pmetric.Metric, mh uint64, b *batch) {
	if !b.univariate && m.Type() != pmetric.MetricTypeGauge && m.Type() != pmetric.MetricTypeSum {
		return // models take number datapoints only
	}
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		p.numbers(m, m.Gauge().DataPoints(), detector.Gauge, mh, b)
	case pmetric.MetricTypeSum:
		s := m.Sum()
		kind := detector.Gauge // non-monotonic cumulative sums are levels
		switch {
		case s.AggregationTemporality() == pmetric.AggregationTemporalityDelta:
			kind = detector.DeltaSum
		case s.AggregationTemporality() == pmetric.AggregationTemporalityCumulative && s.IsMonotonic():
			kind = detector.CumulativeSum
		}
		p.numbers(m, s.DataPoints(), kind, mh, b)
	case pmetric.MetricTypeHistogram:
		h := m.Histogram()
		histograms(p, m, h.DataPoints(), histKind(h.AggregationTemporality()), mh, b)
	case pmetric.MetricTypeExponentialHistogram:
		h := m.ExponentialHistogram()
		histograms(p, m, h.DataPoints(), histKind(h.AggregationTemporality()), mh, b)
	case pmetric.MetricTypeSummary:
		dps := m.Summary().DataPoints()
		for i := 0; i < dps.Len(); i++ {
			dp := dps.At(i)
			key, own := p.seriesKey(mh, dp.Attributes())
			if own {
				p.attr.strip(dp.Attributes())
			}
			pt := detector.Point{Key: key, Kind: detector.CumulativeHistogram, Start: int64(dp.StartTimestamp()), Time: int64(dp.Timestamp()), V0: float64(dp.Count()), V1: dp.Sum()}
			if q := p.cfg.SummaryQuantile; q != nil {
				v, ok := quantileValue(dp.QuantileValues(), *q)
				if !ok {
					b.skipped[skipNoValue]++
					continue
				}
				pt = detector.Point{Key: key, Kind: detector.Gauge, Start: pt.Start, Time: pt.Time, V0: v}
			}
			if dp.Flags().NoRecordedValue() {
				b.skipped[skipNoValue]++
				continue
			}
			p.observe(m, pt, dp.Attributes(), dp.StartTimestamp(), dp.Timestamp(), b)
		}
	}
}

// points is what pdata's datapoint slices share.
type points[P any] interface {
	Len() int
	At(int) P
}

// histPoint is what explicit and exponential histogram datapoints share.
type histPoint interface {
	Count() uint64
	Sum() float64
	Flags() pmetric.DataPointFlags
	Attributes() pcommon.Map
	StartTimestamp() pcommon.Timestamp
	Timestamp() pcommon.Timestamp
}

// histograms scores histogram datapoints by their count and sum. Generic
// rather than taking the interface, so that a datapoint is not boxed
// (allocated) on its way in.
func histograms[P histPoint, S points[P]](p *iforestProcessor, m pmetric.Metric, dps S, kind detector.Kind, mh uint64, b *batch) {
	for i := 0; i < dps.Len(); i++ {
		dp := dps.At(i)
		key, own := p.seriesKey(mh, dp.Attributes())
		if own {
			p.attr.strip(dp.Attributes())
		}
		if dp.Flags().NoRecordedValue() {
			b.skipped[skipNoValue]++
			continue
		}
		pt := detector.Point{Key: key, Kind: kind, Start: int64(dp.StartTimestamp()), Time: int64(dp.Timestamp()), V0: float64(dp.Count()), V1: dp.Sum()}
		p.observe(m, pt, dp.Attributes(), dp.StartTimestamp(), dp.Timestamp(), b)
	}
}

func histKind(t pmetric.AggregationTemporality) detector.Kind {
	if t == pmetric.AggregationTemporalityDelta {
		return detector.DeltaHistogram
	}
	return detector.CumulativeHistogram
}

func quantileValue(qs pmetric.SummaryDataPointValueAtQuantileSlice, q float64) (float64, bool) {
	for i := 0; i < qs.Len(); i++ {
		if v := qs.At(i); v.Quantile() > q-1e-9 && v.Quantile() < q+1e-9 {
			return v.Value(), true
		}
	}
	return 0, false
}

func (p *iforestProcessor) numbers(m pmetric.Metric, dps pmetric.NumberDataPointSlice, kind detector.Kind, mh uint64, b *batch) {
	for i := 0; i < dps.Len(); i++ {
		dp := dps.At(i)
		if b.refs != nil && p.claim(b.refs, b.res, dp, kind, b) || !b.univariate {
			// A model's datapoint, or one of a model's metric that no
			// feature takes: the metric is still this processor's.
			p.attr.strip(dp.Attributes())
			continue
		}
		key, own := p.seriesKey(mh, dp.Attributes())
		if own {
			p.attr.strip(dp.Attributes())
		}
		var v float64
		switch dp.ValueType() {
		case pmetric.NumberDataPointValueTypeInt:
			v = float64(dp.IntValue())
		case pmetric.NumberDataPointValueTypeDouble:
			v = dp.DoubleValue()
		default:
			b.skipped[skipNoValue]++
			continue
		}
		if dp.Flags().NoRecordedValue() {
			b.skipped[skipNoValue]++
			continue
		}
		pt := detector.Point{Key: key, Kind: kind, Start: int64(dp.StartTimestamp()), Time: int64(dp.Timestamp()), V0: v, Ratio: b.ratio}
		p.observe(m, pt, dp.Attributes(), dp.StartTimestamp(), dp.Timestamp(), b)
	}
}

// seriesKey is the key of a datapoint's series: its metric's (mh, which
// covers resource, scope and name) and its attributes but the verdict
// attributes. own says whether the datapoint carries any of those.
func (p *iforestProcessor) seriesKey(mh uint64, attrs pcommon.Map) (key uint64, own bool) {
	h, own := hashAttrs(attrs, &p.attr)
	return combine(mh, h), own
}

// observe asks the detector for a verdict on pt (its Key set) and writes it
// out.
func (p *iforestProcessor) observe(m pmetric.Metric, pt detector.Point, attrs pcommon.Map, start, ts pcommon.Timestamp, b *batch) {
	var v detector.Verdict
	if p.grouped != nil {
		v = p.grouped.Observe(pt, p.groupKey(m, attrs, b.res), b.now)
	} else {
		v = p.det.Observe(pt, b.now)
	}
	if v.Status != detector.Scored {
		b.skipped[v.Status]++
		return
	}
	b.scored++
	if v.Anomaly {
		b.anomalies++
	}
	if p.writeMetric {
		if b.cur == nil {
			b.cur = newScoreMetrics(b.scores, m, p.cfg.Output.MetricSuffix)
		}
		b.cur.add(attrs, start, ts, v)
	}
	if p.writeAttrs {
		p.attr.write(attrs, &v)
	}
}

// groupKey names the group model of a datapoint in high-cardinality mode:
// its metric, and the values of the group_by attributes (datapoint first,
// then resource; a missing one is left out).
func (p *iforestProcessor) groupKey(m pmetric.Metric, attrs, res pcommon.Map) uint64 {
	h := hashString(m.Name())
	for _, k := range p.cfg.HighCardinality.GroupBy {
		v, ok := attrs.Get(k)
		if !ok {
			v, ok = res.Get(k)
		}
		if ok {
			h = combine(h, combine(hashString(k), hashString(v.AsString())))
		}
	}
	return h
}

// attrNames are the verdict attributes' names, built once from the prefix.
type attrNames struct{ verdict.Names }

func newAttrNames(prefix string) attrNames {
	return attrNames{verdict.NewNames(prefix)}
}

// strip removes verdict attributes that came with the data: only this
// processor sets them on the metrics it selects, so a client cannot raise
// an incident downstream or leave a flag on a point that got no verdict.
func (a *attrNames) strip(attrs pcommon.Map) {
	attrs.RemoveIf(func(k string, _ pcommon.Value) bool { return a.IsVerdict(k) })
}

// write puts a scored point's verdict on its datapoint. Every scored point
// gets the score and the flag; the explanation and incident attributes only
// appear where they say something, to keep the common case small.
// Transitions are recorded in the process's incident ledger, which the
// anomalyevents connector asks before it reports one.
func (a *attrNames) write(attrs pcommon.Map, v *detector.Verdict) {
	attrs.EnsureCapacity(attrs.Len() + 2) // one allocation for both, not two
	attrs.PutDouble(a.Score, v.Score)
	attrs.PutBool(a.Detected, v.Anomaly)
	if v.Anomaly {
		attrs.PutDouble(a.Threshold, v.Threshold)
		if v.HasExpected {
			attrs.PutDouble(a.ExpectedMin, v.ExpectedMin)
			attrs.PutDouble(a.ExpectedMax, v.ExpectedMax)
		}
	}
	if v.IncidentID != 0 {
		attrs.PutStr(a.IncidentID, verdict.FormatID(v.IncidentID))
	}
	switch v.Incident {
	case detector.Started:
		verdict.Opened(v.IncidentID)
		attrs.PutStr(a.Incident, verdict.Started)
	case detector.Ended:
		verdict.Closed(v.IncidentID)
		attrs.PutStr(a.Incident, verdict.Ended)
		attrs.PutDouble(a.IncidentDuration, time.Duration(v.IncidentDuration).Seconds())
		attrs.PutDouble(a.IncidentPeak, v.IncidentPeak)
	}
}

func (p *iforestProcessor) selects(name string) bool {
	if p.selected == nil {
		return true
	}
	if v, ok := p.selected.get(name); ok {
		return v
	}
	ok := p.include == nil
	for _, re := range p.include {
		if re.MatchString(name) {
			ok = true
			break
		}
	}
	for _, re := range p.exclude {
		if ok && re.MatchString(name) {
			ok = false
		}
	}
	p.selected.put(name, ok)
	return ok
}

func (p *iforestProcessor) record(ctx context.Context, b *batch, failed bool, took time.Duration) {
	t := p.tel
	if b.scored > 0 {
		t.ProcessorIforestDatapointsScored.Add(ctx, b.scored)
	}
	if b.anomalies > 0 {
		t.ProcessorIforestAnomalies.Add(ctx, b.anomalies)
	}
	for i, n := range b.skipped {
		if n > 0 {
			t.ProcessorIforestDatapointsSkipped.Add(ctx, n, p.skipAttrs[i])
		}
	}
	if failed {
		t.ProcessorIforestErrors.Add(ctx, 1)
	}
	st := b.det
	if st.TreesBuilt > 0 {
		t.ProcessorIforestTreesRefit.Add(ctx, st.TreesBuilt)
	}
	if d := st.Created - st.EvictedIdle - st.EvictedLimit; d != 0 {
		t.ProcessorIforestSeriesActive.Add(ctx, d)
	}
	if st.EvictedIdle > 0 {
		t.ProcessorIforestSeriesEvicted.Add(ctx, st.EvictedIdle, p.evictAttrs[0])
	}
	if st.EvictedLimit > 0 {
		t.ProcessorIforestSeriesEvicted.Add(ctx, st.EvictedLimit, p.evictAttrs[1])
	}
	// Deltas of an atomic total: concurrent batches' reports add up to it.
	if b.memKnown {
		if d := b.mem - p.memReported.Swap(b.mem); d != 0 {
			t.ProcessorIforestSeriesMemory.Add(ctx, d)
		}
	}
	t.ProcessorIforestBatchDuration.Record(ctx, took.Seconds())
}

// maybeEvict drops idle models at most twice per TTL; the CAS lets one
// caller do it while the others carry on.
func (p *iforestProcessor) maybeEvict(now int64) {
	ttl := int64(p.cfg.SeriesTTL)
	if ttl <= 0 {
		return
	}
	last := p.lastSweep.Load()
	if now-last < ttl/2 || !p.lastSweep.CompareAndSwap(last, now) {
		return
	}
	n := p.det.Evict(now - ttl)
	if p.grouped != nil {
		n += p.grouped.Evict(now - ttl)
	}
	for _, m := range p.models {
		n += m.det.Evict(now - ttl)
	}
	if n > 0 {
		p.logger.Debug("evicted idle series", zap.Int("series", n))
	}
}

// scoreMetrics are the gauges written for one source metric in metric mode.
type scoreMetrics struct {
	score pmetric.NumberDataPointSlice
}

func newScoreMetrics(dst pmetric.MetricSlice, src pmetric.Metric, suffix string) *scoreMetrics {
	m := dst.AppendEmpty()
	m.SetName(src.Name() + suffix)
	m.SetDescription("Anomaly score of " + src.Name() + " from the iforest processor, in [0,1]; higher is more anomalous.")
	m.SetUnit("1")
	return &scoreMetrics{score: m.SetEmptyGauge().DataPoints()}
}

func (s *scoreMetrics) add(attrs pcommon.Map, start, ts pcommon.Timestamp, v detector.Verdict) {
	dp := s.score.AppendEmpty()
	attrs.CopyTo(dp.Attributes())
	dp.SetStartTimestamp(start)
	dp.SetTimestamp(ts)
	dp.SetDoubleValue(v.Score)
}
