package anomalyeventsconnector

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
	iforestprocessor "github.com/otel-iforest/iforest/processor"
)

// The README's chain, iforest/key (per-series models for some metrics)
// then iforest/fleet (high-cardinality mode for the rest), into the
// connector with its default trust: both processors record their incidents
// in the process's ledger, so the incidents of both become events.
func TestChainedProcessors(t *testing.T) {
	sink := new(consumertest.LogsSink)
	ctx := context.Background()
	conn, err := NewFactory().CreateMetricsToLogs(ctx, connectortest.NewNopSettings(metadata.Type), defaultConfig(), sink)
	require.NoError(t, err)

	f := iforestprocessor.NewFactory()
	newProc := func(name string, edit func(map[string]any), next consumer.Metrics) processor.Metrics {
		cfg := f.CreateDefaultConfig()
		raw := map[string]any{}
		edit(raw)
		require.NoError(t, confmap.NewFromStringMap(raw).Unmarshal(cfg))
		set := processortest.NewNopSettings(f.Type())
		set.ID = component.NewIDWithName(f.Type(), name)
		p, err := f.CreateMetrics(ctx, set, cfg, next)
		require.NoError(t, err)
		return p
	}
	fleet := newProc("fleet", func(m map[string]any) {
		m["metrics"] = map[string]any{"exclude": []any{"key\\..*"}}
		m["high_cardinality"] = map[string]any{"enabled": true}
	}, conn)
	key := newProc("key", func(m map[string]any) {
		m["metrics"] = map[string]any{"include": []any{"key\\..*"}}
	}, fleet)
	for _, c := range []component.Component{conn, fleet, key} {
		require.NoError(t, c.Start(ctx, componenttest.NewNopHost()))
	}
	defer func() {
		for _, c := range []component.Component{key, fleet, conn} {
			require.NoError(t, c.Shutdown(ctx))
		}
	}()

	rng := rand.New(rand.NewPCG(13, 1))
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for step := range 140 {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("host.name", "web-1")
		sm := rm.ScopeMetrics().AppendEmpty()
		for _, name := range []string{"key.latency", "fleet.queue"} {
			for pod := range 4 {
				v := math.Max(20, math.Min(50, 35+5*rng.NormFloat64()))
				if step >= 100 && step < 103 && pod == 0 {
					v = 300
				}
				m := sm.Metrics().AppendEmpty()
				m.SetName(name)
				dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
				dp.Attributes().PutInt("pod", int64(pod))
				dp.SetTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(step) * time.Minute)))
				dp.SetDoubleValue(v)
			}
		}
		require.NoError(t, key.ConsumeMetrics(ctx, md))
	}
	started := map[string]int{}
	for _, lr := range records(all(sink)) {
		if lr.EventName() == "anomaly.started" {
			name, _ := lr.Attributes().Get("metric.name")
			started[name.Str()]++
		}
	}
	t.Logf("started events by metric: %v", started)
	assert.Positive(t, started["key.latency"], "an incident of iforest/key")
	assert.Positive(t, started["fleet.queue"], "an incident of iforest/fleet")
}
