package iforestprocessor

import (
	"context"
	"fmt"
	"math"
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

func hostModel() ModelConfig {
	return ModelConfig{
		Name:   "host",
		Entity: EntityConfig{ResourceAttributes: []string{"host.name"}},
		Features: []FeatureConfig{
			{Name: "cpu", Metric: "system.cpu.utilization", WhereNot: map[string]string{"state": "idle"}, Per: "cpu", Aggregate: "mean"},
			{Name: "memory", Metric: "system.memory.utilization", Where: map[string]string{"state": "used"}},
		},
		Staleness:    2 * time.Minute,
		ForestConfig: createDefaultConfig().(*Config).ForestConfig,
	}
}

// hostScrape is one scrape of two hosts' CPU (2 cpus x 3 states) and memory
// (used, free), like the host metrics receiver's utilisation metrics.
func hostScrape(step int, busyA float64, withMemory bool) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ts := stepTime(step)
	for h, host := range []string{"a", "b"} {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("host.name", host)
		ms := rm.ScopeMetrics().AppendEmpty().Metrics()
		cpu := ms.AppendEmpty()
		cpu.SetName("system.cpu.utilization")
		dps := cpu.SetEmptyGauge().DataPoints()
		busy := 0.30 + 0.02*math.Sin(float64(step+h))
		if h == 0 && busyA > 0 {
			busy = busyA
		}
		for c := 0; c < 2; c++ {
			for _, sv := range []struct {
				state string
				v     float64
			}{{"user", busy * 0.7}, {"system", busy * 0.3}, {"idle", 1 - busy}} {
				state, v := sv.state, sv.v
				dp := dps.AppendEmpty()
				dp.Attributes().PutStr("cpu", []string{"cpu0", "cpu1"}[c])
				dp.Attributes().PutStr("state", state)
				dp.SetTimestamp(ts)
				dp.SetDoubleValue(v)
			}
		}
		if !withMemory {
			continue
		}
		mem := ms.AppendEmpty()
		mem.SetName("system.memory.utilization")
		mdps := mem.SetEmptyGauge().DataPoints()
		used := 0.55 + 0.02*math.Cos(float64(step*3+h))
		for _, sv := range []struct {
			state string
			v     float64
		}{{"used", used}, {"free", 1 - used}} {
			state, v := sv.state, sv.v
			dp := mdps.AppendEmpty()
			dp.Attributes().PutStr("state", state)
			dp.SetTimestamp(ts)
			dp.SetDoubleValue(v)
		}
	}
	return md
}

func dpsOf(md pmetric.Metrics, host, metric string) []pmetric.NumberDataPoint {
	var out []pmetric.NumberDataPoint
	for _, rm := range md.ResourceMetrics().All() {
		if v, _ := rm.Resource().Attributes().Get("host.name"); v.Str() != host {
			continue
		}
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				if m.Name() == metric {
					for _, dp := range m.Gauge().DataPoints().All() {
						out = append(out, dp)
					}
				}
			}
		}
	}
	return out
}

func TestHostModelJoinsCPUAndMemory(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Models = []ModelConfig{hostModel()}
	require.NoError(t, cfg.Validate())
	p, sink := newTestProcessor(t, cfg, metadatatest.NewSettings(componenttest.NewTelemetry()))
	for step := 0; step < 80; step++ {
		require.NoError(t, p.ConsumeMetrics(context.Background(), hostScrape(step, 0, true)))
	}
	require.NoError(t, p.ConsumeMetrics(context.Background(), hostScrape(80, 0.95, true)))
	out := sink.AllMetrics()[80]

	for _, dp := range dpsOf(out, "a", "system.cpu.utilization") {
		attrs := dp.Attributes()
		state, _ := attrs.Get("state")
		model, ok := attrs.Get("anomaly.model")
		if state.Str() == "idle" {
			// Not a feature of the model: scored on its own series.
			assert.False(t, ok)
			_, scored := attrs.Get("anomaly.score")
			assert.True(t, scored)
			continue
		}
		require.True(t, ok, "busy CPU datapoints carry the model's verdict")
		assert.Equal(t, "host", model.Str())
		det, _ := attrs.Get("anomaly.detected")
		assert.True(t, det.Bool(), "host a's CPU jump is anomalous")
		top, _ := attrs.Get("anomaly.top_feature")
		assert.Equal(t, "cpu", top.Str())
		contrib, _ := attrs.Get("anomaly.contributions")
		assert.Regexp(t, `^cpu 0\.\d\d, memory 0\.\d\d$`, contrib.Str())
	}
	for _, dp := range dpsOf(out, "a", "system.memory.utilization") {
		state, _ := dp.Attributes().Get("state")
		_, ok := dp.Attributes().Get("anomaly.model")
		assert.Equal(t, state.Str() == "used", ok)
	}
	// Host b is its own entity and stays quiet.
	for _, dp := range dpsOf(out, "b", "system.memory.utilization") {
		if state, _ := dp.Attributes().Get("state"); state.Str() == "used" {
			det, _ := dp.Attributes().Get("anomaly.detected")
			assert.False(t, det.Bool())
		}
	}
}

func TestModelWaitsForStaleMembers(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg := createDefaultConfig().(*Config)
	cfg.Models = []ModelConfig{hostModel()}
	cfg.Univariate = false
	p, sink := newTestProcessor(t, cfg, metadatatest.NewSettings(tt))
	require.NoError(t, p.ConsumeMetrics(context.Background(), hostScrape(0, 0, true)))
	// CPU keeps coming, memory stops: from 3 minutes on memory is stale.
	for step := 1; step < 5; step++ {
		require.NoError(t, p.ConsumeMetrics(context.Background(), hostScrape(step, 0, false)))
	}
	m, err := tt.GetMetric("otelcol_processor_iforest_datapoints_skipped")
	require.NoError(t, err)
	got := map[string]int64{}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		r, _ := dp.Attributes.Value("reason")
		got[r.AsString()] = dp.Value
	}
	// Each batch feeds 4 busy-CPU datapoints (+1 memory in the first) per host.
	assert.Equal(t, int64(2*(5+4+4)), got["warmup"])
	assert.Equal(t, int64(2*2*4), got["incomplete"])
	// With univariate off, unclaimed datapoints pass through untouched.
	for _, dp := range dpsOf(sink.AllMetrics()[4], "a", "system.cpu.utilization") {
		if state, _ := dp.Attributes().Get("state"); state.Str() == "idle" {
			assert.Equal(t, 2, dp.Attributes().Len())
		}
	}
}

func TestFeatureAggregation(t *testing.T) {
	var a featureAcc
	for _, v := range []float64{1, 2, 6} {
		a.add(v, 5, "", false)
	}
	assert.Equal(t, 3.0, a.value("mean"))
	assert.Equal(t, 9.0, a.value("sum"))
	assert.Equal(t, 1.0, a.value("min"))
	assert.Equal(t, 6.0, a.value("max"))
	// Per cpu: cpu0 user+system = 0.3, cpu1 = 0.5; mean over cpus 0.4.
	var per featureAcc
	per.add(0.2, 1, "cpu0", true)
	per.add(0.1, 2, "cpu0", true)
	per.add(0.4, 1, "cpu1", true)
	per.add(0.1, 1, "cpu1", true)
	assert.InDelta(t, 0.4, per.value("mean"), 1e-12)
	assert.InDelta(t, 0.8, per.value("sum"), 1e-12)
	assert.Equal(t, int64(2), per.time)
}

func TestExplain(t *testing.T) {
	top, text := explain([]string{"cpu", "memory", "disk"}, []float64{0.2, 0.7, 0.1})
	assert.Equal(t, "memory", top)
	assert.Equal(t, "memory 0.70, cpu 0.20, disk 0.10", text)
}

func TestModelConfigErrors(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	bad := hostModel()
	bad.Features = bad.Features[:1]
	bad.Staleness = 0
	dup := hostModel()
	dup.Features[1].Aggregate = "median"
	dup.Trees = 5000
	cfg.Models = []ModelConfig{hostModel(), dup, bad}
	err := cfg.Validate()
	require.Error(t, err)
	for _, want := range []string{
		`models[1].name: "host" is used by another model`,
		"models[1].features[1].aggregate: must be one of mean, sum, min, max",
		"models[2].features: a model joins at least 2 features, got 1",
		"models[2].staleness: must be positive",
	} {
		assert.Contains(t, err.Error(), want)
	}
	cfg.Models = []ModelConfig{hostModel()}
	cfg.Models[0].Trees = 5000
	assert.ErrorContains(t, cfg.Validate(), "models[0] (host): trees: must be between 1 and 1000, got 5000")
	// A tree's split names its feature in 12 bits.
	wide := hostModel()
	wide.Features = nil
	for j := range 4096 {
		wide.Features = append(wide.Features, FeatureConfig{Metric: fmt.Sprintf("m%d", j)})
	}
	cfg.Models = []ModelConfig{wide}
	assert.ErrorContains(t, cfg.Validate(), "models[0].features: a model joins at most 4095 features, got 4096")
	cfg.Models = []ModelConfig{hostModel()}
	// lookback is for one-input series: a joined model's small window is
	// not checked against it.
	cfg.Models[0].Trees, cfg.Models[0].WindowSize, cfg.Models[0].Warmup = 32, 16, 8
	assert.NoError(t, cfg.Validate())
}

func TestSkipReasonsAreDistinct(t *testing.T) {
	seen := map[string]int{}
	for i := 0; i < numSkip; i++ {
		if i == 0 {
			continue // scored
		}
		r := skipReason(i)
		_, dup := seen[r]
		assert.False(t, dup, "reason %q used by %d and %d", r, seen[r], i)
		assert.NotEqual(t, "unknown", r)
		seen[r] = i
	}
}

// twoGauges is one batch of metrics a and b (and a monotonic counter c) of
// one resource; ts 0 leaves the timestamps unset.
func twoGauges(a, bv float64, ts pcommon.Timestamp, counter int64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	for _, g := range []struct {
		name string
		v    float64
	}{{"a", a}, {"b", bv}} {
		m := ms.AppendEmpty()
		m.SetName(g.name)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(ts)
		dp.SetDoubleValue(g.v)
	}
	c := ms.AppendEmpty()
	c.SetName("c")
	sum := c.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := sum.DataPoints().AppendEmpty()
	dp.SetTimestamp(ts)
	dp.SetIntValue(counter)
	return md
}

func abModel(name string, threshold float64, metrics ...string) ModelConfig {
	m := ModelConfig{Name: name, Staleness: time.Minute, ForestConfig: createDefaultConfig().(*Config).ForestConfig}
	m.Threshold = threshold
	for _, n := range metrics {
		m.Features = append(m.Features, FeatureConfig{Metric: n})
	}
	return m
}

func TestModelEdgeCases(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	// m1 and m2 both want a; a datapoint feeds only the first model. c is a
	// counter: models leave counters to the per-series path.
	cfg.Models = []ModelConfig{abModel("m1", 0.8, "a", "b"), abModel("m2", 0.99, "a", "b"), abModel("m3", 0.8, "b", "c")}
	require.NoError(t, cfg.Validate())
	p, sink := newTestProcessor(t, cfg, metadatatest.NewSettings(componenttest.NewTelemetry()))
	for i := 0; i < 60; i++ {
		// No timestamps at all: models use the arrival time.
		require.NoError(t, p.ConsumeMetrics(context.Background(), twoGauges(1+0.01*float64(i%7), 2+0.01*float64(i%5), 0, int64(i*10))))
	}
	out := sink.AllMetrics()[59].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	for i := 0; i < 2; i++ {
		attrs := out.At(i).Gauge().DataPoints().At(0).Attributes()
		model, ok := attrs.Get("anomaly.model")
		require.True(t, ok, "metric %s scored by a model without timestamps", out.At(i).Name())
		assert.Equal(t, "m1", model.Str())
	}
	// m3 never gets b (m1 took it) nor c (a counter): c goes per-series.
	cAttrs := out.At(2).Sum().DataPoints().At(0).Attributes()
	_, byModel := cAttrs.Get("anomaly.model")
	assert.False(t, byModel)
	_, scored := cAttrs.Get("anomaly.score")
	assert.True(t, scored, "the counter is scored on its own")
}

func TestModelIncidentTransitionOnOneDatapoint(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Models = []ModelConfig{hostModel()}
	p, sink := newTestProcessor(t, cfg, metadatatest.NewSettings(componenttest.NewTelemetry()))
	for step := 0; step < 80; step++ {
		require.NoError(t, p.ConsumeMetrics(context.Background(), hostScrape(step, 0, true)))
	}
	require.NoError(t, p.ConsumeMetrics(context.Background(), hostScrape(80, 0.95, true)))
	var started, withID int
	for _, metric := range []string{"system.cpu.utilization", "system.memory.utilization"} {
		for _, dp := range dpsOf(sink.AllMetrics()[80], "a", metric) {
			if _, ok := dp.Attributes().Get("anomaly.model"); !ok {
				continue // idle CPU and free memory: per-series models
			}
			if v, ok := dp.Attributes().Get("anomaly.incident"); ok && v.Str() == "started" {
				started++
			}
			if _, ok := dp.Attributes().Get("anomaly.incident.id"); ok {
				withID++
			}
		}
	}
	assert.Equal(t, 1, started, "one incident, one started mark")
	assert.Equal(t, 5, withID, "every datapoint that fed the vector names the incident")
}
