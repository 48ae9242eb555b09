package iforestprocessor

import (
	"math"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

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
