package main

import (
	"context"
	"errors"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/otel-iforest/iforest/internal/metadata"
	iforestprocessor "github.com/otel-iforest/iforest/processor"
)

// runningProcessor is the iforest processor built by its factory and
// started, as a collector would run it, with its self-telemetry going to a
// manual reader so the tools can report it.
type runningProcessor struct {
	processor.Metrics
	reader *sdkmetric.ManualReader
	meters *sdkmetric.MeterProvider
}

// startProcessor builds the processor with cfg, forwarding to next, and
// starts it. Offline runs start from empty models: cfg's storage (an
// extension that does not exist here) is left out.
func startProcessor(ctx context.Context, cfg *iforestprocessor.Config, next consumer.Metrics) (*runningProcessor, error) {
	if cfg.Storage != nil {
		c := *cfg
		c.Storage = nil
		cfg = &c
	}
	rp := &runningProcessor{reader: sdkmetric.NewManualReader()}
	rp.meters = sdkmetric.NewMeterProvider(sdkmetric.WithReader(rp.reader))
	set := processortest.NewNopSettings(metadata.Type)
	set.MeterProvider = rp.meters
	p, err := iforestprocessor.NewFactory().CreateMetrics(ctx, set, cfg, next)
	if err == nil {
		err = p.Start(ctx, componenttest.NewNopHost())
	}
	if err != nil {
		return nil, errors.Join(err, rp.meters.Shutdown(ctx))
	}
	rp.Metrics = p
	return rp, nil
}

// stop shuts the processor and its telemetry down.
func (rp *runningProcessor) stop(ctx context.Context) error {
	return errors.Join(rp.Shutdown(ctx), rp.meters.Shutdown(ctx))
}

// telemetryCount is one datapoint of the processor's self-telemetry: a
// counter's total or an up-down counter's current value.
type telemetryCount struct {
	Metric     string            `json:"metric"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Value      float64           `json:"value"`
}

// attrString is the attributes as "k=v, k=v", sorted by key.
func (c telemetryCount) attrString() string {
	keys := make([]string, 0, len(c.Attributes))
	for k := range c.Attributes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + c.Attributes[k]
	}
	return strings.Join(parts, ", ")
}

// telemetry reads the processor's own metrics (those of its
// instrumentation scope; timings are left out), sorted by metric and
// attributes. Whatever the processor counts by an attribute (skip reasons,
// eviction reasons, rules) comes out one entry per attribute value.
func (rp *runningProcessor) telemetry(ctx context.Context) ([]telemetryCount, error) {
	var rm metricdata.ResourceMetrics
	if err := rp.reader.Collect(ctx, &rm); err != nil {
		return nil, err
	}
	var out []telemetryCount
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != metadata.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				out = appendCounts(out, m.Name, d.DataPoints)
			case metricdata.Sum[float64]:
				out = appendCounts(out, m.Name, d.DataPoints)
			case metricdata.Gauge[int64]:
				out = appendCounts(out, m.Name, d.DataPoints)
			case metricdata.Gauge[float64]:
				out = appendCounts(out, m.Name, d.DataPoints)
			}
		}
	}
	slices.SortFunc(out, func(a, b telemetryCount) int {
		if c := strings.Compare(a.Metric, b.Metric); c != 0 {
			return c
		}
		return strings.Compare(a.attrString(), b.attrString())
	})
	return out, nil
}

func appendCounts[N int64 | float64](out []telemetryCount, name string, dps []metricdata.DataPoint[N]) []telemetryCount {
	for _, dp := range dps {
		c := telemetryCount{Metric: name, Value: float64(dp.Value)}
		for _, kv := range dp.Attributes.ToSlice() {
			if c.Attributes == nil {
				c.Attributes = map[string]string{}
			}
			c.Attributes[string(kv.Key)] = kv.Value.String()
		}
		out = append(out, c)
	}
	return out
}
