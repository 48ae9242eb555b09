package iforestprocessor

import (
	"context"
	"fmt"
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
	"go.opentelemetry.io/collector/processor"
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
// scoring, the newcomers take each other's places once those are idle
// (not seen for twice the typical interval, 10 s), every datapoint is
// forwarded, and evictions, active series and memory are reported.
func TestSeriesLimitKeepsEstablishedModels(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg := createDefaultConfig().(*Config)
	cfg.MaxSeries = 512
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
	// Every third flood batch finds the one-offs of three batches before
	// idle and takes their places; the rest is over the limit.
	assert.Equal(t, int64(established+flood), active+evicted+overLimit, "every series was kept, evicted or refused")
	assert.Equal(t, int64((flood/1000)/3*(cfg.MaxSeries-established)), evicted)
	assert.Greater(t, overLimit, int64(flood/2))
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
// estimate the processor reports (and documents), the limit holds and no
// datapoint is lost. Long: skipped with -short (run by make quality).
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
	// Before the shutdown: series_active and series_memory are read from
	// the running processor when collected.
	limit := attribute.NewSet(attribute.String("reason", "limit"))
	evicted := telemetrySum(t, tt, "otelcol_processor_iforest_series_evicted", &limit)
	active := telemetrySum(t, tt, "otelcol_processor_iforest_series_active", nil)
	over := attribute.NewSet(attribute.String("reason", "over_limit"))
	overLimit := telemetrySum(t, tt, "otelcol_processor_iforest_datapoints_skipped", &over)
	mem := telemetrySum(t, tt, "otelcol_processor_iforest_series_memory", nil)
	require.NoError(t, p.Shutdown(context.Background()))
	runtime.KeepAlive(p)

	assert.Equal(t, sent, sink.n, "no datapoint lost")
	t.Logf("active %d, evicted %d, over the limit %d, estimated %d B (%.0f B/series), heap held %d B", active, evicted, overLimit, mem, float64(mem)/float64(active), held)
	assert.Equal(t, int64(cfg.MaxSeries), active)
	// Seen once within seconds, none is idle yet: the newcomers beyond the
	// limit pass through (one-off series cannot push out others).
	assert.Equal(t, int64(total), active+evicted+overLimit)
	assert.LessOrEqual(t, held, mem, "the heap stays under the reported estimate")
	assert.Greater(t, held, mem*9/10, "the estimate is not loose")
}

// limitRun is a processor with a fake clock and its telemetry.
type limitRun struct {
	t     *testing.T
	tt    *componenttest.Telemetry
	p     processor.Metrics
	clock time.Time
}

func newLimitRun(t *testing.T, cfg *Config) *limitRun {
	r := &limitRun{t: t, tt: componenttest.NewTelemetry()}
	t.Cleanup(func() { require.NoError(t, r.tt.Shutdown(context.Background())) })
	ip, err := newProcessor(metadatatest.NewSettings(r.tt), cfg)
	require.NoError(t, err)
	ip.clock = func() time.Time { return r.clock }
	r.p, err = processorhelper.NewMetrics(context.Background(), metadatatest.NewSettings(r.tt), cfg, consumertest.NewNop(), ip.processMetrics,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}))
	require.NoError(t, err)
	return r
}

func (r *limitRun) send(md pmetric.Metrics) {
	require.NoError(r.t, r.p.ConsumeMetrics(context.Background(), md))
}

func (r *limitRun) sum(name, reason string) int64 {
	if reason == "" {
		return telemetrySum(r.t, r.tt, name, nil)
	}
	set := attribute.NewSet(attribute.String("reason", reason))
	return telemetrySum(r.t, r.tt, name, &set)
}

// roundRobin sends rounds scrapes of n series, one point each 10 s, in
// requests of 100 series spread over the 10 s (as scrapes of many targets
// arrive), and returns the verdicts given.
func (r *limitRun) roundRobin(n, rounds int) int64 {
	rng := rand.New(rand.NewPCG(9, 9))
	base := time.Unix(1700000000, 0)
	for round := range rounds {
		for from := 0; from < n; from += 100 {
			r.clock = base.Add(time.Duration(round)*10*time.Second + time.Duration(from)*10*time.Second/time.Duration(n))
			r.send(gaugeBatch(from, min(100, n-from), round, rng))
		}
	}
	return r.sum("otelcol_processor_iforest_datapoints_scored", "")
}

// The measurement of the series limit under round-robin scrapes,
// max_series 1000: 800 series keep every model (>= 97% of the verdicts due
// after warm-up, no eviction); 1,500 series: the 1,000 admitted keep theirs
// (>= 90% of their due verdicts) and the other 500 pass unscored. The same
// in high-cardinality mode, with its own max_series.
func TestSeriesLimitRoundRobin(t *testing.T) {
	const rounds = 60
	for _, highcard := range []bool{false, true} {
		for _, n := range []int{800, 1500} {
			name := fmt.Sprintf("series=%d", n)
			if highcard {
				name = "highcard/" + name
			}
			t.Run(name, func(t *testing.T) {
				cfg := createDefaultConfig().(*Config)
				cfg.MaxSeries = 1000
				warmup := cfg.Warmup
				if highcard {
					cfg.HighCardinality.Enabled = true
					cfg.HighCardinality.MaxSeries = 1000
					warmup = cfg.HighCardinality.Warmup
				}
				r := newLimitRun(t, cfg)
				scored := r.roundRobin(n, rounds)
				due := int64(min(n, 1000) * (rounds - warmup))
				evicted := r.sum("otelcol_processor_iforest_series_evicted", "limit")
				over := r.sum("otelcol_processor_iforest_datapoints_skipped", "over_limit")
				t.Logf("%d of %d due verdicts (%.1f%%), %d evicted, %d over the limit", scored, due, 100*float64(scored)/float64(due), evicted, over)
				if n <= 1000 {
					assert.GreaterOrEqual(t, scored, due*97/100)
					assert.Zero(t, over)
				} else {
					assert.GreaterOrEqual(t, scored, due*90/100)
					assert.Equal(t, int64((n-1000)*rounds), over, "the series refused stay refused")
				}
				assert.Zero(t, evicted, "no model is evicted while its series reports")
			})
		}
	}
}

// The lock-out: 10,000 series that send two points in one request each
// fill every slot with models of unknown interval. 1,000 series that then
// report every 10 s take those places within a few points (as soon as they
// are seen coming back), not after series_ttl.
func TestSeriesLimitLockOutClears(t *testing.T) {
	for _, highcard := range []bool{false, true} {
		t.Run(map[bool]string{false: "per-series", true: "high-cardinality"}[highcard], func(t *testing.T) {
			cfg := createDefaultConfig().(*Config)
			cfg.MaxSeries = 10000
			warmup := cfg.Warmup
			if highcard {
				cfg.HighCardinality.Enabled = true
				cfg.HighCardinality.MaxSeries = 10000
				warmup = cfg.HighCardinality.Warmup
			}
			r := newLimitRun(t, cfg)
			rng := rand.New(rand.NewPCG(8, 8))
			base := time.Unix(1700000000, 0)
			r.clock = base
			flood := gaugeBatch(100000, 10000, 0, rng)
			dps := flood.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints()
			for i := range 10000 {
				dp := dps.AppendEmpty()
				dps.At(i).CopyTo(dp)
				dp.SetTimestamp(dp.Timestamp() + 1)
			}
			r.send(flood)
			const rounds = 40
			for round := 1; round <= rounds; round++ {
				r.clock = base.Add(time.Duration(round) * 10 * time.Second)
				r.send(gaugeBatch(0, 1000, round, rng))
			}
			scored := r.sum("otelcol_processor_iforest_datapoints_scored", "")
			// Refused at their first two points, admitted at the third.
			want := int64(1000 * (rounds - 2 - warmup))
			t.Logf("%d verdicts, %d evicted", scored, r.sum("otelcol_processor_iforest_series_evicted", "limit"))
			assert.GreaterOrEqual(t, scored, want*97/100)
		})
	}
}
