package iforestprocessor

import (
	"context"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processorhelper"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/otel-iforest/iforest/internal/metadatatest"
)

// telemetrySum returns the value of a sum metric with the given attribute
// set (nil for none), 0 if absent.
func telemetrySum(t *testing.T, tt *componenttest.Telemetry, name string, attrs *attribute.Set) int64 {
	t.Helper()
	m, err := tt.GetMetric(name)
	if err != nil {
		return 0
	}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		if attrs == nil || dp.Attributes.Equals(attrs) {
			return dp.Value
		}
	}
	return 0
}

// A flood of one-off series at max_series: established models keep
// scoring, the newcomers take each other's places, every datapoint is
// forwarded, and evictions, active series and memory are reported.
func TestSeriesLimitKeepsEstablishedModels(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg := createDefaultConfig().(*Config)
	cfg.MaxSeries = 64 * 8 // 8 per shard
	sink := new(consumertest.MetricsSink)
	ip, err := newProcessor(metadatatest.NewSettings(tt), cfg)
	require.NoError(t, err)
	// A scrape every 10 s: the flood arrives 1 s before the established
	// series' next report, as their models' recency sees it.
	var clock time.Time
	ip.clock = func() time.Time { return clock }
	p, err := processorhelper.NewMetrics(context.Background(), metadatatest.NewSettings(tt), cfg, sink, ip.processMetrics,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}))
	require.NoError(t, err)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 1))

	const established = 100
	sent := 0
	for round := 0; round < cfg.Warmup+5; round++ {
		clock = time.Unix(1700000000+int64(10*round), 0)
		md := gaugeBatch(0, established, round, rng)
		sent += md.DataPointCount()
		require.NoError(t, p.ConsumeMetrics(ctx, md))
	}
	const flood = 20000
	next := established
	for round := cfg.Warmup + 5; next < established+flood; round++ {
		clock = time.Unix(1700000000+int64(10*round)-1, 0)
		md := gaugeBatch(next, 1000, round, rng) // 1000 series never seen again
		next += 1000
		sent += md.DataPointCount()
		require.NoError(t, p.ConsumeMetrics(ctx, md))
		clock = time.Unix(1700000000+int64(10*round), 0)
		md = gaugeBatch(0, established, round, rng)
		sent += md.DataPointCount()
		require.NoError(t, p.ConsumeMetrics(ctx, md))
		// The established series were never evicted: still scored.
		assert.Equal(t, established, countAttr(md, "anomaly.score"), "round %d", round)
	}
	assert.Equal(t, sent, sink.DataPointCount(), "no datapoint lost")

	limit := attribute.NewSet(attribute.String("reason", "limit"))
	evicted := telemetrySum(t, tt, "otelcol_processor_iforest_series_evicted", &limit)
	active := telemetrySum(t, tt, "otelcol_processor_iforest_series_active", nil)
	over := attribute.NewSet(attribute.String("reason", "over_limit"))
	overLimit := telemetrySum(t, tt, "otelcol_processor_iforest_datapoints_skipped", &over)
	t.Logf("active %d evicted %d over_limit %d mem %d", active, evicted, overLimit, telemetrySum(t, tt, "otelcol_processor_iforest_series_memory", nil))
	assert.LessOrEqual(t, active, int64(cfg.MaxSeries))
	// Each flood batch fills the room left by the previous one; the rest of
	// it is over the limit.
	assert.Equal(t, int64(established+flood), active+evicted+overLimit, "every series was kept, evicted or refused")
	assert.Greater(t, evicted, int64(flood/4))
	assert.Greater(t, overLimit, int64(flood/4))
	mem := telemetrySum(t, tt, "otelcol_processor_iforest_series_memory", nil)
	assert.Greater(t, mem, int64(established*8<<10), "warm models hold forests")
	assert.Less(t, mem, int64(cfg.MaxSeries*32<<10))
}

// countAttr counts the datapoints of md that carry attribute key.
func countAttr(md pmetric.Metrics, key string) int {
	n := 0
	forEachAttrs(md, func(attrs pcommon.Map) {
		if _, ok := attrs.Get(key); ok {
			n++
		}
	})
	return n
}

// countingSink counts datapoints without keeping them (a MetricsSink would
// hold a million datapoints in the heap being measured).
type countingSink struct {
	consumertest.MetricsSink
	n int
}

func (c *countingSink) ConsumeMetrics(_ context.Context, md pmetric.Metrics) error {
	c.n += md.DataPointCount()
	return nil
}

// The measurement: per-series mode with max_series 100000 fed
// 1,000,000 distinct series. The heap held afterwards stays under the
// estimate the processor reports (and documents), evictions are counted and
// no datapoint is lost. Long: skipped with -short (run by make quality).
func TestMillionSeriesUnderLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000,000 series: run without -short (make quality)")
	}
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg := createDefaultConfig().(*Config)
	cfg.MaxSeries = 100000
	sink := &countingSink{}
	before := heapInUse()
	p, err := NewFactory().CreateMetrics(context.Background(), metadatatest.NewSettings(tt), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(2, 2))
	const total, batch = 1000000, 1000
	sent := 0
	for from := 0; from < total; from += batch {
		md := gaugeBatch(from, batch, from/batch, rng)
		sent += md.DataPointCount()
		require.NoError(t, p.ConsumeMetrics(ctx, md))
	}
	held := int64(heapInUse() - before)
	require.NoError(t, p.Shutdown(context.Background()))
	runtime.KeepAlive(p)

	assert.Equal(t, sent, sink.n, "no datapoint lost")
	limit := attribute.NewSet(attribute.String("reason", "limit"))
	evicted := telemetrySum(t, tt, "otelcol_processor_iforest_series_evicted", &limit)
	active := telemetrySum(t, tt, "otelcol_processor_iforest_series_active", nil)
	mem := telemetrySum(t, tt, "otelcol_processor_iforest_series_memory", nil)
	t.Logf("active %d, evicted %d, estimated %d B (%.0f B/series), heap held %d B", active, evicted, mem, float64(mem)/float64(active), held)
	assert.LessOrEqual(t, active, int64(cfg.MaxSeries))
	assert.Equal(t, int64(total), active+evicted)
	assert.LessOrEqual(t, held, mem, "the heap stays under the reported estimate")
	assert.Greater(t, held, mem*9/10, "the estimate is not loose")
}
