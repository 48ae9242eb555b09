package iforestprocessor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/goleak"

	"github.com/otel-iforest/iforest/internal/metadata"
	"github.com/otel-iforest/iforest/internal/metadatatest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Golden files are rewritten with UPDATE_GOLDEN=1 go test ./processor/.
var updateGolden = os.Getenv("UPDATE_GOLDEN") == "1"

func TestGolden(t *testing.T) {
	inputFile := filepath.Join("testdata", "golden", "input.yaml")
	if updateGolden {
		// Real timestamps: the input must come after the warm-up batches.
		require.NoError(t, golden.WriteMetrics(t, inputFile, makeBatch(warmSteps, true), golden.SkipMetricTimestampNormalization()))
	}
	for _, mode := range []string{OutputAttributes, OutputMetric, OutputBoth} {
		t.Run(mode, func(t *testing.T) {
			cfg := createDefaultConfig().(*Config)
			cfg.Output.Mode = mode
			p, sink := newTestProcessor(t, cfg, processortest.NewNopSettings(metadata.Type))
			warm(t, p)
			sink.Reset()

			input, err := golden.ReadMetrics(inputFile)
			require.NoError(t, err)
			require.NoError(t, p.ConsumeMetrics(context.Background(), input))
			require.Len(t, sink.AllMetrics(), 1)
			got := sink.AllMetrics()[0]

			expectedFile := filepath.Join("testdata", "golden", mode+"_expected.yaml")
			if updateGolden {
				require.NoError(t, golden.WriteMetrics(t, expectedFile, got, golden.SkipMetricTimestampNormalization()))
			}
			expected, err := golden.ReadMetrics(expectedFile)
			require.NoError(t, err)
			// The golden writer sorts datapoints; the processor keeps their order.
			require.NoError(t, pmetrictest.CompareMetrics(expected, got, pmetrictest.IgnoreMetricDataPointsOrder()))
			// The golden input is scored (a stale timestamp would pass it
			// through untouched and make this test vacuous).
			var scored int
			forEachAttrs(expected, func(m pcommon.Map) {
				if _, ok := m.Get("anomaly.score"); ok {
					scored++
				}
			})
			if mode != OutputMetric {
				assert.Equal(t, 9, scored)
			}
		})
	}
}

func TestSpikeIsFlaggedAndEverythingForwarded(t *testing.T) {
	p, sink := newTestProcessor(t, createDefaultConfig().(*Config), processortest.NewNopSettings(metadata.Type))
	warm(t, p)
	sink.Reset()
	in := makeBatch(warmSteps, true)
	want := pmetric.NewMetrics()
	in.CopyTo(want)
	require.NoError(t, p.ConsumeMetrics(context.Background(), in))
	got := sink.AllMetrics()[0]
	assert.Equal(t, want.DataPointCount(), got.DataPointCount())

	cpu0 := numberDP(t, got, "system.cpu.utilization", "cpu", "cpu0").Attributes()
	cpu1 := numberDP(t, got, "system.cpu.utilization", "cpu", "cpu1").Attributes()
	det, _ := cpu0.Get("anomaly.detected")
	assert.True(t, det.Bool(), "spike not flagged")
	score, _ := cpu0.Get("anomaly.score")
	assert.Greater(t, score.Double(), 0.75)
	det, _ = cpu1.Get("anomaly.detected")
	assert.False(t, det.Bool())
	// The flagged point explains itself and opens an incident.
	thr, _ := cpu0.Get("anomaly.threshold")
	assert.Equal(t, 0.8, thr.Double())
	lo, _ := cpu0.Get("anomaly.expected.min")
	hi, _ := cpu0.Get("anomaly.expected.max")
	assert.Less(t, lo.Double(), 0.30)
	assert.Greater(t, hi.Double(), 0.40)
	assert.Less(t, hi.Double(), 0.97)
	inc, _ := cpu0.Get("anomaly.incident")
	assert.Equal(t, "started", inc.Str())
	id, _ := cpu0.Get("anomaly.incident.id")
	assert.Len(t, id.Str(), 16)
	_, ok := cpu1.Get("anomaly.incident")
	assert.False(t, ok)
	// Int gauges and cumulative sums are scored too.
	for _, name := range []string{"process.threads", "http.server.requests", "queue.items.processed", "system.memory.usage"} {
		_, ok := numberDP(t, got, name, "", "").Attributes().Get("anomaly.score")
		assert.True(t, ok, name)
	}
	// A point without a value passes through untouched.
	assert.Equal(t, 0, numberDP(t, got, "stale.gauge", "", "").Attributes().Len())

	// Apart from our attributes the data is unchanged.
	forEachAttrs(got, func(m pcommon.Map) {
		m.RemoveIf(func(k string, _ pcommon.Value) bool { return strings.HasPrefix(k, "anomaly.") })
	})
	require.NoError(t, pmetrictest.CompareMetrics(want, got))
}

func TestIncidentEndsAfterQuietPoints(t *testing.T) {
	p, sink := newTestProcessor(t, createDefaultConfig().(*Config), processortest.NewNopSettings(metadata.Type))
	warm(t, p)
	require.NoError(t, p.ConsumeMetrics(context.Background(), makeBatch(warmSteps, true)))
	startID, _ := numberDP(t, sink.AllMetrics()[warmSteps], "system.cpu.utilization", "cpu", "cpu0").Attributes().Get("anomaly.incident.id")
	for step := warmSteps + 1; step <= warmSteps+5; step++ {
		require.NoError(t, p.ConsumeMetrics(context.Background(), makeBatch(step, false)))
		attrs := numberDP(t, sink.AllMetrics()[step], "system.cpu.utilization", "cpu", "cpu0").Attributes()
		id, ok := attrs.Get("anomaly.incident.id")
		require.True(t, ok, "step %d is inside the incident", step)
		assert.Equal(t, startID.Str(), id.Str())
		inc, ok := attrs.Get("anomaly.incident")
		if step < warmSteps+5 {
			assert.False(t, ok, "step %d", step)
			continue
		}
		require.True(t, ok)
		assert.Equal(t, "ended", inc.Str())
		dur, _ := attrs.Get("anomaly.incident.duration")
		assert.Equal(t, 300.0, dur.Double())
		peak, _ := attrs.Get("anomaly.incident.peak_score")
		assert.Greater(t, peak.Double(), 0.8)
	}
}

func TestMetricModeLeavesSourceUntouched(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Output.Mode = OutputMetric
	p, sink := newTestProcessor(t, cfg, processortest.NewNopSettings(metadata.Type))
	warm(t, p)
	sink.Reset()
	in := makeBatch(warmSteps, true)
	want := pmetric.NewMetrics()
	in.CopyTo(want)
	require.NoError(t, p.ConsumeMetrics(context.Background(), in))
	got := sink.AllMetrics()[0]

	ms := got.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	wantMs := want.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	// Every source metric comes first, unchanged; score metrics follow.
	for i := 0; i < wantMs.Len(); i++ {
		assert.Equal(t, wantMs.At(i).Name(), ms.At(i).Name())
	}
	scoreMetric := map[string]pmetric.Metric{}
	for i := wantMs.Len(); i < ms.Len(); i++ {
		scoreMetric[ms.At(i).Name()] = ms.At(i)
	}
	cpu, ok := scoreMetric["system.cpu.utilization.anomaly_score"]
	require.True(t, ok, "score metric missing; have %v", scoreMetric)
	require.Equal(t, 2, cpu.Gauge().DataPoints().Len())
	dp := cpu.Gauge().DataPoints().At(0)
	v, _ := dp.Attributes().Get("cpu")
	assert.Equal(t, "cpu0", v.Str())
	assert.Greater(t, dp.DoubleValue(), 0.75)
	assert.Equal(t, stepTime(warmSteps), dp.Timestamp())
	_, ok = scoreMetric["stale.gauge.anomaly_score"]
	assert.False(t, ok, "no score metric for a metric without scored points")

	// Truncated to the source metrics, the output equals the input.
	ms.RemoveIf(func(m pmetric.Metric) bool { _, ok := scoreMetric[m.Name()]; return ok })
	require.NoError(t, pmetrictest.CompareMetrics(want, got))
}

func TestMetricSelection(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Metrics.Include = []string{`system\..*`, "gc.pause"}
	cfg.Metrics.Exclude = []string{`system\.memory\..*`}
	p, sink := newTestProcessor(t, cfg, processortest.NewNopSettings(metadata.Type))
	warm(t, p)
	got := sink.AllMetrics()[warmSteps-1]
	_, ok := numberDP(t, got, "system.cpu.utilization", "cpu", "cpu0").Attributes().Get("anomaly.score")
	assert.True(t, ok)
	_, ok = numberDP(t, got, "system.memory.usage", "", "").Attributes().Get("anomaly.score")
	assert.False(t, ok, "excluded metric was scored")
	_, ok = numberDP(t, got, "process.threads", "", "").Attributes().Get("anomaly.score")
	assert.False(t, ok, "metric outside include was scored")
}

// Same series key however the client orders attributes; different key when
// any identifying part differs.
func TestSeriesKey(t *testing.T) {
	a := pcommon.NewMap()
	a.PutStr("x", "1")
	a.PutInt("y", 2)
	b := pcommon.NewMap()
	b.PutInt("y", 2)
	b.PutStr("x", "1")
	assert.Equal(t, hashMap(a), hashMap(b))
	b.PutStr("y", "2") // same text, other type
	assert.NotEqual(t, hashMap(a), hashMap(b))
	c := pcommon.NewMap()
	c.PutStr("x", "1y")
	d := pcommon.NewMap()
	d.PutStr("x1", "y")
	assert.NotEqual(t, hashMap(c), hashMap(d))
	assert.NotEqual(t, hashMap(pcommon.NewMap()), hashMap(c))
	// Our own verdict attributes are not part of a series' identity; other
	// attributes under the prefix are.
	own := newAttrNames("anomaly.")
	e := pcommon.NewMap()
	a.CopyTo(e)
	e.PutDouble("anomaly.score", 0.3)
	e.PutBool("anomaly.detected", false)
	e.PutStr("anomaly.incident", "started")
	h, found := hashAttrs(e, &own)
	assert.Equal(t, hashMap(a), h)
	assert.True(t, found)
	h, found = hashAttrs(a, &own)
	assert.Equal(t, hashMap(a), h)
	assert.False(t, found)
	e.PutStr("anomaly.tenant", "t1")
	h, _ = hashAttrs(e, &own)
	assert.NotEqual(t, hashMap(a), h, "a client's attribute under the prefix tells series apart")
	assert.Equal(t, 0.0, testing.AllocsPerRun(100, func() { hashAttrs(e, &own) }))
}

func TestTelemetry(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	p, _ := newTestProcessor(t, createDefaultConfig().(*Config), metadatatest.NewSettings(tt))
	warm(t, p)
	require.NoError(t, p.ConsumeMetrics(context.Background(), makeBatch(warmSteps, true)))

	// 9 series are scorable (2 cpu gauges, 1 int gauge, 2 rate sums, 1 level
	// sum, 3 histogram-like); the 3 cumulative rate-based ones lose their
	// first point (delta points carry their own interval).
	const series, rated = 9, 3
	steps := warmSteps + 1
	warmup := createDefaultConfig().(*Config).Warmup
	scored := int64((series-rated)*(steps-warmup) + rated*(steps-1-warmup))
	metadatatest.AssertEqualProcessorIforestDatapointsScored(t, tt, []metricdata.DataPoint[int64]{{Value: scored}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualProcessorIforestSeriesActive(t, tt, []metricdata.DataPoint[int64]{{Value: series}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualProcessorIforestDatapointsSkipped(t, tt, []metricdata.DataPoint[int64]{
		{Value: int64(series * warmup), Attributes: attribute.NewSet(attribute.String("reason", "warmup"))},
		{Value: rated, Attributes: attribute.NewSet(attribute.String("reason", "first_point"))},
		{Value: int64(steps), Attributes: attribute.NewSet(attribute.String("reason", "no_value"))},
	}, metricdatatest.IgnoreTimestamp())
	m, err := tt.GetMetric("otelcol_processor_iforest_anomalies")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, m.Data.(metricdata.Sum[int64]).DataPoints[0].Value, int64(1))
	m, err = tt.GetMetric("otelcol_processor_iforest_trees_refit")
	require.NoError(t, err)
	assert.Greater(t, m.Data.(metricdata.Sum[int64]).DataPoints[0].Value, int64(series*createDefaultConfig().(*Config).Trees))
}

func TestConcurrentConsumers(t *testing.T) {
	p, sink := newTestProcessor(t, createDefaultConfig().(*Config), processortest.NewNopSettings(metadata.Type))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for step := 0; step < 50; step++ {
				md := makeBatch(step, false)
				// Each goroutine sends its own host so each series stays in order.
				md.ResourceMetrics().At(0).Resource().Attributes().PutInt("worker", int64(g))
				assert.NoError(t, p.ConsumeMetrics(context.Background(), md))
			}
		}(g)
	}
	wg.Wait()
	assert.Equal(t, 4*50, len(sink.AllMetrics()))
}
