package iforestprocessor

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/otel-iforest/iforest/internal/metadatatest"
)

// gaugeSeries builds one batch holding a gauge datapoint per value, all of
// one series, one minute apart from start (values may be int64 or float64).
func gaugeSeries(start int, values ...any) pmetric.Metrics {
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("odd.gauge")
	dps := m.SetEmptyGauge().DataPoints()
	for i, v := range values {
		dp := dps.AppendEmpty()
		dp.SetTimestamp(stepTime(start + i))
		switch v := v.(type) {
		case int64:
			dp.SetIntValue(v)
		case float64:
			dp.SetDoubleValue(v)
		}
	}
	return md
}

// consumeAndCompare sends md and checks that what comes out equals what went
// in once the processor's own attributes are removed.
func consumeAndCompare(t *testing.T, p interface {
	ConsumeMetrics(context.Context, pmetric.Metrics) error
}, md pmetric.Metrics, sink interface{ AllMetrics() []pmetric.Metrics },
) pmetric.Metrics {
	t.Helper()
	want := pmetric.NewMetrics()
	md.CopyTo(want)
	n := len(sink.AllMetrics())
	require.NoError(t, p.ConsumeMetrics(context.Background(), md))
	require.Len(t, sink.AllMetrics(), n+1, "the batch must be forwarded")
	got := pmetric.NewMetrics()
	sink.AllMetrics()[n].CopyTo(got)
	forEachAttrs(got, func(m pcommon.Map) {
		m.RemoveIf(func(k string, _ pcommon.Value) bool { return len(k) > 8 && k[:8] == "anomaly." })
	})
	// Byte equality, unlike CompareMetrics, also holds for NaN values.
	var m pmetric.ProtoMarshaler
	wantB, err := m.MarshalMetrics(want)
	require.NoError(t, err)
	gotB, err := m.MarshalMetrics(got)
	require.NoError(t, err)
	require.Equal(t, wantB, gotB, "data changed beyond our attributes")
	return sink.AllMetrics()[n]
}

func TestHostileValuesPassThrough(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	p, sink := newTestProcessor(t, createDefaultConfig().(*Config), metadatatest.NewSettings(tt))

	// Warm the series with ints and doubles mixed: one series either way.
	var warmVals []any
	for i := 0; i < 40; i++ {
		if i%2 == 0 {
			warmVals = append(warmVals, int64(10+i%3))
		} else {
			warmVals = append(warmVals, 10.5+float64(i%3))
		}
	}
	consumeAndCompare(t, p, gaugeSeries(0, warmVals...), sink)

	bad := gaugeSeries(40, math.NaN(), math.Inf(1), math.Inf(-1), 11.0, math.MaxFloat64, -math.MaxFloat64, 5e-324, 12.0)
	out := consumeAndCompare(t, p, bad, sink)
	dps := out.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints()
	for i := 0; i < 3; i++ {
		_, scored := dps.At(i).Attributes().Get("anomaly.score")
		assert.False(t, scored, "non-finite value %d must not be scored", i)
	}
	for i := 3; i < dps.Len(); i++ {
		s, scored := dps.At(i).Attributes().Get("anomaly.score")
		require.True(t, scored, "point %d", i)
		assert.False(t, math.IsNaN(s.Double()) || s.Double() < 0 || s.Double() > 1, "point %d score %v", i, s.Double())
	}
	// Extremes are anomalies; the series is still usable afterwards.
	d, _ := dps.At(4).Attributes().Get("anomaly.detected")
	assert.True(t, d.Bool())

	// Duplicate and older timestamps pass through unscored.
	dup := gaugeSeries(47, 11.0, 11.0)
	dup.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(1).SetTimestamp(stepTime(45))
	out = consumeAndCompare(t, p, dup, sink)
	for i := 0; i < 2; i++ {
		_, scored := out.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(i).Attributes().Get("anomaly.score")
		assert.False(t, scored)
	}

	_, err := tt.GetMetric("otelcol_processor_iforest_errors")
	var m metricdata.Metrics
	require.Error(t, err, "no batch may have failed")
	m, err = tt.GetMetric("otelcol_processor_iforest_datapoints_skipped")
	require.NoError(t, err)
	reasons := map[string]int64{}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		r, _ := dp.Attributes.Value("reason")
		reasons[r.AsString()] = dp.Value
	}
	assert.Equal(t, int64(3), reasons["invalid_value"])
	assert.Equal(t, int64(2), reasons["out_of_order"])
}

func TestEmptyAndOddShapesPassThrough(t *testing.T) {
	p, sink := newTestProcessor(t, createDefaultConfig().(*Config), metadatatest.NewSettings(componenttest.NewTelemetry()))
	md := pmetric.NewMetrics()
	md.ResourceMetrics().AppendEmpty()                              // no scopes
	md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty() // no metrics
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	ms.AppendEmpty().SetName("no.data")                             // metric without data
	ms.AppendEmpty().SetEmptyGauge()                                // empty gauge, no name
	ms.AppendEmpty().SetEmptySum()                                  // empty sum
	ms.AppendEmpty().SetEmptyHistogram().DataPoints().AppendEmpty() // zero-count histogram
	ms.AppendEmpty().SetEmptyExponentialHistogram().DataPoints().AppendEmpty()
	ms.AppendEmpty().SetEmptySummary().DataPoints().AppendEmpty()
	g := ms.AppendEmpty()
	g.SetName("empty.value")
	g.SetEmptyGauge().DataPoints().AppendEmpty() // no value set at all
	consumeAndCompare(t, p, md, sink)
	consumeAndCompare(t, p, pmetric.NewMetrics(), sink)
}

func TestManyAttributesAndTypeChange(t *testing.T) {
	p, sink := newTestProcessor(t, createDefaultConfig().(*Config), metadatatest.NewSettings(componenttest.NewTelemetry()))
	mk := func(step int, sum bool) pmetric.Metrics {
		md := pmetric.NewMetrics()
		m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("shape.shifter")
		var dp pmetric.NumberDataPoint
		if sum {
			s := m.SetEmptySum()
			s.SetIsMonotonic(true)
			s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			dp = s.DataPoints().AppendEmpty()
			dp.SetIntValue(int64(step * 100))
		} else {
			dp = m.SetEmptyGauge().DataPoints().AppendEmpty()
			dp.SetDoubleValue(float64(step % 5))
		}
		for k := 0; k < 500; k++ {
			dp.Attributes().PutStr("attr."+strconv.Itoa(k), strconv.Itoa(k*7))
		}
		dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Unix(int64(step)*60, 0)))
		return md
	}
	for step := 1; step < 50; step++ {
		consumeAndCompare(t, p, mk(step, false), sink)
	}
	_, scored := sink.AllMetrics()[len(sink.AllMetrics())-1].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(0).Attributes().Get("anomaly.score")
	assert.True(t, scored, "a series with 500 attributes is scored")
	// The same series becomes a counter: it starts over (first point is not scored).
	out := consumeAndCompare(t, p, mk(50, true), sink)
	_, scored = out.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Sum().DataPoints().At(0).Attributes().Get("anomaly.score")
	assert.False(t, scored)
}

// One value near ±MaxFloat64 is flagged, and does not blind its series:
// the points after it are not flagged for it, and a later spike is flagged
// with an expected band around the series' own values (it was [0, 0], a
// spike to 50 scored 0.43, and in high-cardinality mode the spread became
// infinite for good).
func TestExtremeValueCannotBlindASeries(t *testing.T) {
	for _, highcard := range []bool{false, true} {
		for _, extreme := range []float64{math.MaxFloat64, -math.MaxFloat64} {
			name := fmt.Sprintf("%s/%g", map[bool]string{false: "per-series", true: "high-cardinality"}[highcard], extreme)
			t.Run(name, func(t *testing.T) {
				cfg := createDefaultConfig().(*Config)
				cfg.HighCardinality.Enabled = highcard
				p, sink := newTestProcessor(t, cfg, metadatatest.NewSettings(componenttest.NewTelemetry()))
				rng := rand.New(rand.NewPCG(2, 3))
				step := 0
				send := func(v float64) pcommon.Map {
					require.NoError(t, p.ConsumeMetrics(context.Background(), gaugeSeries(step, v)))
					step++
					return sink.AllMetrics()[len(sink.AllMetrics())-1].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(0).Attributes()
				}
				flagged := func(a pcommon.Map) bool { d, ok := a.Get("anomaly.detected"); return ok && d.Bool() }
				for range 300 {
					send(10 + rng.NormFloat64())
				}
				assert.True(t, flagged(send(extreme)), "the extreme value is flagged")
				after := 0
				for range 100 {
					if flagged(send(10 + rng.NormFloat64())) {
						after++
					}
				}
				assert.LessOrEqual(t, after, 1, "normal points after the extreme value are not flagged for it")
				spike := send(50)
				s, _ := spike.Get("anomaly.score")
				require.True(t, flagged(spike), "a later spike is seen (score %v)", s.Double())
				lo, ok := spike.Get("anomaly.expected.min")
				require.True(t, ok, "the spike has an expected band")
				hi, _ := spike.Get("anomaly.expected.max")
				t.Logf("spike score %.3f, band [%.2f, %.2f]", s.Double(), lo.Double(), hi.Double())
				assert.True(t, lo.Double() < 10 && 10 < hi.Double() && hi.Double() < 30 && lo.Double() > -10, "band [%g, %g] around the series' values", lo.Double(), hi.Double())
			})
		}
	}
}
