package iforestprocessor

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/otel/attribute"

	"github.com/otel-iforest/iforest/internal/metadatatest"
)

// One point from the year 2200 is skipped and counted; it does not become
// the series' clock, so the correct points after it are scored and a spike
// among them is flagged.
func TestFutureTimestampCannotBlindASeries(t *testing.T) {
	for _, highcard := range []bool{false, true} {
		t.Run(map[bool]string{false: "per-series", true: "high-cardinality"}[highcard], func(t *testing.T) {
			cfg := createDefaultConfig().(*Config)
			cfg.HighCardinality.Enabled = highcard
			testFutureTimestamp(t, cfg)
		})
	}
}

func testFutureTimestamp(t *testing.T, cfg *Config) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	p, sink := newTestProcessor(t, cfg, metadatatest.NewSettings(tt))
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 7))
	value := func() float64 { return 10 + rng.NormFloat64() }
	for i := range 40 {
		require.NoError(t, p.ConsumeMetrics(ctx, gaugeSeries(i, value())))
	}
	future := gaugeSeries(40, value())
	future.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(0).
		SetTimestamp(pcommon.NewTimestampFromTime(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)))
	require.NoError(t, p.ConsumeMetrics(ctx, future))
	const spikeAt = 25
	scored, spikeFlagged := 0, false
	for i := range 40 {
		v := value()
		if i == spikeAt {
			v = 50
		}
		require.NoError(t, p.ConsumeMetrics(ctx, gaugeSeries(41+i, v)))
		attrs := sink.AllMetrics()[len(sink.AllMetrics())-1].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(0).Attributes()
		if _, ok := attrs.Get("anomaly.score"); ok {
			scored++
		}
		if d, ok := attrs.Get("anomaly.detected"); ok && i == spikeAt {
			spikeFlagged = d.Bool()
		}
	}
	assert.GreaterOrEqual(t, scored, 39)
	assert.True(t, spikeFlagged, "the spike after the future point is flagged")
	reason := attribute.NewSet(attribute.String("reason", "future_timestamp"))
	assert.Equal(t, int64(1), telemetrySum(t, tt, "otelcol_processor_iforest_datapoints_skipped", &reason))
}
