package iforestprocessor

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/otel-iforest/iforest/internal/metadatatest"
)

// namesBatch is one batch of n gauges, each with a metric name of its own.
func namesBatch(from, n int) pmetric.Metrics {
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	for i := from; i < from+n; i++ {
		m := ms.AppendEmpty()
		m.SetName(fmt.Sprintf("flood.metric.%d", i))
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(stepTime(0))
		dp.SetDoubleValue(1)
	}
	return md
}

// With metrics.exclude set, a client sending ever new metric names does not
// grow the processor's memory: the cache of selections is bounded and
// counted in the memory estimate.
func TestSelectionCacheStaysBounded(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg := createDefaultConfig().(*Config)
	cfg.Metrics.Exclude = []string{`flood\..*`}
	p, err := newProcessor(metadatatest.NewSettings(tt), cfg)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = p.processMetrics(ctx, namesBatch(0, 1000))
	require.NoError(t, err)
	before := heapInUse()
	const names = 200000
	for from := 1000; from < names; from += 1000 {
		_, err = p.processMetrics(ctx, namesBatch(from, 1000))
		require.NoError(t, err)
	}
	grown := int64(heapInUse()) - int64(before)
	runtime.KeepAlive(p)
	t.Logf("heap grew by %d B over %d new names; cache estimate %d B", grown, names-1000, p.selected.memBytes())
	assert.Less(t, grown, int64(1<<20), "the heap does not grow with the names seen")
	bound := int64(nameSlots * (8 + 32 + 32)) // slot, entry, name (these names fit 32 B)
	assert.LessOrEqual(t, p.selected.memBytes(), bound)
	assert.Equal(t, p.selected.memBytes()+p.det.MemoryBytes(), telemetrySum(t, tt, "otelcol_processor_iforest_series_memory", nil), "counted in the memory estimate")
	assert.Equal(t, 0, p.det.Len(), "excluded names get no models")
}

func TestNameCacheNeverLies(t *testing.T) {
	c := newNameCache()
	sel := func(name string) bool { return len(name)%3 == 0 }
	long := strings.Repeat("x", maxCachedName+1)
	c.put(long, true)
	_, ok := c.get(long)
	assert.False(t, ok, "long names are not kept")
	for i := range 3 * nameSlots {
		name := fmt.Sprintf("m%d", i)
		c.put(name, sel(name))
	}
	hits := 0
	for i := range 3 * nameSlots {
		name := fmt.Sprintf("m%d", i)
		if v, ok := c.get(name); ok {
			hits++
			require.Equal(t, sel(name), v, name)
		}
	}
	assert.Greater(t, hits, nameSlots/2)
	assert.LessOrEqual(t, hits, nameSlots)
}
