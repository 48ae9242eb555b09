// Package iforestprocessor scores metric datapoints with streaming isolation
// forests learned online and attaches anomaly verdicts to what it forwards.
package iforestprocessor // import "github.com/otel-iforest/iforest/processor"

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/otel-iforest/iforest/internal/metadata"
)

// NewFactory returns the factory of the iforest processor.
func NewFactory() processor.Factory {
	return processor.NewFactory(
		metadata.Type,
		createDefaultConfig,
		processor.WithMetrics(createMetrics, metadata.MetricsStability),
	)
}

func createMetrics(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Metrics) (processor.Metrics, error) {
	p, err := newProcessor(set, cfg.(*Config))
	if err != nil {
		return nil, err
	}
	ps := newPersister(p, set.ID) // see persist.go
	return processorhelper.NewMetrics(ctx, set, cfg, next, ps.process,
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: true}),
		processorhelper.WithStart(func(ctx context.Context, host component.Host) error {
			return p.ops.start(ctx, func() error { return ps.start(ctx, host) }) // rules.go
		}),
		processorhelper.WithShutdown(func(ctx context.Context) error {
			p.ops.shutdown()
			return ps.shutdown(ctx)
		}),
	)
}
