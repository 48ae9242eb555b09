package iforestprocessor

// Fixtures shared by the package's tests.

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
)

func confmapFrom(m map[string]any) *confmap.Conf { return confmap.NewFromStringMap(m) }

// testStart is the timestamp of step 0 of generated batches.
var testStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func stepTime(step int) pcommon.Timestamp {
	return pcommon.NewTimestampFromTime(testStart.Add(time.Duration(step) * time.Minute))
}

// makeBatch builds one scrape of every metric type, one minute apart per
// step, with values that are steady noise except for a spike in cpu0's
// utilisation when spike is true. Deterministic per step.
func makeBatch(step int, spike bool) pmetric.Metrics {
	rng := rand.New(rand.NewPCG(uint64(step), 11))
	noise := func(mean, sd float64) float64 { return mean + sd*rng.NormFloat64() }
	t0, ts := stepTime(0), stepTime(step)

	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	rm.Resource().Attributes().PutStr("host.name", "node-1")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("test")

	g := sm.Metrics().AppendEmpty()
	g.SetName("system.cpu.utilization")
	g.SetUnit("1")
	gdps := g.SetEmptyGauge().DataPoints()
	for cpu := 0; cpu < 2; cpu++ {
		dp := gdps.AppendEmpty()
		dp.Attributes().PutStr("cpu", []string{"cpu0", "cpu1"}[cpu])
		dp.SetTimestamp(ts)
		v := math.Max(0, noise(0.35, 0.05))
		if spike && cpu == 0 {
			v = 0.97
		}
		dp.SetDoubleValue(v)
	}

	gi := sm.Metrics().AppendEmpty()
	gi.SetName("process.threads")
	dp := gi.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(ts)
	dp.SetIntValue(int64(noise(40, 2)))

	cs := sm.Metrics().AppendEmpty()
	cs.SetName("http.server.requests")
	sum := cs.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp = sum.DataPoints().AppendEmpty()
	dp.SetStartTimestamp(t0)
	dp.SetTimestamp(ts)
	dp.SetIntValue(int64(step) * 600) // a steady 10 requests/s

	ds := sm.Metrics().AppendEmpty()
	ds.SetName("queue.items.processed")
	dsum := ds.SetEmptySum()
	dsum.SetIsMonotonic(true)
	dsum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	dp = dsum.DataPoints().AppendEmpty()
	dp.SetStartTimestamp(stepTime(step - 1))
	dp.SetTimestamp(ts)
	dp.SetDoubleValue(math.Max(0, noise(120, 10)))

	ud := sm.Metrics().AppendEmpty()
	ud.SetName("system.memory.usage")
	usum := ud.SetEmptySum()
	usum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp = usum.DataPoints().AppendEmpty()
	dp.SetStartTimestamp(t0)
	dp.SetTimestamp(ts)
	dp.SetIntValue(int64(noise(4e9, 1e7)))

	h := sm.Metrics().AppendEmpty()
	h.SetName("http.server.request.duration")
	h.SetUnit("s")
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	hdp := hist.DataPoints().AppendEmpty()
	hdp.SetStartTimestamp(t0)
	hdp.SetTimestamp(ts)
	hdp.SetCount(uint64(step) * 600)
	hdp.SetSum(float64(step) * 600 * 0.2)
	hdp.ExplicitBounds().FromRaw([]float64{0.1, 0.5})
	hdp.BucketCounts().FromRaw([]uint64{uint64(step) * 200, uint64(step) * 350, uint64(step) * 50})

	eh := sm.Metrics().AppendEmpty()
	eh.SetName("rpc.client.duration")
	ehist := eh.SetEmptyExponentialHistogram()
	ehist.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	edp := ehist.DataPoints().AppendEmpty()
	edp.SetStartTimestamp(stepTime(step - 1))
	edp.SetTimestamp(ts)
	n := uint64(math.Max(1, noise(300, 15)))
	edp.SetCount(n)
	edp.SetSum(float64(n) * math.Max(0.001, noise(0.05, 0.002)))
	edp.SetScale(2)
	edp.Positive().BucketCounts().FromRaw([]uint64{n})

	su := sm.Metrics().AppendEmpty()
	su.SetName("gc.pause")
	sdp := su.SetEmptySummary().DataPoints().AppendEmpty()
	sdp.SetStartTimestamp(t0)
	sdp.SetTimestamp(ts)
	sdp.SetCount(uint64(step) * 10)
	sdp.SetSum(float64(step) * 10 * 0.004)
	q := sdp.QuantileValues().AppendEmpty()
	q.SetQuantile(0.99)
	q.SetValue(math.Max(0, noise(0.009, 0.0005)))

	nv := sm.Metrics().AppendEmpty()
	nv.SetName("stale.gauge")
	dp = nv.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetTimestamp(ts)
	dp.SetFlags(pmetric.DefaultDataPointFlags.WithNoRecordedValue(true))
	return md
}

func newTestProcessor(t *testing.T, cfg *Config, set processor.Settings) (processor.Metrics, *consumertest.MetricsSink) {
	t.Helper()
	sink := new(consumertest.MetricsSink)
	p, err := NewFactory().CreateMetrics(context.Background(), set, cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })
	return p, sink
}

const warmSteps = 60

// warm feeds the steady batches that come before the golden input.
func warm(t *testing.T, p processor.Metrics) {
	for step := 0; step < warmSteps; step++ {
		require.NoError(t, p.ConsumeMetrics(context.Background(), makeBatch(step, false)))
	}
}

// numberDP finds the datapoint of metric name whose
// attribute key=val (or the first datapoint when key is empty).
func numberDP(t *testing.T, md pmetric.Metrics, name, key, val string) pmetric.NumberDataPoint {
	t.Helper()
	sm := md.ResourceMetrics().At(0).ScopeMetrics().At(0)
	for i := 0; i < sm.Metrics().Len(); i++ {
		m := sm.Metrics().At(i)
		if m.Name() != name {
			continue
		}
		var dps pmetric.NumberDataPointSlice
		if m.Type() == pmetric.MetricTypeGauge {
			dps = m.Gauge().DataPoints()
		} else {
			dps = m.Sum().DataPoints()
		}
		for j := 0; j < dps.Len(); j++ {
			if v, ok := dps.At(j).Attributes().Get(key); key == "" || ok && v.Str() == val {
				return dps.At(j)
			}
		}
	}
	t.Fatalf("no datapoint %s{%s=%s}", name, key, val)
	return pmetric.NumberDataPoint{}
}

// forEachAttrs calls f with the attributes of every datapoint in md.
func forEachAttrs(md pmetric.Metrics, f func(pcommon.Map)) {
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				switch m := ms.At(k); m.Type() {
				case pmetric.MetricTypeGauge:
					for _, dp := range m.Gauge().DataPoints().All() {
						f(dp.Attributes())
					}
				case pmetric.MetricTypeSum:
					for _, dp := range m.Sum().DataPoints().All() {
						f(dp.Attributes())
					}
				case pmetric.MetricTypeHistogram:
					for _, dp := range m.Histogram().DataPoints().All() {
						f(dp.Attributes())
					}
				case pmetric.MetricTypeExponentialHistogram:
					for _, dp := range m.ExponentialHistogram().DataPoints().All() {
						f(dp.Attributes())
					}
				case pmetric.MetricTypeSummary:
					for _, dp := range m.Summary().DataPoints().All() {
						f(dp.Attributes())
					}
				}
			}
		}
	}
}
