package iforestprocessor

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/otel-iforest/iforest/internal/metadata"
	"github.com/otel-iforest/iforest/internal/metadatatest"
)

func TestLifecycle(t *testing.T) {
	f := NewFactory()
	assert.Equal(t, metadata.Type, f.Type())
	cfg := f.CreateDefaultConfig()
	sink := new(consumertest.MetricsSink)

	// Shutdown without Start is fine.
	p, err := f.CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.Shutdown(context.Background()))

	// Start, work, Shutdown; the processor starts no goroutines (goleak in TestMain).
	p, err = f.CreateMetrics(context.Background(), processortest.NewNopSettings(metadata.Type), cfg, sink)
	require.NoError(t, err)
	assert.True(t, p.Capabilities().MutatesData)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, p.ConsumeMetrics(context.Background(), makeBatch(0, false)))
	require.NoError(t, p.Shutdown(context.Background()))
	assert.Equal(t, makeBatch(0, false).DataPointCount(), sink.DataPointCount())
}

// A failure inside the processor must cost no data: the batch goes on
// unscored and the failure is counted.
func TestFailsOpen(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg := createDefaultConfig().(*Config)
	p, err := newProcessor(metadatatest.NewSettings(tt), cfg)
	require.NoError(t, err)
	p.det = nil // any use of the detector now panics

	in := makeBatch(1, false)
	want := pmetric.NewMetrics()
	in.CopyTo(want)
	out, err := p.processMetrics(context.Background(), in)
	require.NoError(t, err)
	assert.Equal(t, want.DataPointCount(), out.DataPointCount())
	metadatatest.AssertEqualProcessorIforestErrors(t, tt, []metricdata.DataPoint[int64]{{Value: 1}}, metricdatatest.IgnoreTimestamp())
}
