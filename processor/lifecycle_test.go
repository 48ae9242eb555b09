package iforestprocessor

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	det := p.det
	p.det = nil // any use of the detector now panics

	in := makeBatch(1, false)
	want := pmetric.NewMetrics()
	in.CopyTo(want)
	out, err := p.processMetrics(context.Background(), in)
	require.NoError(t, err)
	p.det = det // for the series gauges read when the telemetry is collected
	assert.Equal(t, want.DataPointCount(), out.DataPointCount())
	metadatatest.AssertEqualProcessorIforestErrors(t, tt, []metricdata.DataPoint[int64]{{Value: 1}}, metricdatatest.IgnoreTimestamp())
}

// Several lives of the processor over one storage: each starts from what
// the previous one saved, and Shutdown is safe to call twice.
func TestRepeatedStartShutdownWithStorage(t *testing.T) {
	store := newMemStorage()
	host := extHost{storageID: store}
	sent := 0
	for life := 0; life < 3; life++ {
		r, err := startPersisting(t, persistConfig(), host)
		require.NoError(t, err)
		from := life * 40 // past the 32-point warm-up within the first life
		r.feed(t, from, from+40)
		sent += 40
		if life > 0 {
			// Restored models score from the first point of this life.
			first := r.sink.AllMetrics()[0]
			scored, _ := scoredIn(first)
			assert.Positive(t, scored, "life %d: first batch unscored", life)
		}
		require.NoError(t, r.p.Shutdown(context.Background()))
		require.NoError(t, r.p.Shutdown(context.Background()))
		assert.Len(t, r.sink.AllMetrics(), 40)
	}
	assert.Equal(t, 120, sent)
}

// Shutdown while other goroutines are still sending: no panic, no race, and
// every batch a ConsumeMetrics call accepted reaches the next consumer.
func TestShutdownWhileBatchesInFlight(t *testing.T) {
	r, err := startPersisting(t, persistConfig(), extHost{storageID: newMemStorage()})
	require.NoError(t, err)
	var wg sync.WaitGroup
	var accepted atomic.Int64
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for step := 0; ; step++ {
				select {
				case <-stop:
					return
				default:
				}
				md := restartBatch(step)
				md.ResourceMetrics().At(0).Resource().Attributes().PutInt("worker", int64(g))
				n := md.DataPointCount()
				if r.p.ConsumeMetrics(context.Background(), md) == nil {
					accepted.Add(int64(n))
				}
			}
		}(g)
	}
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, r.p.Shutdown(context.Background()))
	time.Sleep(50 * time.Millisecond) // batches arriving after shutdown still pass
	close(stop)
	wg.Wait()
	assert.Positive(t, accepted.Load())
	assert.Equal(t, int(accepted.Load()), r.sink.DataPointCount())
}
