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
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/attribute"

	"github.com/otel-iforest/iforest/internal/metadata"
	"github.com/otel-iforest/iforest/internal/metadatatest"
)

// levelBatch is one scrape of n series of one gauge, each around its own
// level, for two services; spiked series are far above theirs.
func levelBatch(n, round int, spiked map[int]bool, rng *rand.Rand) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ts := pcommon.NewTimestampFromTime(time.Unix(1700000000, 0).Add(time.Duration(round) * 10 * time.Second))
	for svc := range 2 {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", []string{"api", "db"}[svc])
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName("request.latency")
		dps := m.SetEmptyGauge().DataPoints()
		for i := svc; i < n; i += 2 {
			level := float64(10 + 7*i)
			v := level + level/20*rng.NormFloat64()
			if spiked[i] {
				v = level * 2
			}
			dp := dps.AppendEmpty()
			dp.Attributes().PutInt("endpoint", int64(i))
			dp.SetTimestamp(ts)
			dp.SetDoubleValue(v)
		}
	}
	return md
}

func TestHighCardinalityMode(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.HighCardinality.Enabled = true
	cfg.HighCardinality.GroupBy = []string{"service.name"}
	p, sink := newTestProcessor(t, cfg, processortest.NewNopSettings(metadata.Type))
	rng := rand.New(rand.NewPCG(3, 3))
	const series = 400
	ctx := context.Background()
	for round := range 40 {
		require.NoError(t, p.ConsumeMetrics(ctx, levelBatch(series, round, nil, rng)))
	}
	spiked := map[int]bool{3: true, 100: true, 251: true, 398: true}
	require.NoError(t, p.ConsumeMetrics(ctx, levelBatch(series, 40, spiked, rng)))
	out := sink.AllMetrics()
	last := out[len(out)-1]
	flagged, scored := 0, 0
	for _, rm := range last.ResourceMetrics().All() {
		for _, dp := range rm.ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().All() {
			i, _ := dp.Attributes().Get("endpoint")
			s, ok := dp.Attributes().Get("anomaly.score")
			require.True(t, ok, "every series is scored after warm-up")
			scored++
			det, _ := dp.Attributes().Get("anomaly.detected")
			if spiked[int(i.Int())] {
				assert.True(t, det.Bool(), "spike on endpoint %d scored %.3f", i.Int(), s.Double())
				lo, ok := dp.Attributes().Get("anomaly.expected.min")
				require.True(t, ok)
				hi, _ := dp.Attributes().Get("anomaly.expected.max")
				level := float64(10 + 7*i.Int())
				assert.True(t, lo.Double() < level && level < hi.Double(), "band %.1f-%.1f around the series' level %.1f", lo.Double(), hi.Double(), level)
			}
			if det.Bool() {
				flagged++
			}
		}
	}
	assert.Equal(t, series, scored)
	assert.LessOrEqual(t, flagged, len(spiked)+2, "few false alarms")
}

func TestGroupKey(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.HighCardinality.GroupBy = []string{"service.name"}
	p, err := newProcessor(processortest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	m := pmetric.NewMetric()
	m.SetName("request.latency")
	res, attrs := pcommon.NewMap(), pcommon.NewMap()
	attrs.PutInt("endpoint", 1)
	res.PutStr("service.name", "api")
	api := p.groupKey(m, attrs, res)
	attrs.PutInt("endpoint", 2)
	assert.Equal(t, api, p.groupKey(m, attrs, res), "other series, same group")
	res.PutStr("service.name", "db")
	assert.NotEqual(t, api, p.groupKey(m, attrs, res), "another service has its own model")
	attrs.PutStr("service.name", "api")
	assert.Equal(t, api, p.groupKey(m, attrs, res), "the datapoint's attribute comes first")
	m.SetName("other")
	assert.NotEqual(t, api, p.groupKey(m, attrs, res), "another metric has its own model")
}

// highcardWithGroups is a high-cardinality processor holding at most
// maxGroups group models, recording its telemetry into tt.
func highcardWithGroups(t *testing.T, maxGroups int) (*iforestProcessor, *componenttest.Telemetry) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg := createDefaultConfig().(*Config)
	cfg.HighCardinality.Enabled = true
	cfg.HighCardinality.MaxGroups = maxGroups
	p, err := newProcessor(metadatatest.NewSettings(tt), cfg)
	require.NoError(t, err)
	return p, tt
}

// sendNames has p process one gauge point for each of names at round
// (every 10 s), of value v(i) for the i-th name.
func sendNames(t *testing.T, p *iforestProcessor, round int, names []string, v func(i int) float64) {
	now := time.Unix(1700000000, 0).Add(time.Duration(round) * 10 * time.Second)
	p.clock = func() time.Time { return now }
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	for i, n := range names {
		m := ms.AppendEmpty()
		m.SetName(n)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(now))
		dp.SetDoubleValue(v(i))
	}
	_, err := p.processMetrics(context.Background(), md)
	require.NoError(t, err)
}

// Group models are bounded in high-cardinality mode: a flood of metric
// names (each its own group) holds at most max_groups models, and the heap
// stays within the memory estimate, itself within the documented budget.
func TestHighCardinalityGroupsStayBounded(t *testing.T) {
	const maxGroups = 200
	p, tt := highcardWithGroups(t, maxGroups)
	before := heapInUse()
	rng := rand.New(rand.NewPCG(6, 6))
	names := make([]string, 4000)
	for i := range names {
		names[i] = fmt.Sprintf("flood.%d", i)
	}
	for round := range 20 {
		sendNames(t, p, round, names, func(int) float64 { return 10 + rng.NormFloat64() })
	}
	held := int64(heapInUse() - before)
	runtime.KeepAlive(p)
	mem := telemetrySum(t, tt, "otelcol_processor_iforest_series_memory", nil)
	t.Logf("heap held %d B, estimate %d B, groups %d", held, mem, p.grouped.Groups())
	assert.LessOrEqual(t, p.grouped.Groups(), maxGroups)
	assert.Equal(t, int64(p.grouped.Groups()), telemetrySum(t, tt, "otelcol_processor_iforest_groups_active", nil), "groups_active reports the group models held")
	// The documented budget: about 55 KiB per group model at the defaults
	// (a full window), about 250 B per series, and the groups' shared build
	// scratch (64 x 36 KiB).
	budget := int64(maxGroups*55<<10 + len(names)*250 + 64*36<<10)
	assert.LessOrEqual(t, mem, budget)
	assert.LessOrEqual(t, held, budget)
	assert.Greater(t, held, mem*8/10, "the estimate is not loose")
}

// A metric that stops gives its group model's place to a new one at
// max_groups, and groups_evicted says so.
func TestHighCardinalityGroupEvictionsAreCounted(t *testing.T) {
	p, tt := highcardWithGroups(t, 2)
	round := 0
	for ; round < 20; round++ {
		sendNames(t, p, round, []string{"a", "b"}, func(int) float64 { return float64(10 + round%3) })
	}
	require.Equal(t, 2, p.grouped.Groups())
	// a stops; c starts and, once its series is warm, takes a's place.
	for ; round < 40; round++ {
		sendNames(t, p, round, []string{"b", "c"}, func(int) float64 { return float64(10 + round%3) })
	}
	limit := attribute.NewSet(attribute.String("reason", "limit"))
	assert.Equal(t, int64(1), telemetrySum(t, tt, "otelcol_processor_iforest_groups_evicted", &limit))
	assert.Equal(t, int64(2), telemetrySum(t, tt, "otelcol_processor_iforest_groups_active", nil))
}
