package iforestprocessor

import (
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/detector"
)

// The walk: each selected datapoint of a batch, in order, to its model.

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
				p.ops.metric(&b.ops, m.Name())
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

// numberValue is a number datapoint's value as a float64; false if it has
// none.
func numberValue(dp pmetric.NumberDataPoint) (float64, bool) {
	switch dp.ValueType() {
	case pmetric.NumberDataPointValueTypeInt:
		return float64(dp.IntValue()), true
	case pmetric.NumberDataPointValueTypeDouble:
		return dp.DoubleValue(), true
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
		v, ok := numberValue(dp)
		if !ok || dp.Flags().NoRecordedValue() {
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
	mute, skip := p.ops.rule(&b.ops, attrs, b.res, pt.Time, b.now)
	if skip {
		return // neither scored nor learned: passes through unchanged
	}
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
	p.ops.gate(&b.ops, pt.Key, pt.V0, mute, &v)
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
