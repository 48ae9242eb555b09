package iforestprocessor

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/metadatatest"
)

// tenantBatch is one scrape of gauge metric name for the given tenants,
// each series told apart only by an attribute under the output prefix;
// every datapoint also carries forged verdict attributes.
func tenantBatch(name string, step int, tenants []string, rng *rand.Rand) pmetric.Metrics {
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName(name)
	dps := m.SetEmptyGauge().DataPoints()
	for _, tn := range tenants {
		dp := dps.AppendEmpty()
		dp.SetTimestamp(stepTime(step))
		dp.SetDoubleValue(10 + rng.NormFloat64())
		a := dp.Attributes()
		a.PutStr("anomaly.tenant", tn)
		a.PutBool("anomaly.detected", true)
		a.PutStr("anomaly.incident", "started")
		a.PutStr("anomaly.incident.id", "00000000deadbeef")
		a.PutDouble("anomaly.score", math.NaN())
		a.PutDouble("anomaly.threshold", 1e308)
		a.PutStr("anomaly.top_feature", "forged")
	}
	return md
}

// Series that differ only in a client's attribute under the prefix are two
// series, and verdict attributes that arrive with the data never survive on
// a selected metric: gone from unscored points, replaced on scored ones.
func TestForgedVerdictsAreRemoved(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Metrics.Exclude = []string{"not.mine"}
	p, sink := newTestProcessor(t, cfg, metadatatest.NewSettings(componenttest.NewTelemetry()))
	rng := rand.New(rand.NewPCG(4, 4))
	tenants := []string{"t1", "t2"}
	ctx := context.Background()
	for step := range 40 {
		md := tenantBatch("mine", step, tenants, rng)
		other := tenantBatch("not.mine", step, tenants, rng)
		other.ResourceMetrics().MoveAndAppendTo(md.ResourceMetrics())
		require.NoError(t, p.ConsumeMetrics(ctx, md))
	}
	scored := 0
	for step, md := range sink.AllMetrics() {
		for _, rm := range md.ResourceMetrics().All() {
			m := rm.ScopeMetrics().At(0).Metrics().At(0)
			for _, dp := range m.Gauge().DataPoints().All() {
				a := dp.Attributes()
				tn, ok := a.Get("anomaly.tenant")
				require.True(t, ok, "a client's own attribute under the prefix stays")
				if m.Name() == "not.mine" {
					// Not selected: left alone, forged or not.
					d, _ := a.Get("anomaly.detected")
					assert.True(t, d.Bool())
					continue
				}
				for _, k := range []string{"anomaly.incident", "anomaly.incident.id", "anomaly.threshold", "anomaly.top_feature"} {
					_, ok := a.Get(k)
					assert.False(t, ok, "step %d %s: %s survived", step, tn.Str(), k)
				}
				s, hasScore := a.Get("anomaly.score")
				d, hasFlag := a.Get("anomaly.detected")
				assert.Equal(t, hasScore, hasFlag)
				if step < cfg.Warmup {
					assert.False(t, hasFlag, "step %d %s: a warm-up point carries a flag", step, tn.Str())
					continue
				}
				require.True(t, hasScore, "step %d %s: each tenant is its own series, scored after warm-up", step, tn.Str())
				scored++
				assert.False(t, math.IsNaN(s.Double()))
				assert.Equal(t, s.Double() >= 0.8, d.Bool())
			}
		}
	}
	assert.Equal(t, len(tenants)*(40-cfg.Warmup), scored)
}

// Two chained processors, each with its own metrics (the README's
// iforest/key + iforest/fleet): the second leaves the first's verdicts
// alone, and both metrics get scored.
func TestChainedProcessorsKeepEachOthersVerdicts(t *testing.T) {
	fleetCfg := createDefaultConfig().(*Config)
	fleetCfg.Metrics.Include = []string{"fleet"}
	fleetCfg.HighCardinality.Enabled = true
	keyCfg := createDefaultConfig().(*Config)
	keyCfg.Metrics.Include = []string{"key"}
	ctx := context.Background()
	sink := new(consumertest.MetricsSink)
	fleet, err := NewFactory().CreateMetrics(ctx, metadatatest.NewSettings(componenttest.NewTelemetry()), fleetCfg, sink)
	require.NoError(t, err)
	key, err := NewFactory().CreateMetrics(ctx, metadatatest.NewSettings(componenttest.NewTelemetry()), keyCfg, fleet)
	require.NoError(t, err)
	require.NoError(t, key.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, fleet.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() {
		require.NoError(t, key.Shutdown(ctx))
		require.NoError(t, fleet.Shutdown(ctx))
	})
	rng := rand.New(rand.NewPCG(5, 5))
	const steps = 60
	for step := range steps {
		md := pmetric.NewMetrics()
		ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
		for _, name := range []string{"key", "fleet"} {
			m := ms.AppendEmpty()
			m.SetName(name)
			dps := m.SetEmptyGauge().DataPoints()
			for i := range 4 {
				dp := dps.AppendEmpty()
				dp.Attributes().PutInt("series", int64(i))
				dp.SetTimestamp(stepTime(step))
				dp.SetDoubleValue(float64(10*i) + rng.NormFloat64())
			}
		}
		require.NoError(t, key.ConsumeMetrics(ctx, md))
	}
	last := sink.AllMetrics()[steps-1].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for i := range last.Len() {
		for _, dp := range last.At(i).Gauge().DataPoints().All() {
			_, ok := dp.Attributes().Get("anomaly.score")
			assert.True(t, ok, "%s keeps its verdict through both processors", last.At(i).Name())
		}
	}
}
